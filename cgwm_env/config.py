"""Settings files: the one YAML reader every settings loader goes through."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml_mapping(path: str | Path, name: str = "path") -> dict:
    """The mapping in a YAML file ({} for an empty file); a ValueError names `name` if the file
    cannot be read or parsed, or holds something else than a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{name}: cannot read settings from {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{name}: {path} must hold a mapping of settings, got {type(data).__name__}")
    return data
