"""Two-layer LSTM over per-ticker windows of consecutive rows (Keras 3, TensorFlow backend).

Windows. The input for row ``t`` of a ticker is that ticker's ``sequence_length`` consecutive
rows of ``X`` ending at ``t`` (rows of one ticker must be contiguous and date-ascending; a
gap in dates is not filled, the window simply spans it). A row with fewer earlier rows of its
ticker is LEFT-PADDED WITH ZEROS after scaling (zero is the feature's training mean), never
skipped, so ``predict`` returns one value per input row, in input order. Training uses every
row the same way, so the network has seen padded windows before it meets them.

Context. ``predict(X)`` only looks back into ``X`` itself. To predict a later period, include
each ticker's preceding ``sequence_length - 1`` rows: ``with_context(X_history, X_new, L)``
prepends them and returns the mask selecting the new rows' predictions. ``fit`` does this for
``eval_set`` itself, with the training rows as history.

Scaling. ``FeatureScaler`` learns each feature's mean/std from the TRAINING rows of all tickers
together (pooled, not per ticker: see its docstring); missing values become 0 after scaling.
Regression targets are standardised with the training mean/std and mapped back.

Determinism bound. Fits are seeded (``keras.utils.set_random_seed``), TensorFlow runs with
op determinism, XLA is off and batches come in a seeded order from one worker. Measured on
CPU (TensorFlow 2.21, Keras 3.15): two fits with the same seed, in one process or in two,
with 1 or 2 intra-op threads, gave IDENTICAL weights and probabilities (max |Δp| = 0). On
another CPU (AMD EPYC) the weights were again identical, but predicting 2,048 windows at once
with 1 thread and with 2 differed in the last bits, so walk-forward fits folds in worker
processes and predicts in its own (``sepflow.training.walk_forward``). Switching oneDNN
kernels off (``TF_ENABLE_ONEDNN_OPTS=0``) moved them by 3e-7. Another CPU (oneDNN picks
kernels per instruction set) or library version is expected to differ at that rounding
level (not measured), more if early stopping then picks another epoch; only the same machine
and versions promise identical weights. The tests allow 1e-6. The ``.keras`` file also
records its save time, so its bytes differ between saves even when the weights do not.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from sepflow.errors import ConfigError, DataValidationError, SepflowError
from sepflow.models.base import SepflowModel, TaskKind
from sepflow.progress import epoch_callbacks

__all__ = ["FeatureScaler", "LSTMModel", "sequence_windows", "ticker_blocks", "with_context"]

NETWORK_FILE = "model.keras"
SCALER_FILE = "scaler.npz"


def _keras() -> ModuleType:
    from sepflow.models import _keras_net

    return _keras_net


def _level(index: pd.Index, name: str) -> pd.Index:
    if not isinstance(index, pd.MultiIndex) or name not in index.names:
        raise DataValidationError(
            f"lstm: X must be indexed by ('ticker', 'date'); index levels are {list(index.names)}"
        )
    return index.get_level_values(name)


def ticker_blocks(index: pd.Index) -> np.ndarray:
    """Block number (0, 1, …) of each row's ticker; a ticker's rows must be contiguous and date-ascending."""
    tickers, dates = _level(index, "ticker"), _level(index, "date").to_numpy()
    codes, uniques = pd.factorize(tickers)
    starts = np.r_[True, codes[1:] != codes[:-1]]
    blocks = np.cumsum(starts) - 1
    if blocks[-1] + 1 != len(uniques):
        raise DataValidationError("lstm: each ticker's rows must be contiguous; sort X by ticker, then date")
    backwards = ~starts[1:] & ~(dates[1:] > dates[:-1])
    if backwards.any():
        row = int(np.flatnonzero(backwards)[0]) + 1
        raise DataValidationError(
            f"lstm: dates must strictly increase within a ticker; row {row} ({index[row]}) does not"
        )
    return blocks


def sequence_windows(
    values: np.ndarray, blocks: np.ndarray, sequence_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A (n_windows, sequence_length, n_features) strided view and each row's window number.

    Each ticker block is preceded by ``sequence_length - 1`` zero rows in one padded array, so
    the window ending at any row holds only that ticker's rows (or padding). No copy of the
    windows is made; index the view with the returned numbers to gather a batch.
    """
    pad = sequence_length - 1
    position = np.arange(len(values)) + (blocks + 1) * pad
    padded = np.zeros((len(values) + (int(blocks[-1]) + 1) * pad, values.shape[1]), dtype=np.float32)
    padded[position] = values
    windows = np.lib.stride_tricks.sliding_window_view(padded, sequence_length, axis=0).transpose(0, 2, 1)
    return windows, position - pad


def with_context(
    X_history: pd.DataFrame, X_new: pd.DataFrame, sequence_length: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """``X_new`` with each ticker's last ``sequence_length - 1`` earlier rows of ``X_history`` before it.

    Returns the combined frame (sorted by ticker, then date) and a boolean mask of its rows
    that came from ``X_new``: ``model.predict(combined)[mask]`` are ``X_new``'s predictions
    in ``X_new``'s order (when ``X_new`` is sorted by ticker, then date).
    """
    first_new = pd.Series(_level(X_new.index, "date"), index=_level(X_new.index, "ticker")).groupby(level=0).min()
    history_dates = _level(X_history.index, "date")
    cutoff = first_new.reindex(_level(X_history.index, "ticker")).to_numpy()
    # Tickers absent from X_new have a NaT cutoff, and NaT comparisons are False: dropped.
    earlier = X_history[np.asarray(history_dates < cutoff)]
    context = earlier.groupby(level="ticker", sort=False).tail(max(sequence_length - 1, 0))
    combined = pd.concat([context, X_new])
    keys = combined.index.to_frame(index=False)
    order = keys.sort_values(["ticker", "date"], kind="stable").index.to_numpy()
    is_new = np.r_[np.zeros(len(context), dtype=bool), np.ones(len(X_new), dtype=bool)][order]
    return combined.iloc[order], is_new


class FeatureScaler:
    """Each feature's mean and std (ddof 0) over the training rows of every ticker together.

    Pooled on purpose: what predicts returns is how a name compares with the others on the same
    date (its momentum, its volatility); z-scoring each ticker on its own history would erase
    those level differences. On the planted market, per-ticker scaling held the LSTM's walk-forward
    rank IC at 0.28 of the truth's, pooled scaling reaches 0.73 (BENCHMARKS.md, issue 14). A
    feature with no usable training value gets mean 0 and std 1.
    """

    mean_: np.ndarray
    std_: np.ndarray

    def fit(self, X: pd.DataFrame) -> FeatureScaler:
        """Learn the statistics from (training) rows ``X``."""
        frame = pd.DataFrame(X.to_numpy(dtype=np.float64, na_value=np.nan))
        self.mean_ = frame.mean().fillna(0.0).to_numpy()
        std = frame.std(ddof=0).to_numpy()
        self.std_ = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Scaled float32 features; missing (and infinite) values become 0, the training mean."""
        scaled = (X.to_numpy(dtype=np.float64, na_value=np.nan) - self.mean_) / self.std_
        return np.where(np.isfinite(scaled), scaled, 0.0).astype(np.float32)

    def save(self, file: Path) -> None:
        """Write the statistics as plain numpy arrays (no pickled objects)."""
        np.savez(file, mean=self.mean_, std=self.std_)

    @classmethod
    def load(cls, file: Path) -> FeatureScaler:
        """Read what ``save`` wrote."""
        scaler = cls()
        with np.load(file, allow_pickle=False) as arrays:
            scaler.mean_, scaler.std_ = arrays["mean"], arrays["std"]
        if scaler.mean_.ndim != 1:  # one row per ticker: it would broadcast silently against some inputs
            raise SepflowError(f"lstm: {file} holds per-ticker statistics, saved by an earlier sepflow; "
                               "retrain this model (features are now scaled over all tickers)")
        return scaler


class LSTMModel(SepflowModel):
    """LSTM(units1) → LSTM(units2) → Dense head: sigmoid (binary), softmax (multiclass), linear (regression).

    ``eval_set`` enables early stopping on validation loss (``patience`` epochs) and restores
    the best epoch's weights. ``window_stride`` k trains on every k-th window (sequence
    sampling); ``device`` is ``cpu`` or ``gpu``. Learned state: ``network_`` (the Keras model), ``scaler_``,
    ``history_`` (loss per epoch), ``best_epoch_`` (1-based), ``target_mean_``/``target_std_``.
    """

    family = "lstm"
    native_files: ClassVar[tuple[str, ...]] = (NETWORK_FILE, SCALER_FILE)
    libraries: ClassVar[tuple[str, ...]] = ("keras", "tensorflow")

    network_: Any
    scaler_: FeatureScaler
    history_: dict[str, list[float]]
    best_epoch_: int
    target_mean_: float
    target_std_: float

    def __init__(
        self,
        task: TaskKind = "classification",
        sequence_length: int = 60,
        units1: int = 128,
        units2: int = 64,
        dropout: float = 0.0,
        epochs: int = 50,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        patience: int = 5,
        window_stride: int = 1,
        random_state: int = 0,
        verbose: int = 0,
        device: str = "cpu",
    ) -> None:
        self.task = task
        self.sequence_length = sequence_length
        self.units1 = units1
        self.units2 = units2
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.window_stride = window_stride
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _windows(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return sequence_windows(self.scaler_.transform(X), ticker_blocks(X.index), int(self.sequence_length))

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return ((y - self.target_mean_) / self.target_std_).astype(np.float32)
        return y.astype(np.float32 if self.task == "classification" else np.int64)

    def _fit(self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        for name in ("sequence_length", "epochs", "batch_size", "units1", "units2", "window_stride"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"lstm: {name} must be at least 1, got {getattr(self, name)}")
        net = _keras()
        net.seed_everything(int(self.random_state))
        self.scaler_ = FeatureScaler().fit(X)
        self.target_mean_, self.target_std_ = 0.0, 1.0
        if self.task == "regression":
            self.target_mean_ = float(y.mean())
            self.target_std_ = float(y.std()) or 1.0
        windows, rows = self._windows(X)
        # Sequence sampling: neighbouring windows share all but one row, so every k-th window
        # keeps nearly all the information at 1/k of the cost. The validation loss that early
        # stopping watches is sampled the same way (it only has to rank epochs).
        sample = slice(None, None, int(self.window_stride))
        train = net.WindowBatches(
            windows, rows[sample], self._targets(y)[sample], self.batch_size, shuffle_seed=int(self.random_state),
        )
        validation, callbacks = None, []
        if eval_set is not None:
            combined, is_new = with_context(X, eval_set[0], int(self.sequence_length))
            val_windows, val_rows = self._windows(combined)
            validation = net.WindowBatches(
                val_windows, val_rows[is_new][sample], self._targets(eval_set[1])[sample], self.batch_size,
            )
            callbacks.append(net.early_stopping(int(self.patience)))
        activation, loss = {
            "classification": ("sigmoid", "binary_crossentropy"),
            "multiclass": ("softmax", "sparse_categorical_crossentropy"),
            "regression": ("linear", "mean_squared_error"),
        }[self.task]
        spec = {
            "sequence_length": int(self.sequence_length), "n_features": self.n_features_in_,
            "units1": int(self.units1), "units2": int(self.units2), "dropout": float(self.dropout),
            "n_outputs": len(self.classes_) if self.task == "multiclass" else 1,
            "activation": activation, "loss": loss, "learning_rate": float(self.learning_rate),
        }
        self.network_ = net.build_network(**spec)  # the seeded initial weights
        with net.on_device(self.device):
            history = net.train_network(self.network_, spec, lambda trainer: trainer.fit(
                train, validation_data=validation, epochs=int(self.epochs),
                callbacks=[*callbacks, *epoch_callbacks(int(self.epochs), desc=f"lstm {self.task}")],
                verbose=self.verbose, shuffle=False,
            ))
        self.history_ = {key: [float(v) for v in values] for key, values in history.history.items()}
        monitored = self.history_.get("val_loss") or self.history_["loss"]
        self.best_epoch_ = int(np.argmin(monitored)) + 1 if eval_set is not None else len(monitored)

    def _predict_output(self, X: pd.DataFrame) -> np.ndarray:
        return self._output_at(X, np.arange(len(X)))

    def _output_at(self, X: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        # Only the chosen rows' windows go through the network: context rows are inputs, not outputs
        # (a test block with 59 rows of look-back per ticker would cost many times its own size).
        windows, window_rows = self._windows(X)
        net = _keras()
        with net.on_device(self.device):
            raw = net.predict_windows(self.network_, windows, window_rows[rows]).astype(np.float64)
        if self.task == "classification":
            return np.column_stack([1.0 - raw[:, 0], raw[:, 0]])
        if self.task == "multiclass":
            # float32 softmax rows sum to 1 only to ~1e-7; renormalise for downstream checks.
            return raw / raw.sum(axis=1, keepdims=True)
        return raw[:, 0] * self.target_std_ + self.target_mean_

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (e.g. back from a walk-forward worker) as architecture and weights only.
        state = dict(super().__getstate__())  # may be the instance's own __dict__
        if "network_" in state:
            state["network_"] = _keras().network_state(state["network_"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "network_" in state:
            state = {**state, "network_": _keras().network_from_state(state["network_"])}
        super().__setstate__(state)

    def _save_native(self, folder: Path) -> dict[str, Any]:
        _keras().save_network(self.network_, folder / NETWORK_FILE)
        self.scaler_.save(folder / SCALER_FILE)
        return {
            "target_mean": self.target_mean_, "target_std": self.target_std_,
            "best_epoch": self.best_epoch_, "history": self.history_,
        }

    def _load_native(self, folder: Path, state: dict[str, Any]) -> None:
        self.network_ = _keras().load_network(folder / NETWORK_FILE)
        self.scaler_ = FeatureScaler.load(folder / SCALER_FILE)
        self.target_mean_, self.target_std_ = float(state["target_mean"]), float(state["target_std"])
        self.best_epoch_ = int(state["best_epoch"])
        self.history_ = state["history"]
