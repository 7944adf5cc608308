"""What a stage process pays before it works: the import time of what stages import, each in
fresh interpreters (median of --repeat), measured in one run so the figures compare as ratios.

    .venv/bin/python benchmarks/bench_imports.py [--repeat 5]

Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CASES = {
    "skops.io (plain import: its estimator scan imports torch)": "import skops.io",
    "skops.io as sepflow imports it (sepflow.models._skops)": "from sepflow.models._skops import _skops_io; _skops_io()",
    "sepflow.stages.train (module import)": "import sepflow.stages.train",
    "sepflow.stages.walk_forward (module import)": "import sepflow.stages.walk_forward",
    "mlflow": "import mlflow",
    "tensorflow + keras (LSTM stages only)": "import keras, tensorflow",
}


def _seconds(statement: str) -> float:
    timer = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", timer], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, statement in CASES.items():
        times = [_seconds(statement) for _ in range(args.repeat)]
        print(f"{name:60s} {statistics.median(times):6.2f} s (median of {args.repeat})")


if __name__ == "__main__":
    main()
