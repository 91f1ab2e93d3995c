"""SIGKILL a real training run at random moments, re-running the same command after each kill, and compare the
finished run with an uninterrupted one (the preemption-safety target: a 1-epoch RTE run, 10 kills).

    python benchmarks/kill_resume.py --kills 10 -- rte --data-dir ../shared/glue --epochs 1

Everything after ``--`` goes to ``seqtune train`` as given, plus ``--output DIR --resume`` (the command a scheduler
re-runs) and a short checkpoint clock (``--save-every-minutes``, default 0.5) so that kills land between
checkpoints, during evaluation and during saves alike. Kill moments are drawn (seeded) between 10 s and a third of the
uninterrupted run's time, so that ten kills come before the run is done.
Results: ``benchmarks/results/kill_resume.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
RESUMED = re.compile(r"resumed from \S+ at step (\d+)")


def run(cmd: list[str], kill_after: float | None) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0]
    return proc.returncode, out, time.monotonic() - started


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "COLUMNS": "1000", "HF_HUB_OFFLINE": "1"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every-minutes", type=float, default=0.5)
    p.add_argument("--work", type=Path, default=Path("runs/kill-resume"))
    p.add_argument("--name", default=None, help="the row's name (default: the train arguments)")
    args = p.parse_args(argv[:split])
    train_args = argv[split + 1 :]
    from seqtune.precision import cpu_flags

    seqtune = [sys.executable, "-m", "seqtune", "train", *train_args]
    reference, killed = args.work / "reference", args.work / "killed"
    shutil.rmtree(args.work, ignore_errors=True)
    code, out, ref_seconds = run([*seqtune, "--output", str(reference)], None)
    assert code == 0, out[-3000:]

    rng = random.Random(args.seed)
    command = [*seqtune, "--output", str(killed), "--resume", "--save-every-minutes", str(args.save_every_minutes)]
    attempts, total = [], 0.0
    for _ in range(args.kills):
        moment = rng.uniform(10.0, max(20.0, ref_seconds / 3))  # short lives: ten kills before the run is done
        code, out, seconds = run(command, moment)
        total += seconds
        resumed = RESUMED.findall(out)
        attempts.append({"kill_after_s": round(moment, 1), "exit": code, "resumed_from_step": int(resumed[0])
                         if resumed else None, "finished": (killed / "task.json").exists()})  # fmt: skip
        print(json.dumps(attempts[-1]), flush=True)
        if (killed / "task.json").exists():
            break
    code, out, seconds = run(command, None)  # the last run is left to finish (or says "already finished")
    total += seconds
    assert code == 0, out[-3000:]

    from safetensors.numpy import load_file

    ref_w, got_w = load_file(reference / "model.safetensors"), load_file(killed / "model.safetensors")
    diff = max(float(np.abs(ref_w[k].astype(np.float64) - got_w[k]).max()) for k in ref_w)
    ref_m, got_m = (json.loads((d / "metrics.json").read_text()) for d in (reference, killed))
    same_history = [h["metrics"] for h in ref_m["history"]] == [h["metrics"] for h in got_m["history"]]
    result = {
        "name": args.name or " ".join(train_args),
        "kills": sum(a["exit"] == -signal.SIGKILL for a in attempts),
        "attempts": attempts,
        "max_abs_weight_diff": diff,
        "same_history": same_history,
        "reference_seconds": round(ref_seconds, 1),
        "killed_total_seconds": round(total, 1),
        "precision": got_m.get("precision"),
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "date": time.strftime("%Y-%m-%d"),
    }
    (RESULTS / "kill_resume.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "kill_resume.md").write_text(render(result))
    print(json.dumps(result, indent=1))
    return 0 if diff == 0.0 and same_history else 1


def render(r: dict) -> str:
    resumed = ", ".join(str(a["resumed_from_step"]) if a["resumed_from_step"] is not None else "start"
                        for a in r["attempts"])  # fmt: skip
    kills = ", ".join(f"{a['kill_after_s']}" for a in r["attempts"] if a["exit"] == -9)
    header = ("| kills | max abs weight difference to the uninterrupted run | same evaluation history | "
              "uninterrupted s | all attempts s | precision | cpu |")  # fmt: skip
    row = (f"| {r['kills']} | {r['max_abs_weight_diff']:.3g} | {r['same_history']} | {r['reference_seconds']} | "
           f"{r['killed_total_seconds']} | {r['precision']} | {r['cpu']} |")  # fmt: skip
    return f"""# Killed and resumed: `seqtune train {r["name"]}`

{header}
|---|---|---|---|---|---|---|
{row}

Each attempt ran the same command (`--output DIR --resume`) and was SIGKILLed after a seeded random number of
seconds ({kills}); each started from (optimizer step, or a fresh start): {resumed}; a last attempt ran to the end.
"""


if __name__ == "__main__":
    sys.exit(main())
