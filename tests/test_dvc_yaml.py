"""dvc.yaml tells the truth: each stage's code deps are the import closure of the code it runs, and
every data path it names is one the catalog names.

A stage runs ``sepflow stage <name>``: the CLI dispatcher (``sepflow/cli.py``, argument parsing
only) hands over to ``sepflow.stages.<name>.main``, whose import closure inside ``src/sepflow`` is
what decides the stage's outputs. Imports under ``if TYPE_CHECKING:`` never run and are left out.
Run this file as a script to print the deps each stage should list (``--write``: rewrite them).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from sepflow import catalog

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
STAGE_COMMAND = re.compile(r"^sepflow stage (\w+)")


def _module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str) -> set[str]:
    """sepflow modules ``module`` imports anywhere (lazy imports too), with their parent packages."""
    file = _module_file(module)
    assert file is not None, module
    tree = ast.parse(file.read_text())
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and getattr(block.test, "id", None) == "TYPE_CHECKING" for stmt in block.body for node in ast.walk(stmt)}
    named: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    found = set()
    for name in named:
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing a.b.c runs a, a.b
    return {name for name in found if name.split(".")[0] == "sepflow" and _module_file(name)}


def import_closure(module: str) -> set[str]:
    """Files (repository-relative) of every sepflow module importing ``module`` runs."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imports(name) - seen)
    return {_module_file(name).relative_to(REPO).as_posix() for name in seen}


def _python_files(path: str) -> set[str]:
    full = REPO / path
    if full.is_dir():
        return {p.relative_to(REPO).as_posix() for p in full.rglob("*.py") if "__pycache__" not in p.parts}
    return {path}


def compact(files: set[str]) -> list[str]:
    """``files`` as dvc.yaml lists them: a whole folder where every module in it is needed."""
    listed: set[str] = set()
    for file in sorted(files):
        folder = Path(file).parent
        while folder.as_posix() != "src" and _python_files(folder.as_posix()) <= files:
            file, folder = folder.as_posix(), folder.parent
        listed.add(file)
    return sorted(path for path in listed if not any(path.startswith(f"{other}/") for other in listed))


def _stages() -> dict[str, dict]:
    """Stage name (``train@dummy``) → its definition with ``${item}`` / ``${key}`` expanded."""
    stages = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        items = stage["foreach"]
        for key in items:
            text = yaml.safe_dump(stage["do"]).replace("${key}", str(key)).replace("${item}", str(key))
            stages[f"{name}@{key}"] = yaml.safe_load(text)
    return stages


def _paths(entries: list) -> list[str]:
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]


def expected_code_deps(stage: dict) -> set[str]:
    command = STAGE_COMMAND.match(stage["cmd"])
    assert command, f"not a sepflow stage command: {stage['cmd']}"
    return import_closure(f"sepflow.stages.{command.group(1)}")


@pytest.mark.parametrize("name", sorted(_stages()))
def test_code_deps_are_the_import_closure_of_the_stage(name: str) -> None:
    stage = _stages()[name]
    listed = set().union(*(_python_files(p) for p in _paths(stage["deps"]) if p.startswith("src/")))
    expected = expected_code_deps(stage)
    missing, surplus = sorted(expected - listed), sorted(listed - expected)
    assert not missing and not surplus, (
        f"dvc.yaml {name}: missing code deps {missing}, surplus {surplus} (fix: python tests/test_dvc_yaml.py --write); "
        "the list:\n  - "
        + "\n  - ".join(compact(expected))
    )


def test_every_data_path_is_named_by_the_catalog() -> None:
    """Each data dep/out/metric/plot is a catalog path, lies inside a catalog folder, or is the
    folder of catalog files (``reports/ranking``)."""
    named = [Path(value).as_posix() for key, value in vars(catalog).items() if key.isupper() and isinstance(value, Path)]
    stray = []
    for name, stage in _stages().items():
        for kind in ("deps", "outs", "metrics", "plots"):
            for path in _paths(stage.get(kind)):
                if path.startswith(("src/", "${")):
                    continue
                if not any(path == p or path.startswith(f"{p}/") or p.startswith(f"{path}/") for p in named):
                    stray.append(f"{name} {kind}: {path}")
    assert not stray, f"dvc.yaml paths the catalog does not name: {stray}"


def test_top_level_plots_overlay_every_walked_family() -> None:
    """Each top-level plot reads the same table of every family walk_forward writes, and the
    columns it draws are ones that table has."""
    from sepflow.stages.walk_forward import PLOTS

    document = yaml.safe_load((REPO / "dvc.yaml").read_text())
    walked = {*document["stages"]["walk_forward"]["foreach"], "ensemble"}
    for entry in document["plots"]:
        ((plot_id, plot),) = entry.items()
        assert (REPO / ".dvc/plots" / f"{plot['template']}.json").is_file(), plot_id
        sources = {Path(path): fields if isinstance(fields, list) else [fields] for path, fields in plot["y"].items()}
        assert {path.parts[2] for path in sources} == walked, plot_id
        (table,) = {path.stem for path in sources}  # one table, overlaid across families
        assert table in PLOTS, plot_id
        assert {plot["x"], *(f for fields in sources.values() for f in fields)} <= set(PLOTS[table]), plot_id
        assert all(path.parent == catalog.WALK_FORWARD_REPORTS / path.parts[2] / "plots" for path in sources), plot_id


def test_no_stage_module_imports_another() -> None:
    """Stages share paths through the catalog, so one stage's code never enters another's closure."""
    for module in sorted((SRC / "sepflow/stages").glob("[!_]*.py")):
        name = f"sepflow.stages.{module.stem}"
        others = {m for m in _imports(name) if m.startswith("sepflow.stages.")}
        assert not others, f"{name} imports {sorted(others)}"


def write_code_deps(path: Path = REPO / "dvc.yaml") -> None:
    """Rewrite every stage's code deps in ``path`` as its import closure (data deps and comments kept)."""
    from ruamel.yaml import YAML  # DVC's own YAML library: it keeps the file's comments

    rt = YAML()
    rt.preserve_quotes, rt.width = True, 200
    document = rt.load(path)
    for stage in document["stages"].values():
        body = stage["do"] if "foreach" in stage else stage
        command = str(body["cmd"]).replace("${key}", "").replace("${item}", "")
        data = [dep for dep in body["deps"] if not str(dep).startswith("src/")]
        body["deps"].clear()
        body["deps"].extend([*data, *compact(expected_code_deps({"cmd": command}))])
    rt.dump(document, path)


if __name__ == "__main__":  # --write: rewrite dvc.yaml's code deps; else print each stage's list
    if sys.argv[1:] == ["--write"]:
        write_code_deps()
    for stage_name, definition in _stages().items():
        if STAGE_COMMAND.match(definition["cmd"]) and (len(sys.argv) < 2 or stage_name in sys.argv[1:]):
            print(stage_name, *compact(expected_code_deps(definition)), sep="\n  - ")
