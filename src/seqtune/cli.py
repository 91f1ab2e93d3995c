"""The `seqtune` command: parses arguments and calls the library. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from seqtune.config_flags import cli_flags
from seqtune.errors import SeqtuneError

# Flags of train and search, generated from the config fields (seqtune.config_flags.cli_flags): each sets its
# dotted key, as a ``key=value`` override applied after --config.
FLAGS = cli_flags()


def _run_args(p: argparse.ArgumentParser) -> None:
    """The arguments that describe a run (shared by train and search)."""
    p.add_argument(
        "args",
        nargs="*",
        metavar="TASK | key=value",
        help="a GLUE task name (mrpc, sst2, ...) and/or config overrides like train.batch_size=32",
    )
    p.add_argument("--config", help="YAML config file")
    for f in FLAGS:
        text = f.help.replace("%", "%%")
        if f.type is None:
            p.add_argument(f.flag, action="store_true", help=text if f.value is not False else f"do not: {text}")
        else:
            p.add_argument(f.flag, type=f.type, help=text)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a model", description="Fine-tune on a GLUE task or your own data.")
    _run_args(p)
    p.add_argument("--seeds", type=int, help="train with N seeds (seed, seed+1, ...): mean, std and 95%% CI")
    p.add_argument(
        "--ensemble", action="store_true", help="with --seeds N: the output folder predicts with all N models' mean"
    )
    p.add_argument("--push-to-hub", metavar="OWNER/NAME", help="when training finishes, push the run to this Hub repo")
    p = sub.add_parser(
        "glue",
        help="train every GLUE task with data, over seeds: results table + leaderboard submission",
        description="Train every GLUE task that has data in --data-dir (each over --seeds seeds), then write "
        "results.md / results.json and the leaderboard submission (submission/ and submission.zip). A rerun "
        "skips finished runs and resumes interrupted ones.",
    )
    _run_args(p)
    p.add_argument("--tasks", help="comma-separated GLUE tasks (default: all nine; those without data are skipped)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per task (seed, seed+1, ...)")
    p.add_argument("--ensemble", action="store_true", help="with --seeds N: each task predicts with all N models' mean")
    p.add_argument(
        "--transfer",
        metavar="TARGET=SOURCE,...",
        help="start each seed of TARGET from the same seed's SOURCE model, trained first (default: rte=stsb; "
        "none: every task from --model)",
    )
    p = sub.add_parser("search", help="hyperparameter search, then retrain the best configuration")
    _run_args(p)
    p.add_argument("--trials", type=int, default=20, help="number of trials in the study")
    p.add_argument("--train-shard", type=float, help="share of the training data each trial uses (e.g. 0.1)")
    p.add_argument("--space", help="YAML search space (default: lr, batch size, epochs, warmup, decay, seed)")
    p.add_argument("--storage", help="Optuna RDB URL shared by workers (default: sqlite in the output folder)")
    p.add_argument("--study-name", default="seqtune", help="study name inside the storage")
    p.add_argument("--no-retrain", action="store_true", help="only search; do not retrain the best configuration")


def _add_use(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="re-evaluate a saved run on its task's dev data, or on a labeled file")
    p.add_argument("run_dir")
    p.add_argument("--input", help="labeled file to evaluate on (csv, tsv, jsonl, parquet) with the run's columns")
    p.add_argument("--data-dir", help="local GLUE folder (default: the one the run used)")
    p.add_argument("--max-eval-samples", type=int)
    p.add_argument("--allow-pickle", action="store_true", help="also load pytorch_model.bin weights (weights_only)")
    p = sub.add_parser("predict", help="predict with a saved run")
    p.add_argument("--allow-pickle", action="store_true", help="also load pytorch_model.bin weights (weights_only)")
    p.add_argument("run_dir")
    p.add_argument("--text", action="append", help="text to classify (repeatable)")
    p.add_argument("--text-pair", action="append", help="second text of a pair (repeatable)")
    p.add_argument("--input", help="file to predict (csv, tsv, jsonl, parquet)")
    p.add_argument("--output", help="where --input predictions go: .jsonl, .csv or .parquet")
    p.add_argument("--resume", action="store_true", help="--input: continue an interrupted prediction into --output")
    p.add_argument("--split", help="a GLUE split to predict, e.g. test")
    p.add_argument("--glue-submission", metavar="DIR", help="write GLUE leaderboard TSVs for --split test here")
    p.add_argument("--data-dir", help="local GLUE folder (default: the one the run used)")


def _add_deploy(sub: argparse._SubParsersAction) -> None:
    from seqtune.serve import ServeSettings

    d = ServeSettings()
    p = sub.add_parser("serve", help="serve a run (or an ONNX export) over HTTP: POST /predict, GET /health, /info")
    p.add_argument("run_dir", help="run folder, or a folder written by seqtune export")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-batching", action="store_true", help="run each request alone (no micro-batching)")
    p.add_argument("--micro-batch", type=int, default=d.micro_batch, help="most texts per collected forward pass")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="how long a request waits for company")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="most texts in one request")
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars, help="longest text in characters")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="largest request body")
    p = sub.add_parser("export", help="export a run to ONNX (optionally int8) and validate it against PyTorch")
    p.add_argument("run_dir", help="run folder (or an fp32 export, to quantize it)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization (onnxruntime)")
    p.add_argument("--output", help="export folder (default <run>/onnx or <run>/onnx-int8)")
    p.add_argument("--data-dir", help="local GLUE folder for validation (default: the one the run used)")
    p.add_argument("--max-samples", type=int, help="validate on at most N dev rows")
    p.add_argument("--min-agreement", type=float, help="fail below this label agreement (default 0.99 for int8)")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.html + figures for a run folder")
    p.add_argument("run_dir")
    p = sub.add_parser("push", help="share a run (or an export) on the Hugging Face Hub, with its model card")
    p.add_argument("run_dir", help="a finished run folder, or a folder written by seqtune export")
    p.add_argument("--repo-id", required=True, metavar="OWNER/NAME", help="the Hub repo (created when missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to commit to (created when missing; default main)")
    p.add_argument("--commit-message", help="the commit's message")
    p = sub.add_parser("compare", help="compare runs: differing config keys and best metrics")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--output", help="also write the table as a self-contained HTML page")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2 like every other bad input."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split()[-1]
        self.exit(
            2, f"seqtune: error: {message} (see {'seqtune' if command == 'seqtune' else 'seqtune ' + command} --help)\n"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="seqtune",
        description="Fine-tune transformer encoders on text "
        "classification: GLUE tasks by name or your own data. Offline-first.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_use(sub)
    _add_report(sub)
    _add_deploy(sub)
    return parser


def train_overrides(ns: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The CLI's train arguments as (task, overrides) in the order they apply."""
    task, overrides = None, []
    for item in ns.args:
        if "=" in item:
            overrides.append(item)
        elif task is None:
            task = item
        else:
            raise SeqtuneError(f"unexpected argument '{item}': give one task name, then key=value overrides")
    if task is not None:
        overrides.insert(0, f"task={task}")
    for f in FLAGS:
        value = getattr(ns, f.flag.lstrip("-").replace("-", "_"))
        if f.type is None and value:
            overrides.append(f"{f.key}={json.dumps(f.value)}")
        elif f.type is not None and value is not None:
            # ensure_ascii=False: YAML reads JSON's \ud83d\ude00 escapes as two lone surrogates, not one emoji.
            overrides.append(f"{f.key}={json.dumps(value, ensure_ascii=False) if isinstance(value, str) else value}")
    return task, overrides


def _run(ns: argparse.Namespace) -> int:
    if ns.command == "train":
        from seqtune.config import load_config
        from seqtune.training import train

        _, overrides = train_overrides(ns)
        cfg = load_config(ns.config, overrides)
        if ns.push_to_hub:  # before hours of training: can this machine push there at all?
            from seqtune.push import check_can_push

            if (ns.seeds or 1) > 1 and not ns.ensemble:
                raise SeqtuneError("--push-to-hub with --seeds N pushes one model: add --ensemble, or push a seed run")
            check_can_push(ns.push_to_hub)
        if ns.seeds is not None and ns.seeds > 1:
            from seqtune.seeds import train_seeds

            out, summary = train_seeds(cfg, ns.seeds, ensemble=ns.ensemble)
            for name, s in summary.items():
                print(f"{name}: {s['mean']:.4f} +- {s['std']:.4f} (95% CI {s['ci95'][0]:.4f}-{s['ci95'][1]:.4f})")
            print(f"{ns.seeds} seeds -> {out}")
            return _push(out, ns.push_to_hub) if ns.push_to_hub else 0
        if ns.ensemble:
            raise SeqtuneError("--ensemble combines the runs of --seeds N (N >= 2); add e.g. --seeds 3")
        result = train(cfg)
        if ns.push_to_hub and not result.completed:
            print(f"seqtune: training was stopped, so nothing was pushed to {ns.push_to_hub}", file=sys.stderr)
            return 0
        return _push(result.run_dir, ns.push_to_hub) if ns.push_to_hub else 0
    if ns.command == "push":
        return _push(ns.run_dir, ns.repo_id, ns.private, ns.revision, ns.commit_message)
    if ns.command == "search":
        return _run_search(ns)
    if ns.command == "glue":
        return _run_glue(ns)
    if ns.command in ("report", "compare"):
        return _run_report(ns)
    if ns.command in ("serve", "export"):
        return _run_deploy(ns)
    from seqtune import predict as P

    if ns.command == "eval":
        if ns.input and ns.data_dir:
            raise SeqtuneError("eval takes either --input FILE or --data-dir DIR, not both")
        if ns.max_eval_samples is not None and ns.max_eval_samples < 1:
            raise SeqtuneError(f"--max-eval-samples {ns.max_eval_samples}: expected at least 1 row")
        run = P.load_run(ns.run_dir, allow_pickle=ns.allow_pickle)
        if ns.input:
            results = {ns.input: P.evaluate_file(run, ns.input, ns.max_eval_samples)}
        else:
            results = P.evaluate_run(run, ns.data_dir, ns.max_eval_samples)
        print(json.dumps(results, indent=1))
        return 0
    modes = [m for m in ("text", "input", "split") if getattr(ns, m)]
    if len(modes) != 1:
        raise SeqtuneError("predict needs exactly one of --text, --input FILE or --split test")
    if ns.input and not ns.output:
        raise SeqtuneError("--input needs --output FILE (JSON lines are written there)")
    if ns.split and not ns.glue_submission:
        raise SeqtuneError("--split needs --glue-submission DIR (where MRPC.tsv etc. are written)")
    if ns.split and ns.split != "test":
        raise SeqtuneError(f"--split {ns.split}: GLUE submissions are made on the test split; pass --split test")
    run = P.load_run(ns.run_dir, allow_pickle=ns.allow_pickle)
    if ns.text:
        print(json.dumps(P.predict(run, ns.text, ns.text_pair), indent=1))
    elif ns.input:
        from seqtune.predict_stream import predict_file

        n = predict_file(run, ns.input, ns.output, resume=ns.resume)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, the first process wrote the output
            print(f"wrote {n} predictions to {ns.output}")
    else:
        for path in P.glue_submission(run, ns.glue_submission, ns.data_dir):
            print(f"wrote {path}")
    return 0


def _push(run_dir: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
          message: str | None = None) -> int:  # fmt: skip
    from seqtune.push import push_to_hub

    result = push_to_hub(run_dir, repo_id, private=private, revision=revision, commit_message=message)
    print(f"pushed {len(result.files)} files to {result.repo_id} ({result.revision}): {result.commit_url}")
    return 0


def _run_glue(ns: argparse.Namespace) -> int:
    from seqtune.config import load_config
    from seqtune.glue import parse_transfer, run_glue

    task, overrides = train_overrides(ns)
    if task is not None:
        raise SeqtuneError(f"glue: unexpected task '{task}'; pick tasks with --tasks {task}")
    transfer = parse_transfer(ns.transfer)
    tasks = [t.strip() for t in ns.tasks.split(",") if t.strip()] if ns.tasks else None
    # validated as a run of the first task; run_glue sets each task in turn
    cfg = load_config(ns.config, [f"task={(tasks or ['mrpc'])[0]}", *overrides])
    if cfg.data.data_dir is None:
        raise SeqtuneError("glue needs --data-dir DIR: a folder with <TASK>/train.tsv, dev.tsv, test.tsv")
    output = cfg.output or "runs/glue"
    run_glue(cfg, cfg.data.data_dir, tasks, ns.seeds, output, ensemble=ns.ensemble, transfer=transfer)
    return 0


def _run_search(ns: argparse.Namespace) -> int:
    from seqtune.config import load_config
    from seqtune.search import load_space, search

    if ns.trials < 1:
        raise SeqtuneError(f"--trials {ns.trials}: expected at least 1")
    _, overrides = train_overrides(ns)
    cfg = load_config(ns.config, overrides)
    result = search(cfg, ns.trials, load_space(ns.space), ns.train_shard, ns.storage, ns.study_name, not ns.no_retrain)
    print("| trial | state | score | params |")
    for t in result.trials:
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        state = t["state"].lower() + (" (your settings)" if t.get("baseline") else "")
        print(f"| {t['number']} | {state} | {value} | {params} |")
    print(f"best: {result.best_value:.4f} with {result.best_params}")
    if result.best_run is not None and result.retrain_completed:
        print(f"best configuration retrained on all the training data -> {result.best_run}")
    elif result.best_run is not None:
        print(f"retraining the best configuration was stopped; finish it with: seqtune train --resume --output "
              f"{result.best_run}")  # fmt: skip
    return 0


def _run_deploy(ns: argparse.Namespace) -> int:
    if ns.command == "export":
        from seqtune.export import describe, export_run

        result = export_run(
            ns.run_dir, ns.format, ns.quantize, ns.output, ns.data_dir, ns.max_samples, ns.min_agreement
        )
        print(describe(result))
        return 0
    from seqtune.serve import ServeSettings, serve

    for flag in ("port", "micro_batch", "max_batch_size", "max_text_chars", "max_body_bytes"):
        if getattr(ns, flag) < (0 if flag == "port" else 1):
            raise SeqtuneError(f"--{flag.replace('_', '-')} {getattr(ns, flag)}: expected a positive number")
    settings = ServeSettings(
        not ns.no_batching, ns.micro_batch, ns.max_wait_ms, ns.max_batch_size, ns.max_text_chars, ns.max_body_bytes
    )
    serve(ns.run_dir, ns.host, ns.port, settings)
    return 0


def _run_report(ns: argparse.Namespace) -> int:
    from seqtune import report

    if ns.command == "report":
        print(f"wrote {report.write_report(ns.run_dir)}")
        return 0
    result = report.compare_runs(ns.run_dirs)
    from rich.console import Console

    Console().print(report.compare_table(result))
    if ns.output:
        print(f"wrote {report.write_compare_html(result, ns.output)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `seqtune` console script; returns the exit code (2 for bad input)."""
    parser = build_parser()
    try:
        ns, extra = parser.parse_known_args(argv)
        if extra:  # key=value overrides may also follow the flags: `seqtune train mrpc --epochs 2 train.lr=3e-5`
            if ns.command in ("train", "search", "glue") and all("=" in a and not a.startswith("-") for a in extra):
                ns.args = [*ns.args, *extra]
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # usage errors (exit 2) and --help (exit 0), as a return code like everything else
        return exc.code if isinstance(exc.code, int) else 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        return _run(ns)
    except SeqtuneError as exc:
        print(f"seqtune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
