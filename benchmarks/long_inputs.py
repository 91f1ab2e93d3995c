"""Long texts: truncate vs head_tail vs windows on BBC news (5 topics, ~500 tokens per article).

    python benchmarks/long_inputs.py --data-dir ../shared/data --max-lengths 64 --seeds 42,43,44

Each (max_length, mode, seed) is one `seqtune.train` run on ``bbc/train.csv`` with the packaged MiniLM and the
defaults; the kept checkpoint is chosen on 10% of the training rows held out (validation), then scored once on
``bbc/test.csv``. Results are appended to ``benchmarks/results/long_inputs.json`` as they finish (a rerun skips what
is there) and ``long_inputs.md`` is rendered from all of them, with the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from records import append, mean_pm

RESULTS = Path(__file__).resolve().parent / "results"


def run_one(data_dir: Path, max_length: int, mode: str, seed: int, args: argparse.Namespace) -> dict:
    from seqtune import load_config, train
    from seqtune.precision import cpu_flags
    from seqtune.predict import evaluate_file, load_run

    bbc = data_dir / "bbc"
    overrides = [f"data.train_file={bbc / 'train.csv'}", "data.label_column=category", f"model.max_length={max_length}",
                 f"data.long_inputs={mode}", f"seed={seed}", "quiet=true", *args.set]  # fmt: skip
    if args.threads:
        overrides.append(f"train.num_threads={args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [*overrides, f"output={tmp}/run"])
        started = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - started
        scored = time.perf_counter()
        test = evaluate_file(load_run(Path(tmp) / "run"), bbc / "test.csv")
        test_seconds = time.perf_counter() - scored
        summary = json.loads((Path(tmp) / "run" / "metrics.json").read_text()).get("long_inputs")
        precision = json.loads((Path(tmp) / "run" / "metrics.json").read_text()).get("precision")
    best = result.best or {}
    return {
        "max_length": max_length,
        "mode": mode,
        "seed": seed,
        "overrides": args.set,
        "validation_accuracy": best.get("score"),
        "test_accuracy": test["accuracy"],
        "test_f1_macro": test.get("f1_macro"),
        "best_epoch": best.get("epoch"),
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "test_seconds": round(test_seconds, 1),
        "tokens_per_second": round(result.tokens_per_second),
        "long_inputs": summary,
        "precision": precision,
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d"),
    }


def render(records: list[dict]) -> str:
    lines = [
        "# Long texts: BBC news (5 topics, ~500 tokens per article), MiniLM, seqtune defaults",
        "",
        "| max_length | mode | overrides | validation acc | test acc | test macro-F1 | seeds | train s | "
        "test predict s | training texts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[int, str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["max_length"], r["mode"], " ".join(r["overrides"]) or "defaults"), []).append(r)

    for (max_length, mode, overrides), rs in sorted(groups.items()):
        lines.append(
            f"| {max_length} | {mode} | {overrides} | {mean_pm([r['validation_accuracy'] for r in rs])} | "
            f"{mean_pm([r['test_accuracy'] for r in rs])} | {mean_pm([r['test_f1_macro'] for r in rs])} | {len(rs)} | "
            f"{statistics.fmean(r['train_seconds'] for r in rs):.0f} | "
            f"{statistics.fmean(r['test_seconds'] for r in rs):.1f} | {rs[0]['long_inputs']} |"
        )
    runs = sorted({(r["date"], r["cpu"], r["precision"], r["threads"] or "all") for r in records})
    machines = "; ".join(f"{d}: CPU flags {c}, {p}, {t} torch thread(s) per run" for d, c, p, t in runs)
    lines += [
        "",
        f"Machines (2-core VMs): {machines}. Mean ± std over seeds. Validation: "
        "10% of train.csv held out (it chose the kept checkpoint); test: bbc/test.csv (445 articles), scored once. "
        "Windows train on up to 8 windows per article, so one epoch of windows (11,735 examples at 64 tokens) is about "
        "as many examples as truncate's automatic 6 epochs (9,612). Every run shared the 2 cores with other jobs "
        "(CI and tests on 2026-12-03; two other 1-thread trainings on 2026-12-06): the seconds are not speeds.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--max-lengths", default="64")
    p.add_argument("--modes", default="truncate,head_tail,windows")
    p.add_argument("--seeds", default="42")
    p.add_argument("--threads", type=int, help="torch threads per run (1 when another job shares the machine)")
    p.add_argument("--set", action="append", default=[], help="extra override for every run (key=value)")
    p.add_argument("--out", type=Path, default=RESULTS / "long_inputs.json")
    args = p.parse_args(argv)
    if not (args.data_dir / "bbc" / "train.csv").is_file():
        print(f"no {args.data_dir / 'bbc' / 'train.csv'}: pass --data-dir", file=sys.stderr)
        return 2
    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    done = {(r["max_length"], r["mode"], r["seed"], tuple(r["overrides"])) for r in records}
    for seed in (int(s) for s in args.seeds.split(",")):
        for max_length in (int(m) for m in args.max_lengths.split(",")):
            for mode in args.modes.split(","):
                if (max_length, mode, seed, tuple(args.set)) in done:
                    continue
                append(args.out, records, run_one(args.data_dir, max_length, mode, seed, args), render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
