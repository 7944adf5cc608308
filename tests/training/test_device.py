"""train.device: cpu | gpu | auto, with the CPU fallback that CI exercises."""

from __future__ import annotations

import logging

import pytest
import xgboost

from sepflow.errors import ConfigError
from sepflow.models import make_model
from sepflow.training import device
from sepflow.training.device import device_params, resolve_device


@pytest.fixture()
def gpus(monkeypatch: pytest.MonkeyPatch):
    def set_count(n: int) -> None:
        monkeypatch.setattr(device, "visible_gpus", lambda: n)

    return set_count


def test_cpu_is_cpu(gpus) -> None:
    gpus(4)
    assert resolve_device("cpu") == "cpu"


def test_auto_falls_back_to_cpu_with_a_log_line(gpus, caplog: pytest.LogCaptureFixture) -> None:
    gpus(0)
    with caplog.at_level(logging.INFO, logger="sepflow.training.device"):
        assert resolve_device("auto") == "cpu"
    assert "no GPU visible, training on the CPU" in caplog.text
    gpus(1)
    assert resolve_device("auto") == "gpu"


def test_gpu_without_a_gpu_is_refused(gpus) -> None:
    gpus(0)
    with pytest.raises(ConfigError, match="no NVIDIA GPU is visible"):
        resolve_device("gpu")


def test_device_params_per_family() -> None:
    assert device_params("dummy", "gpu") == {} and device_params("random_forest", "gpu") == {}
    assert device_params("lightgbm", "gpu") == {"device": "gpu"}
    assert device_params("lstm", "cpu") == {"device": "cpu"}
    if not xgboost.build_info().get("USE_CUDA"):  # the pinned CPU wheel: say what to install
        with pytest.raises(ConfigError, match="no CUDA"):
            device_params("xgboost", "gpu")


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_boosters_map_the_device_to_their_library(family: str) -> None:
    params = make_model(family, "classification", device="gpu")._library_params(2)
    assert params.get("device") == "cuda" or params.get("device_type") == "gpu"
    cpu = make_model(family, "classification")._library_params(2)
    assert cpu.get("device", cpu.get("device_type")) == "cpu"
