"""Where training metrics go: ``train_log.jsonl`` always, and the trackers ``--report-to`` names (comma-separated:
``tensorboard``, ``mlflow``, ``wandb``).

- TensorBoard: event files in ``<run>/tensorboard``.
- MLflow (extra ``mlflow``): one MLflow run per seqtune run, on the server ``MLFLOW_TRACKING_URI`` names (else
  MLflow's local default), in the experiment ``MLFLOW_EXPERIMENT_NAME`` (else ``seqtune``). Params: the flattened
  config; metrics: loss, lr and tokens/s per log step, every evaluation metric as ``<split>/<metric>``; tags: task and
  model; at the end the run folder's shareable files (the same ones `seqtune push` uploads) as artifacts. A resumed
  run continues the same MLflow run.
- Weights & Biases (extra ``wandb``): ``wandb.init`` with the project ``WANDB_PROJECT`` (else ``seqtune``), the
  config, the same metrics; its files go to ``<run>/wandb``; ``WANDB_MODE=offline`` works without an account.

A tracker that fails (server gone, disk full, a bug in it) warns once and is dropped: training never stops for it.
The ids of the tracker runs are kept in ``<run>/tracking.json`` so a resumed run logs to the same ones.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtune import runfolder
from seqtune.config import tracker_names
from seqtune.errors import SeqtuneError

if TYPE_CHECKING:
    from seqtune.config import RunConfig

_EXTRA = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


class Tracker:
    """Writes each log record and evaluation to ``train_log.jsonl`` and to every tracker asked for.

    ``enabled=False`` (the other processes of a distributed run) writes nothing.
    """

    def __init__(self, run_dir: Path, report_to: str | None = None, enabled: bool = True, cfg: RunConfig | None = None):
        self.run_dir = run_dir
        self.enabled = enabled
        self.backends: list[Any] = []
        if not enabled:
            return
        ids = _read_ids(run_dir)
        for name in tracker_names(report_to):
            backend = _BACKENDS[name]
            try:
                self.backends.append(backend(run_dir, cfg, ids.get(name)))
            except ImportError:
                raise SeqtuneError(
                    f"--report-to {name} needs the {name} package: pip install 'seqtune[{_EXTRA[name]}]'"
                ) from None
            except Exception as exc:  # noqa: BLE001 -- a server down at the start: warn, train without it
                _warn(name, exc)
        self._save_ids()

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        runfolder.append_log(self.run_dir, record)
        self._each("log", record)

    def log_eval(self, step: int, metrics: dict[str, dict[str, float]]) -> None:
        self._each("log_eval", step, metrics)

    def close(self) -> None:
        """Flush and end every tracker run: finished when the run folder is complete, else stopped (resumable)."""
        finished = (self.run_dir / runfolder.TASK_FILE).is_file()
        self._each("close", finished)
        self.backends = []

    def _each(self, method: str, *args: Any) -> None:
        for backend in list(self.backends):
            try:
                getattr(backend, method)(*args)
            except Exception as exc:  # noqa: BLE001 -- any tracker failure: warn once, drop it, train on
                _warn(backend.name, exc)
                self.backends.remove(backend)

    def _save_ids(self) -> None:
        ids = {b.name: b.run_id for b in self.backends if getattr(b, "run_id", None)}
        if ids:
            (self.run_dir / runfolder.TRACKING_FILE).write_text(json.dumps(ids, indent=1))


def _warn(name: str, exc: BaseException) -> None:
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    print(f"seqtune: warning: {name} tracking failed ({type(exc).__name__}: {first}); training goes on without it",
          file=sys.stderr)  # fmt: skip


def _read_ids(run_dir: Path) -> dict[str, str]:
    path = run_dir / runfolder.TRACKING_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def _params(cfg: RunConfig | None) -> dict[str, str]:
    from seqtune.config_values import flat

    return {k: str(v)[:500] for k, v in flat(cfg.to_dict()).items()} if cfg is not None else {}


def _config(cfg: RunConfig | None) -> dict[str, Any]:
    from seqtune.config_values import flat

    return flat(cfg.to_dict()) if cfg is not None else {}


class _TensorBoard:
    name = "tensorboard"

    def __init__(self, run_dir: Path, cfg: RunConfig | None, run_id: str | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / runfolder.TENSORBOARD_DIR))

    def log(self, record: dict[str, Any]) -> None:
        for key in ("loss", "lr", "tokens_per_second"):
            self.writer.add_scalar(f"train/{key}", record[key], record["step"])

    def log_eval(self, step: int, metrics: dict[str, dict[str, float]]) -> None:
        for split, values in metrics.items():
            for name, value in values.items():
                self.writer.add_scalar(f"{split}/{name}", value, step)
        self.writer.flush()

    def close(self, finished: bool) -> None:
        self.writer.close()


class _MLflow:
    name = "mlflow"

    def __init__(self, run_dir: Path, cfg: RunConfig | None, run_id: str | None):
        # a server that went away costs seconds, not MLflow's default minutes of retries, before it is dropped
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        self.client, self.run_dir = MlflowClient(), run_dir
        if run_id is not None:  # a resumed run: the same MLflow run, running again
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "seqtune")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {"seqtune.task": (cfg.task or "own data") if cfg else "", "seqtune.model": cfg.model.name if cfg else "",
                "seqtune.run_dir": str(run_dir.resolve())}  # fmt: skip
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags).info.run_id
        params = [Param(k, v) for k, v in _params(cfg).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("mlflow.source.name", "seqtune")])

    def log(self, record: dict[str, Any]) -> None:
        self._metrics({f"train/{k}": record[k] for k in ("loss", "lr", "tokens_per_second")}, record["step"])

    def log_eval(self, step: int, metrics: dict[str, dict[str, float]]) -> None:
        self._metrics({f"{split}/{name}": v for split, values in metrics.items() for name, v in values.items()}, step)

    def _metrics(self, values: dict[str, float], step: int) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in values.items() if v is not None and math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self, finished: bool) -> None:
        if finished:
            from seqtune.push import files_to_push

            for rel in files_to_push(self.run_dir):
                parent = str(Path(rel).parent)
                self.client.log_artifact(self.run_id, str(self.run_dir / rel), None if parent == "." else parent)
        self.client.set_terminated(self.run_id, status="FINISHED" if finished else "KILLED")


class _WandB:
    name = "wandb"

    def __init__(self, run_dir: Path, cfg: RunConfig | None, run_id: str | None):
        import wandb

        folder = run_dir / runfolder.WANDB_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "seqtune"),
            name=run_dir.name,
            dir=str(folder),
            config=_config(cfg),
            id=run_id,
            resume="allow" if run_id else None,
            tags=[cfg.task or "own-data"] if cfg else None,
            reinit="create_new",
        )
        self.run_id = self.run.id

    def log(self, record: dict[str, Any]) -> None:
        self.run.log({f"train/{k}": record[k] for k in ("loss", "lr", "tokens_per_second")}, step=record["step"])

    def log_eval(self, step: int, metrics: dict[str, dict[str, float]]) -> None:
        self.run.log({f"{split}/{name}": v for split, values in metrics.items() for name, v in values.items()},
                     step=step)  # fmt: skip

    def close(self, finished: bool) -> None:
        self.run.finish(exit_code=0 if finished else 1)


_BACKENDS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}
