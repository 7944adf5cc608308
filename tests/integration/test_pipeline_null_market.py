"""A market with nothing to predict, through the whole chain: synthesize (signal_strength 0) →
rank → select → train → walk-forward → promote. `dvc repro` ends cleanly and nothing is promotable.

Two runs in one copy (CI time): first with the targets forced (`ranking.targets`), so the later
stages are exercised on noise and the gate must refuse every candidate; then with the ranking's
own threshold (`min_predictability_score`: the production default), where the ranking either
selects nothing — every later stage then writes its declared outputs, empty, saying why — or
the gate refuses what it selected.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sepflow.io import read_json

pytestmark = pytest.mark.slow

FAMILIES = ["dummy", "xgboost"]


def _refused_everywhere(repo, targets: list[str]) -> None:
    for target in targets:
        done = repo.run("sepflow", "promote", f"xgboost-{target}", check=False)
        assert done.returncode == 1, (target, done.stdout, done.stderr)  # refused, not an error
        assert "refused" in (done.stdout + done.stderr).lower()


def test_null_market_ends_cleanly_and_promotes_nothing(repo_copy: Callable, named_research: Callable) -> None:
    stages = [f"walk_forward@{family}" for family in FAMILIES]
    repo = repo_copy({"synthetic": {"signal_strength": 0.0}, "train": {"families": FAMILIES},
                      **named_research("return_5d", "dir_5d")})
    repo.run("dvc", "repro", *stages)
    forced = read_json(repo.root / "data/processed/selected_targets.json")["targets"]
    assert forced == ["return_5d", "dir_5d"]
    ics = [read_json(repo.root / "reports/walk_forward/xgboost/metrics.json")[t] for t in forced]
    # On average within two standard errors of zero.
    assert abs(sum(m["rank_ic"] for m in ics) / len(ics)) < 2 * max(m["rank_ic_se"] for m in ics), ics
    _refused_everywhere(repo, forced)

    repo.set_params({"ranking": {"targets": None, "min_predictability_score": 0.02},
                     "selection": {"manual": {}}})
    repo.run("dvc", "repro", *stages)
    selected = read_json(repo.root / "data/processed/selected_targets.json")["targets"]
    for family in FAMILIES:
        train_report = read_json(repo.root / f"reports/train/{family}_models.json")
        folds = read_json(repo.root / f"reports/walk_forward/{family}/folds.json")
        if not selected:
            assert "why_empty" in train_report and "why_empty" in folds
            assert read_json(repo.root / f"reports/walk_forward/{family}/metrics.json") == {}
            for plot in ("equity", "rolling_ic", "folds"):
                assert (repo.root / f"reports/walk_forward/{family}/plots/{plot}").is_dir()
    _refused_everywhere(repo, selected)
