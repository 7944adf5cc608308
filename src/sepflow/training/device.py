"""Where training runs: ``train.device: cpu | gpu | auto``.

``auto`` uses a GPU when one is visible and falls back to the CPU with a log line; ``gpu``
refuses to start without one. CI has no GPU, so the CPU path is the tested one.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from typing import Any, Literal

from sepflow.errors import ConfigError

log = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]
# The families that can use a GPU, and the constructor param that says so.
GPU_FAMILIES = ("xgboost", "lightgbm", "lstm")


@functools.lru_cache(maxsize=1)
def visible_gpus() -> int:
    """How many NVIDIA GPUs ``nvidia-smi -L`` lists (0 without the driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def resolve_device(requested: Literal["cpu", "gpu", "auto"]) -> Device:
    """The device to train on for ``train.device``."""
    if requested == "cpu":
        return "cpu"
    if visible_gpus() > 0:
        return "gpu"
    if requested == "gpu":
        raise ConfigError("train.device is gpu, but no NVIDIA GPU is visible (nvidia-smi); use cpu or auto")
    log.info("train.device auto: no GPU visible, training on the CPU")
    return "cpu"


def device_params(family: str, device: Device) -> dict[str, Any]:
    """Constructor params placing ``family`` on ``device`` (none for CPU-only families)."""
    if family not in GPU_FAMILIES:
        return {}
    if device == "gpu" and family == "xgboost":
        import xgboost

        if not xgboost.build_info().get("USE_CUDA"):
            raise ConfigError(
                "train.device is gpu, but the installed XGBoost has no CUDA (requirements pin the CPU "
                "wheel xgboost-cpu); install the full wheel: pip install xgboost==<same version>"
            )
    return {"device": device}
