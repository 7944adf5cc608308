"""A small PyTorch network on the feature vector: the ``torch`` backend of ``sepflow train-baseline``.

``TorchMLPModel`` follows the adapter contract of ``sepflow.models.base`` (``task``, ``fit`` with
``eval_set``, ``predict``/``predict_proba``, ``classes_``) but is not a pipeline family: it is not
registered in ``FAMILIES`` and has no native ``save``. It persists by pickling (inside the
baseline's joblib bundle) as plain numpy weights plus the params that rebuild the architecture.

Network: standardise (mean/std of the training rows; a missing value becomes the mean) →
``Linear → ReLU`` per ``hidden_sizes`` → one output (a logit for binary classification, the
standardised target for regression). Adam with ``weight_decay``, mini-batches in a seeded
order, early stopping on the ``eval_set`` loss with the best epoch's weights kept.

Determinism: on the CPU, fitting and predicting run under ``torch.manual_seed(random_state)``
(in a forked RNG, so the caller's global torch RNG is untouched), ``torch.use_deterministic_algorithms(True)``
and one intra-op thread; the same data and seed give bit-identical weights and predictions.
On a GPU (``device="gpu"``, CUDA) results are seeded but not promised bit-identical (cuBLAS).
Prediction always runs on the CPU, so a saved network predicts the same on any machine.

torch is imported only when a network is fitted or used, so nothing else pays for it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from sepflow.errors import ConfigError
from sepflow.models.base import SepflowModel, TaskKind

__all__ = ["TorchMLPModel", "torch_device"]


@contextlib.contextmanager
def _deterministic_torch(seed: int, *, cuda: bool) -> Iterator[Any]:
    """Seeded, single-threaded, deterministic torch for the duration; global settings restored after."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    # cuBLAS needs CUBLAS_WORKSPACE_CONFIG to be deterministic; on CUDA only warn (see module docstring).
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


def torch_device(device: str) -> str:
    """The torch device name for ``cpu``/``gpu``; ``gpu`` needs a CUDA build of torch that sees a GPU."""
    if device == "cpu":
        return "cpu"
    if device != "gpu":
        raise ConfigError(f"torch: device must be cpu or gpu, got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"torch: device gpu, but this torch {torch.__version__} sees no CUDA GPU "
            "(a CPU build, or no driver); use device cpu or install a CUDA build of the same version"
        )
    return "cuda"


class TorchMLPModel(SepflowModel):
    """Standardise → MLP (ReLU) → logit or value; binary classification or regression.

    Learned state: ``mean_``/``scale_`` (feature standardisation), ``target_mean_``/
    ``target_scale_`` (regression target standardisation; 0/1 for classifiers), ``weights_``
    (parameter name → float32 array, the ``state_dict`` of the architecture the params
    describe), ``n_epochs_`` (epochs kept: the best validation epoch with an ``eval_set``).
    """

    libraries: ClassVar[tuple[str, ...]] = ("torch",)

    mean_: np.ndarray
    scale_: np.ndarray
    target_mean_: float
    target_scale_: float
    weights_: dict[str, np.ndarray]
    n_epochs_: int

    def __init__(
        self,
        task: TaskKind = "classification",
        hidden_sizes: tuple[int, ...] | list[int] = (64, 32),
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 50,
        patience: int = 5,
        random_state: int = 0,
        device: str = "cpu",
    ) -> None:
        self.task = task
        self.hidden_sizes = hidden_sizes
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.random_state = random_state
        self.device = device

    # -- architecture ----------------------------------------------------------------------

    def _network(self) -> Any:
        """A fresh (randomly initialised) module of the architecture the params describe."""
        import torch

        layers: list[Any] = []
        width = int(self.n_features_in_)
        for size in self.hidden_sizes:
            layers += [torch.nn.Linear(width, int(size)), torch.nn.ReLU()]
            width = int(size)
        layers.append(torch.nn.Linear(width, 1))
        return torch.nn.Sequential(*layers)

    def _check_params(self) -> None:
        if self.task == "multiclass":
            raise ConfigError("torch: the MLP handles binary classification and regression, not multiclass")
        sizes = list(self.hidden_sizes)
        if not sizes or any(int(s) < 1 for s in sizes):
            raise ConfigError(f"torch: hidden_sizes must be positive layer widths, got {sizes}")
        for name in ("batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"torch: {name} must be at least 1, got {getattr(self, name)}")
        if int(self.patience) < 0:
            raise ConfigError(f"torch: patience must be >= 0, got {self.patience}")

    def _standardised(self, X: pd.DataFrame) -> np.ndarray:
        features = (self._matrix(X) - self.mean_) / self.scale_
        return np.nan_to_num(features, nan=0.0).astype(np.float32)  # missing → the training mean

    # -- the adapter hooks -------------------------------------------------------------------

    def _fit(self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        self._check_params()
        raw = self._matrix(X)
        self.mean_ = np.nan_to_num(np.nanmean(raw, axis=0)).astype(np.float32)
        scale = np.nan_to_num(np.nanstd(raw, axis=0))
        self.scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)  # a constant feature stays 0
        if self.task == "regression":
            # Returns are ~1e-2: a standardised target keeps Adam's steps on the scale of the loss.
            std = float(np.std(y))
            self.target_mean_, self.target_scale_ = float(np.mean(y)), std if std > 0 else 1.0
        else:
            self.target_mean_, self.target_scale_ = 0.0, 1.0
        target = ((y - self.target_mean_) / self.target_scale_).astype(np.float32)
        validation = None
        if eval_set is not None:
            validation = (self._standardised(eval_set[0]),
                          ((eval_set[1] - self.target_mean_) / self.target_scale_).astype(np.float32))
        device = torch_device(self.device)
        with _deterministic_torch(int(self.random_state), cuda=device == "cuda") as torch:
            self.weights_, self.n_epochs_ = self._train(torch, device, self._standardised(X), target, validation)

    def _train(
        self, torch: Any, device: str, X: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[dict[str, np.ndarray], int]:
        """Mini-batch Adam; the weights of the best validation epoch (else the last one)."""
        net = self._network().to(device)
        loss_fn = torch.nn.BCEWithLogitsLoss() if self.task == "classification" else torch.nn.MSELoss()
        optimiser = torch.optim.Adam(net.parameters(), lr=float(self.learning_rate),
                                     weight_decay=float(self.weight_decay))
        order = torch.Generator().manual_seed(int(self.random_state))  # batch order, apart from the init RNG
        X_t, y_t = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
        val = None if validation is None else tuple(torch.from_numpy(a).to(device) for a in validation)
        best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
        for epoch in range(1, int(self.max_epochs) + 1):
            net.train()
            for batch in torch.randperm(len(X_t), generator=order).split(int(self.batch_size)):
                optimiser.zero_grad()
                loss_fn(net(X_t[batch.to(device)]).squeeze(1), y_t[batch.to(device)]).backward()
                optimiser.step()
            if val is None:
                continue
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(val[0]).squeeze(1), val[1]))
            if val_loss < best_loss:
                best_loss, best_state, best_epoch, stale = val_loss, copy.deepcopy(net.state_dict()), epoch, 0
            else:
                stale += 1
                if stale > int(self.patience):
                    break
        if best_state is None:
            best_state, best_epoch = net.state_dict(), int(self.max_epochs)
        return {name: tensor.detach().cpu().numpy().copy() for name, tensor in best_state.items()}, best_epoch

    def _predict_output(self, X: pd.DataFrame) -> np.ndarray:
        features = self._standardised(X)
        with _deterministic_torch(int(self.random_state), cuda=False) as torch:
            net = self._network()
            net.load_state_dict({name: torch.from_numpy(array) for name, array in self.weights_.items()})
            net.eval()
            with torch.no_grad():
                out = net(torch.from_numpy(features)).squeeze(1).numpy().astype(np.float64)
        if self.task == "regression":
            return self.target_mean_ + self.target_scale_ * out
        p_up = 1.0 / (1.0 + np.exp(-out))
        return np.column_stack([1.0 - p_up, p_up])
