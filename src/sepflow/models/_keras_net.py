"""The Keras side of the LSTM family, imported only when an LSTM is fitted or loaded.

Importing TensorFlow costs seconds and hundreds of MB, which the tree-only stages should not
pay; ``sepflow.models.lstm`` imports this module lazily.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

# Keras 3 reads its backend once, at first import; sepflow's LSTM is written for TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from sepflow.models._archive import canonical_keras

__all__ = [
    "WindowBatches", "build_network", "early_stopping", "load_network", "network_from_state", "network_state",
    "predict_windows", "save_network", "seed_everything", "train_network",
]

T = TypeVar("T")

# Fixed chunk size for prediction, so outputs never depend on a batch_size param.
PREDICT_CHUNK = 2048


def on_device(device: str) -> tf.device:
    """Pin ops to the GPU or the CPU (``train.device``); TensorFlow would pick a GPU by itself."""
    return tf.device("/GPU:0" if device == "gpu" else "/CPU:0")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic kernels.

    Both are process-wide settings: they also affect any other TensorFlow code in the process.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_network(
    *, sequence_length: int, n_features: int, units1: int, units2: int, dropout: float,
    n_outputs: int, activation: str, loss: str, learning_rate: float,
) -> keras.Model:
    """LSTM(units1, sequences) → LSTM(units2) → Dense(n_outputs, activation), compiled with Adam."""
    inputs = keras.Input(shape=(sequence_length, n_features), name="windows")
    hidden = keras.layers.LSTM(units1, return_sequences=True, dropout=dropout, name="lstm_1")(inputs)
    hidden = keras.layers.LSTM(units2, dropout=dropout, name="lstm_2")(hidden)
    outputs = keras.layers.Dense(n_outputs, activation=activation, name="head")(hidden)
    network = keras.Model(inputs, outputs, name="sepflow_lstm")
    # jit_compile=False: XLA kernels are not covered by op determinism and fuse float ops
    # differently from the graph a loaded model runs, which would break exact round trips.
    # A named optimiser: Keras numbers unnamed ones per process (adam_16), and the saved .keras
    # file records the name, so its bytes would depend on how many networks came before.
    network.compile(optimizer=keras.optimizers.Adam(learning_rate, name="adam"), loss=loss, jit_compile=False)
    return network


# Compiled networks kept for training, by architecture and optimiser settings. Tracing a fresh
# network's train and validation functions costs seconds per fit, more than a small fit itself
# (walk-forward fits one per fold); a kept network is reset to the new fit's starting state.
_TRAINERS: dict[tuple[object, ...], tuple[keras.Model, list[np.ndarray]]] = {}
_MAX_TRAINERS = 3


def train_network(network: keras.Model, spec: dict[str, object], fit: Callable[[keras.Model], T]) -> T:
    """Run ``fit(trainer)`` on a compiled network that starts exactly where ``network`` (freshly
    built from ``spec``) starts, then copy the trained weights into ``network``.

    The trainer is a kept network of the same ``spec`` (built the first time) whose weights and
    optimiser state are reset to ``network``'s and a new optimiser's first, so the fit is the same
    computation as on a fresh network (the tests check equal predictions). Networks with dropout
    are trained as they are: their random state lives in the layers. ``network`` itself is never
    compiled into a train function, so a model keeps no link to the kept trainer.
    """
    if spec.get("dropout"):
        return fit(network)
    key = tuple(sorted(spec.items()))
    if key not in _TRAINERS:
        if len(_TRAINERS) >= _MAX_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        trainer = build_network(**spec)  # type: ignore[arg-type]
        trainer.optimizer.build(trainer.trainable_variables)
        _TRAINERS[key] = (trainer, [keras.ops.convert_to_numpy(v) for v in trainer.optimizer.variables])
    trainer, optimizer_start = _TRAINERS[key]
    trainer.set_weights(network.get_weights())
    for variable, start in zip(trainer.optimizer.variables, optimizer_start, strict=True):
        variable.assign(start)
    result = fit(trainer)
    network.set_weights(trainer.get_weights())
    return result


def save_network(network: keras.Model, file: Path) -> None:
    """Write a ``.keras`` file (architecture JSON + weights)."""
    with warnings.catch_warnings():
        # Keras converts TensorFlow variables with np.array(x), which NumPy 2 flags as deprecated;
        # harmless, and not ours to fix.
        warnings.filterwarnings(
            "ignore", message="__array__ implementation doesn't accept a copy", category=DeprecationWarning,
        )
        network.save(file)
    canonical_keras(file)


def load_network(file: Path) -> keras.Model:
    """Read a ``.keras`` file; safe_mode refuses to deserialise arbitrary Python (lambdas)."""
    return keras.saving.load_model(file, compile=False, safe_mode=True)


def network_state(network: keras.Model) -> tuple[str, list[np.ndarray]]:
    """Architecture JSON and weights: what a pickled LSTM carries (not the optimiser's state,
    which Keras would pickle too and then warn it cannot restore into a fresh optimiser)."""
    return network.to_json(), network.get_weights()


def network_from_state(state: tuple[str, list[np.ndarray]]) -> keras.Model:
    """The network ``network_state`` described, uncompiled (as ``load_network`` returns it)."""
    architecture, weights = state
    network = keras.models.model_from_json(architecture)
    network.set_weights(weights)
    return network


def early_stopping(patience: int) -> keras.callbacks.Callback:
    """Stop when validation loss stalls for ``patience`` epochs; keep the best epoch's weights."""
    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)


class WindowBatches(keras.utils.PyDataset):
    """Batches of (window, target) gathered on demand from a strided window view.

    Materialising every window at once would take rows × sequence_length × features floats
    (gigabytes for a full panel); gathering one batch at a time keeps memory at one batch.
    With ``shuffle_seed`` the sample order is a seeded permutation, redrawn every epoch.
    """

    def __init__(
        self, windows: np.ndarray, rows: np.ndarray, targets: np.ndarray, batch_size: int,
        shuffle_seed: int | None = None,
    ) -> None:
        # One worker, no multiprocessing: batches are produced in order, so fits repeat exactly.
        super().__init__(workers=1, use_multiprocessing=False)
        self.windows, self.rows, self.targets = windows, rows, targets
        self.batch_size = int(batch_size)
        self._rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
        self._order = np.arange(len(rows))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return np.ascontiguousarray(self.windows[self.rows[chosen]]), self.targets[chosen]

    def on_epoch_end(self) -> None:
        if self._rng is not None:
            self._order = self._rng.permutation(len(self.rows))


def predict_windows(network: keras.Model, windows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Network outputs for the windows ending at ``rows``, in that order."""
    chunks = [
        np.asarray(network.predict_on_batch(np.ascontiguousarray(windows[rows[start:start + PREDICT_CHUNK]])))
        for start in range(0, len(rows), PREDICT_CHUNK)
    ]
    return np.concatenate(chunks, axis=0)
