"""Byte-reproducible model archives.

skops and Keras write zip files whose bytes depend on when and in which process they were
written: entry timestamps, Python object ids as entry names and references (skops' array files
and ``__id__``, Keras' ``shared_object_id``), a save date (Keras' ``metadata.json``), and the
uninitialised padding bytes of scikit-learn's tree-node records (skops saves the raw array). DVC hashes model folders, so every retrain would change the hash and
invalidate every stage downstream. The archives are rewritten here so that the same model gives
the same bytes; what they load back is unchanged.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["canonical_keras", "canonical_skops"]

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
# skops names each array file and each shared-object key by id(): "__id__": 1406… and "1406….npy".
_SKOPS_ID = re.compile(rb'"__id__": (\d+)|"(\d+)\.npy"')
_KERAS_ID = re.compile(rb'"shared_object_id": (\d+)')


def _renumbered(text: bytes, pattern: re.Pattern[bytes], write: Callable[[re.Match[bytes], bytes], bytes],
                ) -> tuple[bytes, dict[bytes, bytes]]:
    """``text`` with the ids ``pattern`` captures numbered 1, 2, … in order of first appearance."""
    order: dict[bytes, bytes] = {}
    for match in pattern.finditer(text):
        order.setdefault(next(g for g in match.groups() if g), str(len(order) + 1).encode())
    return pattern.sub(lambda m: write(m, order[next(g for g in m.groups() if g)]), text), order


def _zeroed_padding(data: bytes) -> bytes:
    """A ``.npy`` file's bytes with the padding between record fields zeroed (structured arrays)."""
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.dtype.names is None:
        return data
    clean = np.zeros(array.shape, dtype=array.dtype)
    for name in array.dtype.names:
        clean[name] = array[name]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def _rewrite(file: Path, renamed: dict[str, str], contents: dict[str, bytes]) -> None:
    """Rewrite ``file`` with fixed entry times and permissions, entries renamed and replaced as given."""
    with zipfile.ZipFile(file) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    staging = file.with_name(f".{file.name}.tmp")
    with zipfile.ZipFile(staging, "w") as out:
        for info, data in entries:
            name = renamed.get(info.filename, info.filename)
            fixed = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            out.writestr(fixed, contents.get(info.filename, data))
    staging.replace(file)


def canonical_skops(file: Path) -> None:
    """Number skops' object ids 1, 2, … in order of first appearance and zero record padding."""
    with zipfile.ZipFile(file) as archive:
        schema = archive.read("schema.json")
        arrays = {name: archive.read(name) for name in archive.namelist() if name.endswith(".npy")}
    schema, order = _renumbered(schema, _SKOPS_ID, lambda m, new: (
        b'"__id__": ' + new if m.group(1) else b'"' + new + b'.npy"'))
    renamed = {f"{old.decode()}.npy": f"{new.decode()}.npy" for old, new in order.items()}
    _rewrite(file, renamed, {"schema.json": schema, **{name: _zeroed_padding(data) for name, data in arrays.items()}})


def canonical_keras(file: Path) -> None:
    """Shared-object ids numbered 1, 2, …, fixed entry times and no save date in ``metadata.json``
    (Keras reads only its version there)."""
    with zipfile.ZipFile(file) as archive:
        metadata = json.loads(archive.read("metadata.json"))
        config = archive.read("config.json")
    metadata.pop("date_saved", None)
    config, _ = _renumbered(config, _KERAS_ID, lambda m, new: b'"shared_object_id": ' + new)
    _rewrite(file, {}, {"metadata.json": json.dumps(metadata).encode(), "config.json": config})
