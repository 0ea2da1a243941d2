"""FFCV (.beton) copies of the harness datasets: conversion, verification, and the import guard.

ffcv is an optional dependency (it needs system libraries to build), so nothing here imports it
at module level: `bench convert` and `--loader ffcv` fail with one actionable line when it is
missing, and every other part of the harness works without it.
"""

from __future__ import annotations

import importlib.metadata

from bench.errors import BenchError

INSTALL_HINT = (
    "install it with: apt-get install pkg-config libopencv-dev libturbojpeg0-dev "
    "&& pip install -e '.[ffcv]'"
)


def ffcv_available() -> bool:
    """True when ffcv (and its numba pipeline compiler) can be imported here."""
    try:
        require_ffcv()
    except BenchError:
        return False
    return True


def require_ffcv() -> None:
    """Import ffcv or raise a one-line BenchError saying how to install it."""
    try:
        import ffcv  # noqa: F401
        import ffcv.fields  # noqa: F401
        import ffcv.loader  # noqa: F401
    except Exception as exc:  # ImportError, or a broken native build (OSError, ...)
        raise BenchError(
            f"ffcv is not available ({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None


def ffcv_version() -> str:
    """The installed distribution's version (`ffcv.__version__` says 0.0.3rc1 in 1.0.2)."""
    try:
        return importlib.metadata.version("ffcv")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


__all__ = ["INSTALL_HINT", "ffcv_available", "ffcv_version", "require_ffcv"]
