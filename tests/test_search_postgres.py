"""`seqtune search` on a real PostgreSQL server: three concurrent workers share one study, and every trial of the
budget runs exactly once. The server (Debian's `postgresql` package; `.ci/run` installs it) is started here in a
temporary folder on a free loopback port, as an unprivileged user, and stopped at the end."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli

pytest.importorskip("psycopg")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of our own; yields its URL (database ``optuna``, user ``seqtune``, no password)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)")
    # not under pytest's tmp folder: that is private to the user running the tests, and the server runs as another
    root = Path(tempfile.mkdtemp(prefix="seqtune-pg-"))
    data, port = root / "data", _free_port()
    run_as: list[str] = []
    if os.getuid() == 0:  # the server refuses to run as root: use the package's own user
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(root, user)
        run_as = ["runuser", "-u", user, "--"]
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "seqtune", "-A", "trust", "--no-sync"], check=True,
                   capture_output=True, text=True)  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True, text=True)  # fmt: skip
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=seqtune dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql://seqtune@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_three_workers_share_a_study_on_postgresql(postgres, tiny_model_dir, toy_csv, tmp_path):
    import optuna

    trials = 6
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "seqtune", "search", "--train-file", str(toy_csv), "--model", str(tiny_model_dir),
           "--max-length", "32", "--epochs", "1", "--trials", str(trials), "--storage", postgres, "--quiet",
           "--no-retrain"]  # fmt: skip
    workers = [
        subprocess.Popen(
            [*cmd, "--output", str(tmp_path / f"worker-{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(3)
    ]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], "\n".join(o[-2000:] for o in outputs)

    study = optuna.load_study(study_name="seqtune", storage=postgres.replace("postgresql://", "postgresql+psycopg://"))
    budgeted = [t for t in study.trials if not t.user_attrs.get("over_budget")]
    done = [t for t in budgeted if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == trials, [(t.number, t.state.name) for t in study.trials]
    assert len({t.number for t in done}) == trials  # none run twice
    assert sum(bool(t.user_attrs.get("baseline")) for t in done) == 1  # the run's own settings, once


def test_a_postgres_url_without_a_driver_is_one_line(monkeypatch):
    import importlib.util

    from seqtune.errors import SeqtuneError
    from seqtune.search import storage_url

    assert storage_url("postgresql://u:secret@db:5432/x").startswith(("postgresql+psycopg://", "postgresql://"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if "psycopg" in n else real(n, *a))
    with pytest.raises(SeqtuneError) as err:
        storage_url("postgresql://u:secret@db:5432/x")
    assert str(err.value) == "--storage db:5432/x: PostgreSQL needs a driver; pip install 'seqtune[postgres]'"


def test_a_storage_server_that_is_not_there_is_one_line(capsys, tiny_model_dir, toy_csv, tmp_path):
    port = _free_port()  # nothing listens on it
    code, _, err = run_cli(capsys, "search", "--train-file", toy_csv, "--model", tiny_model_dir, "--trials", "1",
                           "--storage", f"postgresql://seqtune:secret@127.0.0.1:{port}/optuna",
                           "--output", tmp_path / "search")  # fmt: skip
    err = assert_clean_error(code, err, f"--storage 127.0.0.1:{port}/optuna: cannot open the study (connection failed")
    assert "check the URL, that the database server is running" in err and "secret" not in err


def test_a_user_who_may_not_create_tables_is_one_line(capsys, postgres, tiny_model_dir, toy_csv, tmp_path):
    """A genuine SQL error (here: no right to create the study's tables) is not retried as if it were two workers
    creating the tables at once: it is one line with the server's reason."""
    import psycopg

    admin = postgres.replace("/optuna", "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE ROLE reader LOGIN")
        conn.execute("CREATE DATABASE optuna_ro")
    with psycopg.connect(postgres.replace("/optuna", "/optuna_ro"), autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # PostgreSQL 15's default, made explicit
    url = postgres.replace("seqtune@", "reader@").replace("/optuna", "/optuna_ro")
    code, _, err = run_cli(capsys, "search", "--train-file", toy_csv, "--model", tiny_model_dir, "--trials", "1",
                           "--storage", url, "--output", tmp_path / "search")  # fmt: skip
    where = url.split("@")[-1]
    assert_clean_error(code, err, f"--storage {where}: cannot open the study (permission denied for schema public")
    assert not (tmp_path / "search" / "trials").exists()


def test_a_journal_file_holds_a_study_too(tiny_model_dir, toy_csv, tmp_path):
    """`--storage journal:PATH`: Optuna's journal file, for workers that share a file system but no database."""
    from seqtune import load_config
    from seqtune.search import search

    cfg = load_config(None, [f"model.name={tiny_model_dir}", f"data.train_file={toy_csv}", "model.max_length=32",
                             "train.epochs=1", "quiet=true", f"output={tmp_path / 'search'}"])  # fmt: skip
    storage = f"journal:{tmp_path / 'study.log'}"
    first = search(cfg, n_trials=2, storage=storage, retrain=False)
    assert len(first.trials) == 2 and (tmp_path / "study.log").is_file()
    again = search(cfg, n_trials=3, storage=storage, retrain=False)  # resumes: only the third trial runs
    assert [t["number"] for t in again.trials] == [0, 1, 2]


def test_a_killed_workers_trial_is_marked_failed_and_its_slot_runs_again(postgres, tiny_model_dir, toy_csv, tmp_path):
    """A worker SIGKILLed in the middle of a trial stops sending heartbeats; once the grace period (60 s) has passed,
    the next worker marks that trial failed, and it does not count: that worker runs the whole budget."""
    import signal
    import time

    import optuna

    url = postgres.replace("/optuna", "/optuna_kill")
    import psycopg

    with psycopg.connect(postgres.replace("/optuna", "/postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE optuna_kill")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "seqtune", "search", "--train-file", str(toy_csv), "--model", str(tiny_model_dir),
           "--max-length", "32", "--trials", "2", "--storage", url, "--quiet", "--no-retrain"]  # fmt: skip
    doomed = subprocess.Popen([*cmd, "--epochs", "400", "--output", str(tmp_path / "doomed")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    storage = url.replace("postgresql://", "postgresql+psycopg://")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name="seqtune", storage=storage).trials
        except Exception:  # noqa: BLE001 - the study or its tables may not exist yet
            trials = []
        if any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
            break
        time.sleep(0.5)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    time.sleep(65)  # past the grace period: the killed trial's last heartbeat is stale
    done = subprocess.run([*cmd, "--epochs", "1", "--output", str(tmp_path / "next")], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(study_name="seqtune", storage=storage)
    budgeted = [t for t in study.trials if not t.user_attrs.get("over_budget")]
    states = [t.state.name for t in budgeted]
    assert states[0] == "FAIL" and sorted(states[1:]) in (["COMPLETE", "COMPLETE"], ["COMPLETE", "PRUNED"]), states
    assert budgeted[0].user_attrs["baseline"] and budgeted[1].user_attrs["baseline"]  # the run's settings, again
