"""Process-wide setup for MuJoCo-based adapters: quiet imports and warning filtering."""

from __future__ import annotations

import contextlib
import io
import warnings
from types import ModuleType

# gymnasium's v5 XML assets use `settotalmass`, which MuJoCo 4 flags as deprecated on every model
# load (printed to stderr and appended to ./MUJOCO_LOG.TXT). It is harmless for us.
_HARMLESS_MUJOCO_WARNINGS = ("settotalmass",)
_filter_installed = False


def load_mamujoco() -> ModuleType:
    """Import `gymnasium_robotics.mamujoco_v1` without its unrelated import-time notice."""
    # gymnasium_robotics prints an Adroit-hand versioning notice to stderr on first import.
    with contextlib.redirect_stderr(io.StringIO()):
        from gymnasium_robotics import mamujoco_v1
    return mamujoco_v1


def filter_mujoco_warnings() -> None:
    """Drop MuJoCo's harmless deprecation warnings; forward the rest as Python warnings."""
    global _filter_installed
    if _filter_installed:
        return
    import mujoco

    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if any(key in message for key in _HARMLESS_MUJOCO_WARNINGS):
            return
        # An exception must not escape into MuJoCo's C code (e.g. under `-W error`).
        try:
            if previous is not None:
                previous(message)
            else:
                warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)
        except Exception:
            pass

    # Installing a handler also stops MuJoCo from writing MUJOCO_LOG.TXT into the cwd.
    mujoco.set_mju_user_warning(handler)
    _filter_installed = True
