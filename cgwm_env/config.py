"""Settings files: the YAML reader every settings loader goes through, and the shipped overrides;
and the process's torch CPU thread policy (use_threads).

The defaults live in code (each settings dataclass); a YAML file overrides some of them. The
repository's configs/ folder is packaged with the code as cgwm_env/configs, so config_file()
finds it from any folder and from a wheel.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_THREADS = 1  # torch intra-op CPU threads unless the user says otherwise (use_threads)
_threads_set = False  # whether use_threads has set the count in this process


def config_file(name: str) -> Path:
    """The shipped settings file `name` (e.g. "mpc.yaml"): configs/ in the repository, packaged."""
    path = CONFIG_DIR / name
    if not path.is_file():
        shipped = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"name: no shipped settings file {name!r}; expected one of {shipped}")
    return path


def read_yaml_mapping(path: str | Path, name: str = "path") -> dict:
    """The mapping in a YAML file, or in the shipped one of that name where no such file exists
    (e.g. "learn_leap.yaml"); {} for an empty file. A ValueError names `name` if the file cannot
    be read or parsed, or holds something else than a mapping."""
    path = Path(path)
    if not path.exists() and path.name == str(path) and (CONFIG_DIR / path.name).is_file():
        path = CONFIG_DIR / path.name
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{name}: cannot read settings from {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{name}: {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def settings_from_mapping(cls, data, where: str = "", source: str = ""):
    """An instance of the settings dataclass `cls` with the values in `data` (a mapping, e.g. a
    YAML section) over its defaults. YAML lists become tuples (nested ones too); a mapping given
    for a field whose default is a settings dataclass becomes one. A ValueError names an unknown
    key by its path (where.key) and the file it came from (source), or a value `cls` refuses."""
    at = f" in {source}" if source else ""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'settings'}: expected a mapping of settings{at}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValueError(f"{key}: unknown setting{at}; expected some of {sorted(fields)}")
    values = {}
    for name, value in data.items():
        default = _default(fields[name])
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = settings_from_mapping(type(default), value, f"{where}.{name}" if where else name, source)
        values[name] = _tuples(value)
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(f"{where or 'settings'}: {err}{at}") from err


def settings_from_yaml(cls, path: str | Path, name: str = "path"):
    """settings_from_mapping of the YAML file `path` (a ValueError names `name` if it cannot be read)."""
    return settings_from_mapping(cls, read_yaml_mapping(path, name), source=str(path))


def is_number(x) -> bool:
    """A real number as JSON or YAML gives it (int or float, not bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def use_threads(threads: int | None = None, name: str = "threads") -> int:
    """Set torch's intra-op CPU threads for this process; returns the count in force.

    threads: a count >= 1, or None for the thread policy: the first time, DEFAULT_THREADS (1)
    unless the user set OMP_NUM_THREADS (torch reads it at start); after that, nothing changes (a
    count given earlier, or the user's own torch.set_num_threads since, stays). One thread is the
    default because the simulator's steps are many small ops: a second thread buys little on a quiet
    machine and, with any other process busy on a core, makes every op wait for the slower thread
    (measured: the LEAP env up to 15x slower at batch 1, 6x at 256 envs; docs/design.md). `cgwm`
    applies it at start (--threads), the world-model environments on creation (threads=). A
    ValueError names `name`.
    """
    import torch  # here, not at the top: `cgwm --help` imports this module and should answer at once

    global _threads_set
    if threads is None:
        if _threads_set or os.environ.get("OMP_NUM_THREADS", "").strip():
            return torch.get_num_threads()
        threads = DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{name}: expected a thread count >= 1, got {threads!r}")
    torch.set_num_threads(threads)
    _threads_set = True
    return threads
