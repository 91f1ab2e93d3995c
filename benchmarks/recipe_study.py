"""Choose training recipes across tasks, honestly: every score here is on a validation split carved from the
training data (GLUE: ``data.validation_from_train``; NLU++ and ``stsb100``, STS-B's training file as own data with
scores x20: 10% of train held out; CLINC150: its own validation file), never on GLUE dev or any test split.

    python benchmarks/recipe_study.py --glue-dir ../shared/glue --data-dir ../shared/data \\
        --tasks rte,cola,nlupp --recipes defaults,long --seeds 42

Each (task, recipe, seed) is one `seqtune.train` run; results are appended to
``benchmarks/results/recipe_study.json`` as they finish (a rerun skips what is there), and
``recipe_study.md`` is rendered from all of them: per task and recipe the mean +- std over seeds of the selection
metric, the epoch of the best evaluation, training seconds and tokens/s, with the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from records import append, mean_std

RESULTS = Path(__file__).resolve().parent / "results"

# Recipes are config overrides on top of seqtune's defaults at the time of the run.
RECIPES: dict[str, list[str]] = {
    "defaults": [],
    "cls": ["model.pooling=cls"],
    "epochs3": ["train.epochs=3"],
    "epochs10": ["train.epochs=10"],
    "epochs20": ["train.epochs=20"],
    "lr3e-5": ["train.lr=3e-5"],
    "lr1.5e-4": ["train.lr=1.5e-4"],
    "lr5e-5": ["train.lr=5e-5"],
    "mean": ["model.pooling=mean"],
    "mean-epochs10": ["model.pooling=mean", "train.epochs=10"],
    "tuned": ["train.tune_threshold=true"],
    "tuned-epochs10": ["train.tune_threshold=true", "train.epochs=10"],
    "tuned-epochs20": ["train.tune_threshold=true", "train.epochs=20"],
    "tuned-epochs20-lr2e-4": ["train.tune_threshold=true", "train.epochs=20", "train.lr=2e-4"],
    "tuned-mean-epochs20": ["model.pooling=mean", "train.tune_threshold=true", "train.epochs=20"],
    "epochs20-lr2e-4": ["train.epochs=20", "train.lr=2e-4"],
    "mean-epochs20-lr2e-4": ["model.pooling=mean", "train.epochs=20", "train.lr=2e-4"],
    "no-prior": ["model.prior_init=false"],
    "prior": ["model.prior_init=true"],  # regression: the head in the targets' units (auto for regression since)
    "epochs8": ["train.epochs=8"],
    "llrd0.8": ["train.layer_decay=0.8"],
    "reinit0": ["model.reinit_layers=0"],  # the default before model.reinit_layers became auto (1)
    "reinit1": ["model.reinit_layers=1"],
    "reinit0-epochs1": ["model.reinit_layers=0", "train.epochs=1"],  # SST-2 (67k rows): one pass each
    "reinit1-epochs1": ["model.reinit_layers=1", "train.epochs=1"],
    "reinit1-epochs8": ["model.reinit_layers=1", "train.epochs=8"],
    "reinit2": ["model.reinit_layers=2"],
    "reinit1-llrd0.8": ["model.reinit_layers=1", "train.layer_decay=0.8"],
    "llrd0.8-epochs8": ["train.layer_decay=0.8", "train.epochs=8"],
    "minsteps1500": ["train.min_steps=1500"],
    "ema0.99": ["train.ema=0.99"],
    # freeze-and-cache (--train-layers 3): its learning rate and length (epochs cost 3/6 of a full one there);
    # 8e-5 was its automatic rate before recipe.TRAIN_LAYERS_LR (2e-4, chosen here)
    "top3-lr8e-5": ["train.train_layers=3", "train.lr=8e-5"],
    "top3-lr2e-4": ["train.train_layers=3", "train.lr=2e-4"],
    "top3-lr8e-5-epochs6": ["train.train_layers=3", "train.lr=8e-5", "train.epochs=6"],
    "top3-lr2e-4-epochs6": ["train.train_layers=3", "train.lr=2e-4", "train.epochs=6"],
    "top3-lr4e-4": ["train.train_layers=3", "train.lr=4e-4"],
    "top3-reinit1": ["train.train_layers=3", "model.reinit_layers=1"],  # the re-initialised top layer trains in full
    # the word-embedding matrix kept as pretrained (a speed lever: no embedding gradient, AdamW state or update)
    "frozen-emb": ["train.freeze_embeddings=true"],
    "frozen-emb-epochs1": ["train.freeze_embeddings=true", "train.epochs=1"],  # SST-2, beside reinit1-epochs1
    # the defaults as of 2026-12-07 (mean pooling, top layer re-initialised, prior bias for regression, 16-bit
    # dropout masks, clipping in the step): frozen-emb's control on the same machine and day
    "defaults-1207": [],
    "reinit1-epochs1-1207": ["model.reinit_layers=1", "train.epochs=1"],  # SST-2: frozen-emb-epochs1's control
    # SST-2 cut to the first N of its carved training rows (shuffled; the 6,735 validation rows stay): is the
    # frozen matrix's loss on SST-2 (60.6k rows) a matter of size or of the task?
    "train20k": ["data.max_train_samples=20000"],
    "frozen-emb-train20k": ["train.freeze_embeddings=true", "data.max_train_samples=20000"],
    "train5k": ["data.max_train_samples=5000"],
    "frozen-emb-train5k": ["train.freeze_embeddings=true", "data.max_train_samples=5000"],
    # intermediate-task transfer (`seqtune glue --transfer`): start from the kept model of a `seqtune glue` STS-B run,
    # seed 42 (`glue_run.py --tasks stsb --seeds 3 --output runs/glue-stsb`, trained on STS-B's train, chosen on its
    # dev); the regression head is replaced by the task's, and no layer is re-initialised (a fine-tuned checkpoint)
    "from-stsb": ["model.name=runs/glue-stsb/stsb/seed-42"],
    # the same from MRPC's seed-42 run (`glue_run.py --tasks mrpc --seeds 3 --output runs/glue-mrpc`): RTE's other
    # candidate source among the tasks this copy holds
    "from-mrpc": ["model.name=runs/glue-mrpc/mrpc/seed-42"],
    # CoLA from a single-sentence source: SST-2's seed-42 run (`glue_run.py --tasks sst2 --seeds 3 --output
    # runs/glue-sst2`)
    "from-sst2": ["model.name=runs/glue-sst2/sst2/seed-42"],
    # each pair read in one of its two orders per epoch (`data.swap_pairs`; MRPC and STS-B are symmetric): on and off
    "swap": ["data.swap_pairs=true"],
    "no-swap": ["data.swap_pairs=false"],
    # label smoothing (`train.label_smoothing`), and its control run beside it (the defaults, smoothing off)
    "ls0.1": ["train.label_smoothing=0.1"],
    "no-ls": ["train.label_smoothing=0.0"],
    # longer training where every seed's best evaluation was the last of 3 (STS-B, MRPC with both orders)
    "epochs5": ["train.epochs=5"],
    # freeze-and-cache (top 3 layers, their automatic rate) with and without both orders of each pair in the cache
    "top3": ["train.train_layers=3"],
    "top3-swap": ["train.train_layers=3", "data.swap_pairs=true"],
    # every dropout off (a step without dropout's masks is faster): does accuracy hold?
    "dropout0": ["model.dropout=0"],
    # the same pair on an AVX2-only AMD EPYC (fp32), 2026-12-07: the defaults then kept the checkpoint's dropout (0.1)
    "defaults-avx2": ["model.dropout=0.1"],
    "dropout0-avx2": ["model.dropout=0"],
}


def task_overrides(task: str, glue_dir: Path, data_dir: Path) -> list[str]:
    """How each task is loaded so that selection never sees dev or test."""
    if task == "nlupp":
        return [f"data.train_file={data_dir / 'nlupp_hotels' / 'train.jsonl'}", "data.label_column=intents",
                "data.problem_type=multi_label"]  # fmt: skip
    if task == "clinc":
        folder = data_dir / "clinc150"
        return [f"data.train_file={folder / 'train.csv'}", f"data.validation_file={folder / 'validation.csv'}",
                "data.label_column=intent"]  # fmt: skip
    if task == "stsb100":  # STS-B's training file as own data, scores on a 0-100 scale (x20): targets far from 0
        columns = ["data.text_column=sentence1", "data.text_pair_column=sentence2", "data.label_column=score"]
        return [f"data.train_file={scaled_stsb(glue_dir)}", *columns, "data.problem_type=regression"]
    return [f"task={task}", f"data.data_dir={glue_dir}", "data.validation_from_train=true"]


def scaled_stsb(glue_dir: Path) -> Path:
    """STS-B train with its 0-5 scores times 20, written once to a temporary CSV (the data stays outside the repo)."""
    from seqtune.data import load_glue
    from seqtune.tasks import get_task

    path = Path(tempfile.gettempdir()) / "seqtune-stsb100-train.csv"
    if not path.is_file():
        train = load_glue(get_task("stsb"), glue_dir)["train"].to_pandas()
        train.assign(score=train["label"] * 20)[["sentence1", "sentence2", "score"]].to_csv(path, index=False)
    return path


def run_one(task: str, recipe: str, seed: int, args: argparse.Namespace) -> dict:
    from seqtune import load_config, train
    from seqtune.precision import cpu_flags

    overrides = [*task_overrides(task, args.glue_dir, args.data_dir), *RECIPES[recipe], *args.set]
    with tempfile.TemporaryDirectory() as tmp:
        overrides += [f"output={tmp}/run", "overwrite=true", f"seed={seed}", "quiet=true"]
        if args.threads:
            overrides.append(f"train.num_threads={args.threads}")
        cfg = load_config(None, overrides)
        started = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - started
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    best = result.best or {}
    metric, split = result.task.selection_metric, result.task.eval_splits[0]
    live = [h["live"]["metrics"][split][metric] for h in result.history if "live" in h]
    return {
        "task": task,
        "recipe": recipe,
        "seed": seed,
        "overrides": [*RECIPES[recipe], *args.set],
        "selection_metric": result.task.selection_metric,
        "score": best.get("score"),
        "best_epoch": best.get("epoch"),
        "curve": [round(h["metrics"]["validation"][result.task.selection_metric], 4) for h in result.history],
        # --ema: the live weights' scores at the same evaluations, and the best of them (what the run without the
        # average would have kept: the average does not change the training trajectory)
        **({"live_curve": [round(x, 4) for x in live], "live_score": best_of(result.task, live)} if live else {}),
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "tokens_per_second": round(result.tokens_per_second),
        "precision": metrics.get("precision"),
        "threshold": (metrics.get("threshold") or {}).get("value"),
        "warnings": result.warnings,
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "date": time.strftime("%Y-%m-%d"),
    }


def best_of(task, scores: list[float]) -> float:
    from seqtune.metrics import is_better

    best = None
    for score in scores:
        best = score if is_better(task, score, best) else best
    return best


def with_live_rows(records: list[dict]) -> list[dict]:
    """Each --ema run twice: as run (the average kept) and as its live weights alone would have been kept."""
    live = [{**r, "recipe": f"{r['recipe']}: its live weights", "score": r["live_score"], "best_epoch": None}
            for r in records if "live_score" in r]  # fmt: skip
    return records + live


def render(records: list[dict]) -> str:
    lines = [
        "# Recipe study (validation carved from training data; never GLUE dev or test)",
        "",
        "| task | recipe | metric | mean | std | seeds | best epoch | train s | tok/s | precision | cpu |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in with_live_rows(records):
        groups.setdefault((r["task"], r["recipe"]), []).append(r)
    for (task, recipe), rs in sorted(groups.items()):
        scores = [r["score"] if r["score"] is not None else float("nan") for r in rs]
        mean, std = mean_std(scores)
        epochs = "/".join(f"{r['best_epoch']:.1f}" if r["best_epoch"] is not None else "-" for r in rs)
        lines.append(
            f"| {task} | {recipe} | {rs[0]['selection_metric']} | {mean:.4f} | {std:.4f} | "
            f"{len(rs)} | {epochs} | {statistics.fmean(r['train_seconds'] for r in rs):.0f} | "
            f"{statistics.fmean(r['tokens_per_second'] for r in rs):,.0f} | {rs[0]['precision']} | {rs[0]['cpu']} |"
        )
    lines += [
        "",
        "Scores: each run's kept (best) checkpoint on validation rows never used for training: 10% of the training "
        "file carved out (GLUE tasks with `data.validation_from_train`, NLU++ hotels: 51 rows), or CLINC150's own "
        'validation file (3,100 rows); never GLUE dev or any test split. Recipe names with "(zero head bias)" / '
        '"(prior bias)" predate `model.prior_init`, the [CLS]-pooler rows predate `model.pooling` (then the only '
        'head), and "mean" rows before it used a patched BERT pooler with the same arithmetic. Several jobs '
        "shared the 2 cores, so train seconds and tokens/s are not speeds. An `ema` recipe's runs (`--ema`: the "
        'weight average is scored and kept) appear twice: as run, and as "its live weights", the best evaluation of '
        "the live weights in the same runs, which is what those runs would have kept without the average (it does "
        "not change the training).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--glue-dir", type=Path, default=Path("../shared/glue"))
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--tasks", default="rte,cola,nlupp")
    p.add_argument("--recipes", default="defaults")
    p.add_argument("--seeds", default="42", help="comma-separated seeds")
    p.add_argument("--threads", type=int, help="torch threads per run (1 when another job shares the machine)")
    p.add_argument("--set", action="append", default=[], help="extra override for every run (key=value)")
    p.add_argument("--out", type=Path, default=RESULTS / "recipe_study.json")
    args = p.parse_args(argv)
    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    done = {(r["task"], r["recipe"], r["seed"]) for r in records}
    for task in args.tasks.split(","):
        for recipe in args.recipes.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                if (task, recipe, seed) in done:
                    continue
                append(args.out, records, run_one(task, recipe, seed, args), render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
