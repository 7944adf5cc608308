"""The README's commands run as written: every `sepflow` line parses (no unknown command or flag),
every `dvc exp run -S` key exists in params.yaml (or is added with `++`), and the cheap ones run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sepflow.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _commands() -> list[list[str]]:
    """Each shell command of the README's ```bash blocks, continuation lines joined, comments dropped."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"\s&&\s", line):
                words = shlex.split(part, comments=True)
                if words:
                    commands.append(words)
    return commands


# Lines with <placeholders> or a [--usage] synopsis are documentation, not commands to run.
SEPFLOW = [words for words in _commands()
           if words[0] == "sepflow" and not any("<" in w or w.startswith("[") for w in words)]
EXPERIMENTS = [words for words in _commands() if words[:3] == ["dvc", "exp", "run"]]


def test_the_readme_has_commands_to_check() -> None:
    assert len(SEPFLOW) >= 15 and len(EXPERIMENTS) >= 3


@pytest.mark.parametrize("words", SEPFLOW, ids=[" ".join(w)[:60] for w in SEPFLOW])
def test_every_sepflow_command_parses(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        build_parser().parse_args(words[1:])
    except SystemExit as done:  # --help / --version exit 0; an unknown command or flag exits 2
        assert done.code == 0, capsys.readouterr().err


def test_every_experiment_key_exists_or_is_added() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    missing = []
    for words in EXPERIMENTS:
        settings = [words[i + 1] for i, word in enumerate(words) if word == "-S"]
        for setting in settings:
            key = setting.split("=", 1)[0]
            if key.startswith("++"):
                continue
            node = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(setting)
                    break
                node = node[part]
    assert not missing, f"README `dvc exp run -S` keys not in params.yaml (DVC refuses them; use ++): {missing}"


@pytest.mark.parametrize("command", [
    ["sepflow", "--version"],
    ["sepflow", "run", "--symbols", "AAPL", "MSFT", "NVDA", "--top-n-targets", "2", "--top-m-features", "10",
     "--dry-run"],
    ["make", "help"],
])
def test_the_cheap_commands_run(command: list[str]) -> None:
    assert command in [c[:len(command)] for c in _commands()]  # still in the README as written
    binary = Path(sys.executable).parent / command[0]
    done = subprocess.run([str(binary) if binary.exists() else command[0], *command[1:]], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
