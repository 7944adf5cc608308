"""Packaging: one version, pyproject naming every library sepflow imports, and a lock that agrees
with the direct pins."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

import sepflow

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s#;]+)")


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins(file: Path) -> dict[str, str]:
    found = {}
    for line in file.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert version("sepflow") == sepflow.__version__


def test_the_lock_holds_every_direct_pin() -> None:
    direct, locked = _pins(REPO / "requirements.txt"), _pins(REPO / "requirements.lock")
    wrong = {name: (pin, locked.get(name)) for name, pin in direct.items()
             if locked.get(name, "").split("+")[0] != pin}  # a local tag (torch's +cpu) is the same release
    assert not wrong, f"requirements.lock disagrees with requirements.txt (run `make lock`): {wrong}"
    assert len(locked) > len(direct)  # the transitive packages too


def test_pyproject_names_every_library_sepflow_imports() -> None:
    """Each third-party module imported anywhere in src/sepflow comes from a distribution pyproject
    lists (as a dependency or in an extra), so `pip install .[extras]` can run what it imports."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    modules = set()
    for file in (REPO / "src/sepflow").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"sepflow", "__future__"}
    owners = packages_distributions()
    missing = {module: owners.get(module) for module in sorted(third_party)
               if not {_name(d) for d in owners.get(module, [])} & declared}
    assert not missing, f"imported but not in pyproject.toml: {missing}"
