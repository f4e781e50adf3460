"""Simulator settings from YAML (configs/physics.yaml shows every key)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from cgwm_env.collision import SoftSDFSettings
from cgwm_env.contact import ContactSettings

_TOP_KEYS = {"dt", "gravity", "ground_height", "ground_contacts", "sdf", "contact"}


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


def load_model_settings(path: str | Path) -> dict:
    """Keyword arguments for Model (or box_model) from a YAML file; a ValueError names any
    unknown or malformed key."""
    data = read_yaml_mapping(path)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown setting in {path}; expected some of {sorted(_TOP_KEYS)}")
    settings = {k: v for k, v in data.items() if k not in ("sdf", "contact")}
    if "gravity" in settings:
        settings["gravity"] = tuple(float(g) for g in settings["gravity"])
    for key, cls in (("sdf", SoftSDFSettings), ("contact", ContactSettings)):
        if key in data:
            names = {f.name for f in dataclasses.fields(cls)}
            section = data[key] or {}
            bad = set(section) - names
            if bad:
                raise ValueError(f"{key}.{sorted(bad)[0]}: unknown setting in {path}; expected some of {sorted(names)}")
            settings[key] = cls(**section)
    return settings
