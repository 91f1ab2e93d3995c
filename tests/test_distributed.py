"""Data-parallel training: 2 CPU processes under torchrun (gloo) against one process over the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_rows, write_csv
from safetensors.numpy import load_file

from seqtune.cli import main

TESTS = Path(__file__).resolve().parent
# 37 training rows in steps of 8: the last step has 5 examples, split 3/2 between the processes;
# 17 dev rows: no even split, so a padded gather would count one row twice
N_TRAIN, N_DEV, GLOBAL_BATCH = 37, 17, 8


def _common(model: Path, data: Path, out: Path) -> list[str]:
    return [
        "--model", str(model), "--train-file", str(data / "train.csv"), "--validation-file", str(data / "dev.csv"),
        "--epochs", "2", "--max-length", "32", "--seed", "3", "--quiet", "--output", str(out),
    ]  # fmt: skip


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "1000"}  # no wrapped lines
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """The same training as one process with batch 8 and as two processes with batch 4 each."""
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    data.mkdir()
    write_csv(data / "train.csv", make_rows(N_TRAIN, seed=5))
    write_csv(data / "dev.csv", make_rows(N_DEV, seed=6))
    single, double = root / "single", root / "double"
    assert main(["train", *_common(tiny_model_dir, data, single), "--batch-size", str(GLOBAL_BATCH)]) == 0
    done = _torchrun("-m", "seqtune", "train", *_common(tiny_model_dir, data, double), "--batch-size", "4", cwd=root)
    return {"root": root, "data": data, "single": single, "double": double, "stdout": done.stdout}


def _logits(run: Path) -> np.ndarray:
    with np.load(run / "eval_predictions.npz") as f:
        return f["validation/logits"], f["validation/labels"]


def test_two_processes_match_one_over_the_same_global_batch(runs):
    single, double = runs["single"], runs["double"]
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (single, double))
    assert b["distributed"] == {
        "world_size": 2, "per_device_batch_size": 4, "grad_accum": 1, "global_batch_size": 8,
        "backend": "multi_cpu", "lr": a["distributed"]["lr"],
    }  # fmt: skip
    assert a["distributed"]["world_size"] == 1 and a["distributed"]["global_batch_size"] == 8
    assert [h["step"] for h in b["history"]] == [h["step"] for h in a["history"]] == [5, 10]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for name, value in ha["metrics"]["validation"].items():
            assert hb["metrics"]["validation"][name] == pytest.approx(value, abs=1e-4), name
    wa, wb = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], atol=1e-4, err_msg=name)
    la, lb = ([json.loads(line) for line in (r / "train_log.jsonl").read_text().splitlines()] for r in (single, double))
    assert [r["step"] for r in lb] == [r["step"] for r in la]
    np.testing.assert_allclose([r["loss"] for r in lb], [r["loss"] for r in la], rtol=1e-4)


def test_eval_counts_every_dev_example_exactly_once(runs):
    logits_a, labels_a = _logits(runs["single"])
    logits_b, labels_b = _logits(runs["double"])
    assert logits_b.shape == (N_DEV, 2)
    np.testing.assert_array_equal(labels_b, labels_a)  # every row once, in the dev file's order
    np.testing.assert_allclose(logits_b, logits_a, atol=1e-4)


def test_run_folder_is_complete_and_written_once(runs):
    single, double = runs["single"], runs["double"]
    files = sorted(str(p.relative_to(single)) for p in single.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(double)) for p in double.rglob("*") if p.is_file()) == files
    assert runs["stdout"].count(" done in ") == 1  # one summary line, from the main process only
    steps = [json.loads(line)["step"] for line in (double / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no line written twice


def test_distributed_resume_matches_and_needs_the_same_world(runs, tiny_model_dir, capsys):
    root, data = runs["root"], runs["data"]
    out = root / "resumed"
    overrides = [
        f"model.name={tiny_model_dir}", f"data.train_file={data / 'train.csv'}",
        f"data.validation_file={data / 'dev.csv'}", "train.epochs=2", "model.max_length=32", "seed=3",
        "quiet=true", f"output={out}", "train.batch_size=4",
    ]  # fmt: skip
    _torchrun(str(TESTS / "ddp_worker.py"), "3", *overrides, cwd=root)
    state = json.loads((out / "checkpoints" / "step-3" / "state.json").read_text())
    assert state["world_size"] == 2
    assert (out / "checkpoints" / "step-3" / "rng-rank1.pt").is_file()

    code = main(["train", "--resume", "--output", str(out), "--quiet"])  # one process: refused, nothing changed
    err = capsys.readouterr().err
    assert code == 2
    assert "written by a run with 2 process(es), resumed with 1; exact resume needs the same number" in err
    assert (out / "checkpoints" / "step-3").is_dir() and not (out / "task.json").exists()

    _torchrun("-m", "seqtune", "train", "--resume", "--output", str(out), "--quiet", cwd=root)
    wa, wb = load_file(runs["double"] / "model.safetensors"), load_file(out / "model.safetensors")
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], atol=1e-6, err_msg=name)
    resumed, whole = (json.loads((r / "metrics.json").read_text())["history"] for r in (out, runs["double"]))
    assert [(h["step"], h["metrics"]) for h in resumed] == [(h["step"], h["metrics"]) for h in whole]
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_a_failed_write_on_the_main_process_stops_the_others_at_once(runs, tiny_model_dir):
    root, data = runs["root"], runs["data"]
    overrides = [
        f"model.name={tiny_model_dir}", f"data.train_file={data / 'train.csv'}",
        f"data.validation_file={data / 'dev.csv'}", "model.max_length=32", "quiet=true",
        f"output={root / 'full-disk'}", "train.batch_size=4", "train.eval_every=2", "train.max_steps=4",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*cmd, str(TESTS / "ddp_full_disk_worker.py"), *overrides], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "no space left on device" in output  # the main process's own error
    # the other process learnt of it in the same all-reduce and stopped itself, instead of waiting in a collective
    assert "process 1: stopping because the main process failed writing the run folder" in output


def _workers(agent_pid: int) -> dict[int, int]:
    """rank -> pid of the training processes a torchrun agent started."""
    found = {}
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            ppid = int((child / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(x.split("=", 1) for x in (child / "environ").read_bytes().decode().split("\0") if "=" in x)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == agent_pid and "RANK" in env:
            found[int(env["RANK"])] = int(child.name)
    return found


def test_a_killed_process_stops_the_others_and_the_rerun_continues(runs, tiny_model_dir):
    """SIGKILL one of two torchrun processes mid-run: the other stops too (no hang), and the same command with
    --resume continues from the newest checkpoint to the uninterrupted run's weights."""
    import signal
    import time

    root = runs["root"]
    data = root / "kill-data"
    data.mkdir()
    write_csv(data / "train.csv", make_rows(240, seed=7))
    write_csv(data / "dev.csv", make_rows(N_DEV, seed=6))
    args = ["-m", "seqtune", "train", *_common(tiny_model_dir, data, root / "killed"), "--batch-size", "4",
            "--save-every-steps", "3"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    agent = subprocess.Popen([*cmd, *args], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoints = root / "killed" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints / "step-9").is_dir():  # 60 steps in all; a checkpoint every 3
        assert agent.poll() is None and time.monotonic() < deadline, agent.stdout.read().decode()[-3000:]
        time.sleep(0.005)
    workers = _workers(agent.pid)
    assert sorted(workers) == [0, 1], workers
    os.kill(workers[1], signal.SIGKILL)
    output = agent.communicate(timeout=180)[0].decode()
    assert agent.returncode != 0, output[-3000:]
    for pid in workers.values():  # the surviving process was stopped as well
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not (root / "killed" / "task.json").exists()

    newest = max(int(p.name.split("-")[1]) for p in checkpoints.glob("step-*"))
    rerun = _torchrun(*(a for a in args if a != "--quiet"), "--resume", cwd=root)  # not quiet: it says where from
    assert f"resumed from {checkpoints / f'step-{newest}'} at step {newest}" in rerun.stdout + rerun.stderr
    reference = root / "kill-reference"
    _torchrun("-m", "seqtune", "train", *_common(tiny_model_dir, data, reference), "--batch-size", "4", cwd=root)
    wa, wb = load_file(reference / "model.safetensors"), load_file(root / "killed" / "model.safetensors")
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], atol=1e-6, err_msg=name)
    resumed, whole = (json.loads((r / "metrics.json").read_text())["history"] for r in (root / "killed", reference))
    assert [(h["step"], h["metrics"]) for h in resumed] == [(h["step"], h["metrics"]) for h in whole]


def test_freeze_and_cache_under_two_processes_matches_one(runs, tiny_model_dir):
    """--train-layers under torchrun: one process builds the cache, both train the top layer on it, and the result
    matches one process over the same global batch."""
    root, data = runs["root"], runs["data"]
    single, double = root / "frozen-single", root / "frozen-double"
    frozen = ["--train-layers", "1"]
    assert main(["train", *_common(tiny_model_dir, data, single), "--batch-size", str(GLOBAL_BATCH), *frozen]) == 0
    _torchrun("-m", "seqtune", "train", *_common(tiny_model_dir, data, double), "--batch-size", "4", *frozen, cwd=root)
    wa, wb = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], atol=1e-4, err_msg=name)
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert all(np.array_equal(wb[k], initial[k]) for k in initial if ".layer.0." in k or ".embeddings." in k)
    assert not np.array_equal(wb["bert.encoder.layer.1.output.dense.weight"],
                              initial["bert.encoder.layer.1.output.dense.weight"])  # fmt: skip


def test_frozen_word_embeddings_under_two_processes_match_one(runs, tiny_model_dir):
    """--freeze-embeddings under torchrun: the matrix is frozen before the model is wrapped for DDP (which syncs
    only the parameters that train), so both processes train the rest and match one process over the same batch."""
    root, data = runs["root"], runs["data"]
    single, double = root / "frozen-emb-single", root / "frozen-emb-double"
    frozen = ["--freeze-embeddings"]
    assert main(["train", *_common(tiny_model_dir, data, single), "--batch-size", str(GLOBAL_BATCH), *frozen]) == 0
    _torchrun("-m", "seqtune", "train", *_common(tiny_model_dir, data, double), "--batch-size", "4", *frozen, cwd=root)
    wa, wb = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], atol=1e-4, err_msg=name)
    initial, key = load_file(tiny_model_dir / "model.safetensors"), "bert.embeddings.word_embeddings.weight"
    assert np.array_equal(wb[key], initial[key])
