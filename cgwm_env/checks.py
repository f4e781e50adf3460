"""Checks of arguments that many layers take (counts, flags, choices, numbers) and of the files they
name: each returns the value (or the file's content) or raises a ValueError that names the
argument as the caller typed it and what it expects."""

from __future__ import annotations

import math
import numbers
import zipfile
import zlib

import numpy as np


def check_count(value, name: str, least: int = 1) -> int:
    """value as an int; a ValueError names `name` unless it is an integer >= least (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    return int(value)


def check_flag(value, name: str) -> bool:
    """value as a bool; a ValueError names `name` unless it is True or False (numpy's too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_choice(value, name: str, choices: tuple):
    """value; a ValueError names `name` unless it is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_number(value, name: str, low: float = -math.inf, high: float = math.inf, unit: str = "",
                 open_low: bool = False) -> float:
    """value as a float; a ValueError names `name` unless it is a finite real number in [low, high]
    ((low, high] when open_low). unit (e.g. "s", "rad") goes into the message."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        lo = "(" if open_low else "["
        where = f" in {lo}{low:g}, {high:g}]" if (math.isfinite(low) or math.isfinite(high)) else ""
        raise ValueError(f"{name}: expected a finite number{where}{' ' + unit if unit else ''}, got {value!r}")
    return float(value)


def read_npz(path, name: str) -> dict:
    """The arrays of the NumPy .npz file `path` ({name: array}, read without pickles); a file that
    is missing or not such an .npz (empty, truncated, corrupt, a .npy, object arrays) raises a
    ValueError naming `name` and the file."""
    try:
        with open(path, "rb") as file:
            if file.read(2) != b"PK":
                raise ValueError("not a zip archive, as an .npz is")
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{name}: {path}: cannot read it as a NumPy .npz without pickles "
                         f"({type(err).__name__}: {err})") from err
