"""The panel parquet contract: round trip, equal frames give equal bytes, dictionaries where they pay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from sepflow.io import read_panel, read_panel_metadata, write_panel


def _panel(rows: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "ticker": pd.Categorical(np.repeat(["AAA", "BBB", "NA"], rows // 3)),
        "date": np.tile(pd.bdate_range("2020-01-01", periods=rows // 3).to_numpy().astype("datetime64[ns]"), 3),
        "close": rng.lognormal(3.0, 0.2, rows),
        "volume": rng.integers(0, 10**6, rows),
    })


def test_round_trip_and_equal_bytes(tmp_path: Path) -> None:
    frame = _panel()
    write_panel(frame, tmp_path / "a.parquet", metadata={"asof": "2024-01-31"})
    write_panel(frame.copy(), tmp_path / "b.parquet", metadata={"asof": "2024-01-31"})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    back = read_panel(tmp_path / "a.parquet", categorical=("ticker",))
    pd.testing.assert_frame_equal(back, frame, check_categorical=False)
    assert read_panel(tmp_path / "a.parquet")["ticker"].tolist() == frame["ticker"].astype(str).tolist()
    assert read_panel_metadata(tmp_path / "a.parquet") == {"asof": "2024-01-31"}


def test_dictionary_pages_only_for_columns_with_few_values(tmp_path: Path) -> None:
    write_panel(_panel(), tmp_path / "p.parquet")
    group = pq.ParquetFile(tmp_path / "p.parquet").metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert all("RLE_DICTIONARY" in encodings[c] for c in ("ticker", "date", "volume"))
    assert "RLE_DICTIONARY" not in encodings["close"]  # floats: plain pages, zstd
