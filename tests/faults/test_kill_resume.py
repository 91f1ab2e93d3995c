"""SIGKILL a training process again and again (at seeded random moments, and while a checkpoint is being
written); each restart resumes from the last complete checkpoint, and the finished run equals an uninterrupted one.

Importing torch + transformers takes most of a fresh process's start-up (over 10 s on the 2-core build machine), so
the training processes are forked from one that has done the imports already: each is still a separate process
running ``seqtune train`` (via ``cli.main``) that gets SIGKILLed, just without paying the imports a dozen times.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import make_rows, write_csv
from safetensors.torch import load_file

from seqtune import load_config
from seqtune.checkpoint import list_checkpoints
from seqtune.training import train

KILLS = 12  # each restart re-loads data and model, so this bounds the test's time
CHECKPOINT_KILLS = (2, 7)  # these kills wait for a .tmp-step-* folder and strike while it is being written
RESUMED = re.compile(r"resumed from (\S+) at step (\d+)")
HEADER = "train examples"  # the line printed once setup is done and training starts

# Imports once, then for every JSON line on stdin forks a child that runs `seqtune train ARGS` with its output in
# LOG; prints the child's pid, then its exit code (negative: killed by that signal).
FORK_SERVER = """
import json, os, sys, traceback
import seqtune.training
from seqtune import cli
print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        if cmd.get("die_in_evaluation"):  # SIGKILL itself inside its N-th evaluation, before it returns
            import signal
            import seqtune.training as training
            real, calls = training.evaluate, []
            def dying(*args, **kwargs):
                out = real(*args, **kwargs)
                calls.append(1)
                if len(calls) == cmd["die_in_evaluation"]:
                    os.kill(os.getpid(), signal.SIGKILL)
                return out
            training.evaluate = dying
        try:
            code = cli.main(["train", *cmd["args"]])
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class Child:
    """A forked training process, with the bits of `subprocess.Popen` the test uses."""

    def __init__(self, pid: int, codes: queue.Queue):
        self.pid, self._codes, self.returncode = pid, codes, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.returncode = int(self._codes.get_nowait())
            except queue.Empty:
                pass
        return self.returncode

    def wait(self, timeout: float) -> int:
        if self.returncode is None:
            self.returncode = int(self._codes.get(timeout=timeout))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


class ForkServer:
    def __init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "1000", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(x.strip()) for x in self.proc.stdout], daemon=True).start()
        assert self.lines.get(timeout=180) == "ready"

    def start(self, args: list[str], log: Path, die_in_evaluation: int | None = None) -> Child:
        command = {"args": args, "log": str(log), "die_in_evaluation": die_in_evaluation}
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return Child(int(self.lines.get(timeout=60)), self.lines)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture
def fork_server():
    server = ForkServer()
    yield server
    server.close()


def _args(data: Path, model: Path, out: Path) -> list[str]:
    return ["--train-file", str(data), "--model", str(model), "--max-length", "32", "--batch-size", "8",
            "--epochs", "3", "--eval-every", "5", "--output", str(out), "train.keep_checkpoints=2"]  # fmt: skip


def _wait_for_header(proc: Child, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not log.is_file() or HEADER not in log.read_text():
        assert proc.poll() is None, log.read_text() if log.is_file() else proc.poll()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.01)


def _kill_while_checkpointing(proc: Child, out: Path) -> bool:
    """SIGKILL as soon as a checkpoint folder is being written. False when the run ended first."""
    root = out / "checkpoints"
    while proc.poll() is None:
        try:
            if any(name.startswith(".tmp-step-") for name in os.listdir(root)):
                proc.send_signal(signal.SIGKILL)
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    return False


def _kill_after_next_checkpoint(proc: Child, out: Path, after: int | None, fraction: float) -> None:
    """Wait for a checkpoint newer than ``after``, then SIGKILL ``fraction`` of one checkpoint interval later:
    kill moments spread over steps, evaluation and saving, whatever the machine's speed."""
    started = time.monotonic()
    while proc.poll() is None:
        complete = list_checkpoints(out)
        if complete and int(complete[-1].name.split("-")[1]) > (after or 0):
            time.sleep(fraction * (time.monotonic() - started))
            proc.send_signal(signal.SIGKILL)
            return
        time.sleep(0.002)


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tiny_dropout_model_dir, tmp_path,
                                                                            fork_server):  # fmt: skip
    data = write_csv(tmp_path / "train.csv", make_rows(320))  # 108 steps, a checkpoint every 5
    out = tmp_path / "killed"
    args = _args(data, tiny_dropout_model_dir, out)
    rng = random.Random(20240613)
    kills, resumes, checkpoint_kills = [], [], 0
    expected: int | None = None  # the step the next start must resume from (None: nothing to resume)
    for attempt in range(KILLS + 1):
        log = tmp_path / f"attempt-{attempt}.log"
        extra = ["--resume"] if expected is not None else ["--overwrite"]
        proc = fork_server.start([*args, *extra], log)
        _wait_for_header(proc, log)
        if attempt == KILLS:  # the last start runs to the end
            proc.wait(timeout=300)
        elif attempt == 0:  # early: most likely before the first checkpoint, so the next start is a fresh one
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
        elif attempt in CHECKPOINT_KILLS or (checkpoint_kills == 0 and attempt > CHECKPOINT_KILLS[0]):
            checkpoint_kills += _kill_while_checkpointing(proc, out)
        else:
            _kill_after_next_checkpoint(proc, out, expected, rng.random())
        code = proc.wait(timeout=300)
        text = log.read_text()
        if expected is not None:
            [(path, step)] = RESUMED.findall(text)
            resumes.append(int(step))
            assert Path(path).name == f"step-{expected}" and int(step) == expected, (path, step, expected)
        else:
            assert "resumed from" not in text
        if (out / "task.json").exists():  # finished (task.json is written last), even if killed while cleaning up
            break
        assert code == -signal.SIGKILL, text
        complete = list_checkpoints(out)
        half_written = sorted(p.name for p in (out / "checkpoints").glob(".tmp-step-*"))
        kills.append((attempt, [p.name for p in complete], half_written))
        expected = int(complete[-1].name.split("-")[1]) if complete else None
    assert len(kills) >= 10, kills
    assert checkpoint_kills >= 1, kills
    # at least one kill left a half-written checkpoint newer than the complete one it resumed from
    assert any(h and (not c or int(h[-1].split("-")[-1]) > int(c[-1].split("-")[1])) for _, c, h in kills), kills
    assert len(set(resumes)) >= 3, resumes  # resumed from several different points
    assert (out / "task.json").exists()

    reference = tmp_path / "reference"
    cfg = load_config(None, [f"model.name={tiny_dropout_model_dir}", f"data.train_file={data}", "model.max_length=32",
                             "train.batch_size=8", "train.epochs=3", "train.eval_every=5", "train.keep_checkpoints=2",
                             f"output={reference}", "quiet=true"])  # fmt: skip
    train(cfg)
    ref_w, got_w = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    assert ref_w.keys() == got_w.keys()
    for key in ref_w:
        torch.testing.assert_close(got_w[key], ref_w[key], atol=1e-6, rtol=0, msg=key)
    ref_m = json.loads((reference / "metrics.json").read_text())
    got_m = json.loads((out / "metrics.json").read_text())
    assert [h["step"] for h in got_m["history"]] == [h["step"] for h in ref_m["history"]]
    for a, b in zip(got_m["history"], ref_m["history"], strict=True):
        assert a["metrics"].keys() == b["metrics"].keys()
        for split in a["metrics"]:
            torch.testing.assert_close(a["metrics"][split], b["metrics"][split], atol=1e-6, rtol=0)
    assert got_m["best"]["step"] == ref_m["best"]["step"]
    logged = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))  # no step logged twice across the kills


def _logged_steps(out: Path) -> list[int]:
    log = out / "train_log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [json.loads(x)["step"] for x in lines if x.endswith("}")]


def _killed_in_evaluation(proc: Child, out: Path, step: int) -> None:
    """The process died by SIGKILL in the evaluation after step ``step``: that step is logged, its checkpoint is
    neither complete nor being written."""
    assert proc.wait(timeout=300) == -signal.SIGKILL
    assert max(_logged_steps(out)) == step
    root = out / "checkpoints"
    names = os.listdir(root) if root.is_dir() else []
    assert f"step-{step}" not in names and f".tmp-step-{step}" not in names, names


def test_sigkill_during_evaluations_of_a_one_epoch_run(tiny_dropout_model_dir, tmp_path, fork_server):
    """A 1-epoch run killed in its first evaluation (no checkpoint yet: the rerun starts over) and in its last (the
    rerun continues from the middle checkpoint) ends with the uninterrupted run's weights and history."""
    data = write_csv(tmp_path / "train.csv", make_rows(64))  # 8 steps of 8; evaluations at steps 4 and 8
    dev = write_csv(tmp_path / "dev.csv", make_rows(200, seed=5))
    common = ["--train-file", str(data), "--validation-file", str(dev), "--model", str(tiny_dropout_model_dir),
              "--max-length", "32", "--batch-size", "8", "--epochs", "1", "--eval-every", "4",
              "train.log_every=1"]  # fmt: skip
    out = tmp_path / "killed"
    # each start SIGKILLs itself inside an evaluation (a kill at a moment chosen by the test, not by a timer: an
    # evaluation of a tiny model can be over before a poller notices it began)
    first = fork_server.start([*common, "--output", str(out), "--resume"], tmp_path / "a0.log", die_in_evaluation=1)
    _killed_in_evaluation(first, out, 4)
    second = fork_server.start([*common, "--output", str(out), "--resume"], tmp_path / "a1.log", die_in_evaluation=2)
    _killed_in_evaluation(second, out, 8)
    assert "resumed from" not in (tmp_path / "a1.log").read_text()  # nothing to resume: it started over
    assert [p.name for p in list_checkpoints(out)] == ["step-4"]
    last = fork_server.start([*common, "--output", str(out), "--resume"], tmp_path / "a2.log")
    assert last.wait(timeout=300) == 0, (tmp_path / "a2.log").read_text()
    assert RESUMED.findall((tmp_path / "a2.log").read_text())[0][1] == "4"

    reference = tmp_path / "reference"
    done = fork_server.start([*common, "--output", str(reference)], tmp_path / "ref.log")
    assert done.wait(timeout=300) == 0
    ref_w, got_w = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    for key in ref_w:
        torch.testing.assert_close(got_w[key], ref_w[key], atol=1e-6, rtol=0, msg=key)
    ref_m, got_m = (json.loads((d / "metrics.json").read_text()) for d in (reference, out))
    assert [h["step"] for h in got_m["history"]] == [h["step"] for h in ref_m["history"]] == [4, 8]
    for a, b in zip(got_m["history"], ref_m["history"], strict=True):
        torch.testing.assert_close(a["metrics"], b["metrics"], atol=1e-6, rtol=0)
    assert _logged_steps(out) == list(range(1, 9))  # the killed start's lines were cleared, none twice
