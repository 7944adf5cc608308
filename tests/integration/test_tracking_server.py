"""A team's tracking server: `dvc repro` with MLFLOW_TRACKING_URI pointing at a real `mlflow server`
(SQLite or PostgreSQL backend, proxied artifacts); runs, registry and aliases live on the server."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sepflow.io import read_json
from sepflow.tracking.runs import EXPERIMENT, configure_tracking
from sepflow.training.artifacts import load_trained
from sepflow.training.pyfunc import predict_records

MLFLOW = Path(sys.executable).parent / "mlflow"
STARTUP_LIMIT_S = 180  # a safeguard against a hung server on a loaded machine, not a timing claim
# Run as root (CI), PostgreSQL refuses to start; its own OS user runs it there.
PG_USER = "postgres" if os.geteuid() == 0 else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bindir() -> Path | None:
    """The folder holding PostgreSQL's server binaries (initdb, pg_ctl, createdb), or None when not installed."""
    # Resolved: a PATH entry may be a lone symlink to initdb, away from pg_ctl and createdb.
    candidates = [str(Path(initdb).resolve().parent)] if (initdb := shutil.which("initdb")) else []
    if pg_config := shutil.which("pg_config"):
        # Debian's /usr/bin/pg_config names the server's bindir even when only libpq-dev is installed.
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
        candidates.append(bindir.strip())
    # Debian's layout, newest major version first.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                         key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).parent.name)])
    tools = ("initdb", "pg_ctl", "createdb")
    return next((Path(c) for c in candidates if c and all((Path(c) / t).exists() for t in tools)), None)


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth) with an empty database `mlflow`."""
    bindir = _postgres_bindir()
    if bindir is None:
        reason = "PostgreSQL server binaries (initdb) not found; `make system-deps` installs them"
        if os.environ.get("SEPFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SEPFLOW_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    # Not pytest's tmp_path: its parents are private to root, and the server's user must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="sepflow-pg-"))
    if PG_USER:
        shutil.chown(folder, PG_USER)
    port = _free_port()

    def pg(tool: str, *args: str) -> None:
        done = subprocess.run([str(bindir / tool), *args], cwd=folder, user=PG_USER, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise AssertionError(f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    data = str(folder / "data")
    try:
        pg("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"  # fsync: throwaway data
        pg("pg_ctl", "-D", data, "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        try:
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
            yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
        finally:
            pg("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def tracking_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real `mlflow server` on a free port of 127.0.0.1: (its URL, its artifacts destination)."""
    folder = tmp_path / "server"
    folder.mkdir()
    backend = (request.getfixturevalue("postgres_url") if request.param == "postgresql"
               else f"sqlite:///{folder / 'mlflow.db'}")
    artifacts = folder / "mlartifacts"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Job execution runs GenAI jobs sepflow never submits, with seven worker processes of its own.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [str(MLFLOW), "server", "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not come up on {url}:\n{(folder / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url, artifacts
    finally:
        # The server's own process group holds uvicorn and its workers: stop them all, none orphaned.
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        except ProcessLookupError:
            server.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # a worker that outlived its parent
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize(("tracking_server", "family"), [("sqlite", "xgboost"), ("postgresql", "dummy")],
                         indirect=["tracking_server"])
def test_pipeline_logs_to_server(tracking_server: tuple[str, Path], family: str, repo_copy: Callable,
                                 named_research: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    url, artifacts = tracking_server
    # No hyperparameter search: the server, not the model, is under test.
    repo = repo_copy({**named_research("return_5d"), "train": {"tuning": {"n_trials": {"xgboost": 0}}}})
    repo.env["MLFLOW_TRACKING_URI"] = url
    repo.run("dvc", "repro", f"train@{family}")

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.get_experiment_by_name("sepflow")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's, proxied
    (train,) = client.search_runs([experiment.experiment_id], f"tags.`sepflow.stage` = 'train@{family}'")
    assert train.info.status == "FINISHED"
    assert train.data.tags["sepflow.dvc_stage"] == f"train@{family}"
    assert len(train.data.tags["sepflow.git_commit"]) == 40 and train.data.tags["sepflow.git_dirty"] == "false"
    assert any(tag.startswith("sepflow.input_md5.") for tag in train.data.tags)
    assert {a.path for a in client.list_artifacts(train.info.run_id)} >= {f"{family}.json", f"{family}_models.json"}
    for stage in ("ingest", "filter_sep", "build_features"):
        (run,) = client.search_runs([experiment.experiment_id], f"tags.`sepflow.stage` = '{stage}'")
        assert run.info.status == "FINISHED", stage

    name = f"{family}-return_5d"
    version = client.get_model_version_by_alias(name, "candidate")
    assert version.tags["sepflow.family"] == family and version.tags["sepflow.target"] == "return_5d"
    assert client.get_run(version.run_id).data.tags["mlflow.parentRunId"] == train.info.run_id
    assert any(artifacts.rglob("MLmodel"))  # the model's files went through the server to its store

    # Loading by alias resolves on the server and downloads through its artifact proxy.
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}@candidate")
    finally:
        mlflow.set_tracking_uri(previous)
    trained = load_trained(repo.root / f"models/{family}/return_5d")
    example = trained.input_example()
    pd.testing.assert_frame_equal(model.predict(example), predict_records(trained, example))

    # Nothing landed in the copy's own store: the server got everything.
    for local in ("mlflow.db", "mlartifacts", "mlruns"):
        assert not (repo.root / local).exists(), local


@pytest.fixture()
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty SQLite store named by MLFLOW_TRACKING_URI, cwd in tmp_path; the global URI restored after."""
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_experiment_created_meanwhile_is_used(local_store: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Two first stages on a fresh server: the one losing the race to create the experiment joins it."""
    look = mlflow.get_experiment_by_name
    other = MlflowClient(tracking_uri=local_store)

    def look_then_lose_race(name: str) -> object:
        found = look(name)
        if found is None:  # a teammate's stage creates it right after our look
            other.create_experiment(name)
        return found

    monkeypatch.setattr(mlflow, "get_experiment_by_name", look_then_lose_race)
    assert configure_tracking(tmp_path) == other.get_experiment_by_name(EXPERIMENT).experiment_id


def test_empty_tracking_uri_means_the_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_TRACKING_URI="" selects the repo's SQLite store, so artifacts go beside it, not to ./mlruns."""
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.chdir(tmp_path)
    try:
        experiment_id = configure_tracking(tmp_path)
        location = MlflowClient().get_experiment(experiment_id).artifact_location
    finally:
        mlflow.set_tracking_uri(previous)
    assert location == (tmp_path / "mlartifacts").as_uri()
