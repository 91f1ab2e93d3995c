"""Hyperparameter search that hands back a trained model.

`search` runs an Optuna study (TPE sampler, median pruning on each trial's per-epoch evaluations) over a YAML
search space, scores each trial by the task's selection metric at its best evaluation, then retrains the best
configuration on the full training data into ``<output>/best`` — a normal run folder, with ``search.json``.
Studies live in an RDB (default: ``<output>/study.db``), so an interrupted search resumes and several workers
can share one study through ``storage``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtune import runfolder
from seqtune.config import RunConfig, read_yaml
from seqtune.errors import SeqtuneError
from seqtune.recipe import DEFAULT_LR

# The default space: what matters most when fine-tuning a small encoder.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [16, 32]},
    "train.epochs": {"type": "int", "low": 2, "high": 5},
    "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
    "train.weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
    "seed": {"type": "int", "low": 0, "high": 10_000},
}
TYPES = ("float", "int", "categorical")


def load_space(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read and check a search space; ``None`` gives `DEFAULT_SPACE`.

    A space maps config keys to ``{type: float|int, low, high[, log]}`` or ``{type: categorical, choices}``.
    """
    if path is None:
        return copy.deepcopy(DEFAULT_SPACE)
    p = Path(path)
    space = read_yaml(p, f"{p}: search space file not found; pass a YAML file like the one in the README")
    if not isinstance(space, dict) or not space:
        raise SeqtuneError(f"{p}: expected a mapping of config keys to ranges, e.g. 'train.lr: {{type: float, ...}}'")
    check_space(space, str(p))
    return space


def check_space(space: dict[str, Any], where: str = "search space") -> None:
    """One-line errors naming the key: unknown parameter, bad type, low > high, empty choices."""
    probe = RunConfig()
    for key, spec in space.items():
        node: Any = probe
        for part in key.split("."):
            if not hasattr(node, part):
                raise SeqtuneError(f"{where}: unknown parameter '{key}'; use a config key such as train.lr or seed")
            node = getattr(node, part)
        if not isinstance(spec, dict) or spec.get("type") not in TYPES:
            raise SeqtuneError(f"{where}: '{key}' needs a type, one of {', '.join(TYPES)}")
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise SeqtuneError(f"{where}: '{key}' has no choices; give a non-empty list")
            continue
        if "low" not in spec or "high" not in spec:
            raise SeqtuneError(f"{where}: '{key}' needs low and high")
        low, high = float(spec["low"]), float(spec["high"])
        if low > high:
            raise SeqtuneError(f"{where}: '{key}' has low {spec['low']} > high {spec['high']}; swap them")
        if spec.get("log") and low <= 0:
            raise SeqtuneError(f"{where}: '{key}' is log-scaled, so low must be > 0 (found {spec['low']})")


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> list[str]:
    """The trial's parameters as ``key=value`` overrides."""
    overrides = []
    for key, spec in space.items():
        if spec["type"] == "float":
            value = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
        elif spec["type"] == "int":
            value = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        else:
            value = trial.suggest_categorical(key, spec["choices"])
        overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def baseline_params(cfg: RunConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's own settings for the searched keys that lie inside the space: the search's first trial, so it
    never hands back a configuration that scored worse than the one you started from."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value is None:  # an automatic setting: the value it takes for a single-label task of MRPC's size
            value = {"train.lr": DEFAULT_LR, "train.epochs": 3}.get(key)
        if spec["type"] == "categorical":
            if value in spec["choices"]:
                params[key] = value
        elif isinstance(value, (int, float)) and float(spec["low"]) <= value <= float(spec["high"]):
            if spec["type"] == "float":
                params[key] = float(value)
            elif float(value).is_integer():
                params[key] = int(value)
    return params


@dataclass
class SearchResult:
    output: Path
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]
    best_run: Path | None
    retrain_completed: bool | None = None  # False: the retrain was stopped (signal) and can be resumed


def search(
    cfg: RunConfig,
    n_trials: int = 20,
    space: dict[str, dict[str, Any]] | None = None,
    train_shard: float | None = None,
    storage: str | None = None,
    study_name: str = "seqtune",
    retrain: bool = True,
) -> SearchResult:
    """Search hyperparameters, then retrain the best configuration on all the training data.

    Example:
        >>> cfg = load_config(None, ["task=mrpc", "data.data_dir=../shared/glue", "output=runs/search"])
        >>> result = search(cfg, n_trials=12, train_shard=0.1)  # doctest: +SKIP
        >>> result.best_run  # doctest: +SKIP
        PosixPath('runs/search/best')
    """
    import optuna

    from seqtune.tasks import LOWER_IS_BETTER, get_task
    from seqtune.training import train

    space = space if space is not None else copy.deepcopy(DEFAULT_SPACE)
    check_space(space)
    out = Path(cfg.output or "runs/search")
    out.mkdir(parents=True, exist_ok=True)
    url = storage_url(storage) if storage else f"sqlite:///{out.resolve() / 'study.db'}"
    greater = (cfg.train.metric or (get_task(cfg.task).selection_metric if cfg.task else None)) not in LOWER_IS_BETTER
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable enough
    study = _open_study(optuna, url, study_name, "maximize" if greater else "minimize", cfg.seed)

    def objective(trial: optuna.Trial) -> float:
        if trial.user_attrs.get("baseline") and _baseline_twin(study, trial.number):
            # workers that started together each enqueued the baseline: the lowest-numbered copy runs, this one
            # steps aside without training and without using a slot of the budget
            trial.set_user_attr("over_budget", True)
            raise optuna.TrialPruned("baseline already enqueued by another worker")
        if _slots_taken(study, trial.number) >= n_trials:  # other workers took the last slots first
            trial.set_user_attr("over_budget", True)
            study.stop()
            raise optuna.TrialPruned("trial budget reached")
        overrides = suggest(trial, space) + [f"output={out / 'trials' / f'trial-{trial.number}'}", "overwrite=true",
                                             "quiet=true", "train.eval_every=0"]  # fmt: skip
        if train_shard is not None:
            overrides.append(f"data.train_shard={train_shard}")
        trial_cfg = cfg.with_overrides(overrides)

        def report(index: int, score: float) -> None:
            trial.report(score, index)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after evaluation {index}")

        try:
            result = train(trial_cfg, on_evaluate=report)
        finally:  # keep the numbers in the study, not 90 MB of weights per trial
            shutil.rmtree(out / "trials" / f"trial-{trial.number}", ignore_errors=True)
        if not result.completed:  # SIGINT/SIGTERM stopped the trial: stop the whole search, resumable later
            raise KeyboardInterrupt
        return float(result.best["score"]) if result.best else math.nan

    # Trials already in the study (from an interrupted run or other workers) count against the budget, so a
    # resumed search or a second worker runs only what is left; each trial checks its slot as it starts.
    optuna.storages.fail_stale_trials(study)
    failed = optuna.trial.TrialState.FAIL
    if not any(t.user_attrs.get("baseline") and t.state != failed for t in study.trials):
        # a new study, or one whose baseline trial died with its worker: the run's own settings go first
        study.enqueue_trial(baseline_params(cfg, space), user_attrs={"baseline": True})
    for _ in range(3):  # again when a twin baseline stepped aside or a race was lost (not forever: NaN trials fail)
        if (left := n_trials - _slots_taken(study, None)) <= 0:
            break
        try:
            study.optimize(objective, n_trials=left, catch=())
        except ValueError as exc:
            # SQLite has no row locks: two workers can both claim the enqueued baseline trial. The one that
            # finishes second cannot record it ("Cannot tell a COMPLETE trial"); its copy is dropped and it goes on.
            if "Cannot tell a" not in str(exc):
                raise
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
         "intermediate": dict(t.intermediate_values), "baseline": bool(t.user_attrs.get("baseline"))}
        for t in study.trials
        if not t.user_attrs.get("over_budget")
    ]  # fmt: skip
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise SeqtuneError("no trial completed; check the search space and the data")
    best = study.best_trial
    result = SearchResult(out, best.params, float(best.value), trials, None)
    record = {"best_params": best.params, "best_value": best.value, "best_trial": best.number,
              "n_trials": len(trials), "train_shard": train_shard, "storage": url, "trials": trials}  # fmt: skip
    (out / runfolder.SEARCH_FILE).write_text(json.dumps(record, indent=1))
    if retrain:
        overrides = [f"{k}={json.dumps(v)}" for k, v in best.params.items()]
        final_cfg = cfg.with_overrides([*overrides, f"output={out / 'best'}", "data.train_shard=null"])
        final = train(_continue_or_replace(final_cfg, out / "best"))
        shutil.copyfile(out / runfolder.SEARCH_FILE, final.run_dir / runfolder.SEARCH_FILE)
        result.best_run, result.retrain_completed = final.run_dir, final.completed
    return result


def storage_url(url: str) -> str:
    """A study storage URL as SQLAlchemy needs it: ``postgresql://`` goes through psycopg 3 (the ``postgres`` extra)
    unless psycopg2 is installed; a missing driver is a one-line error saying what to install.

    Example:
        >>> storage_url("sqlite:///runs/study.db")
        'sqlite:///runs/study.db'
    """
    import importlib.util

    scheme = url.split("://", 1)[0]
    if scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg2") is not None:
            return "postgresql" + url[len(scheme) :]
        scheme, url = "postgresql+psycopg", "postgresql+psycopg" + url[len(scheme) :]
    if scheme == "postgresql+psycopg" and importlib.util.find_spec("psycopg") is None:
        raise SeqtuneError(
            f"--storage {url.split('@')[-1]}: PostgreSQL needs a driver; pip install 'seqtune[postgres]'"
        )
    return url


def _continue_or_replace(cfg: RunConfig, best_dir: Path) -> RunConfig:
    """The retrain as one command that starts or resumes: an interrupted retrain of the same settings continues
    from its checkpoint (a finished one is kept); a retrain of other settings (the study found a better trial since)
    is replaced."""
    previous = best_dir / runfolder.CONFIG_FILE
    if previous.is_file() and not runfolder.load_run_config(best_dir).differences(cfg):
        return cfg.with_overrides({"resume": True, "overwrite": False})
    return cfg.with_overrides({"resume": False, "overwrite": True})


def _open_study(optuna: Any, url: str, name: str, direction: str, seed: int) -> Any:
    """Create or load the study. Workers starting together can race to create the storage's tables; the loser
    retries and then finds them. Any other database error (server down, no such database, no right to create
    tables) is one line naming the storage, at once."""
    import sqlalchemy.exc

    where = url.split("@")[-1]  # never the user or password
    for attempt in range(5):
        try:
            storage = _storage(optuna, url)
            return optuna.create_study(
                study_name=name,
                storage=storage,
                load_if_exists=True,
                direction=direction,
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
            )
        except sqlalchemy.exc.DBAPIError as exc:
            if attempt < 4 and _creation_race(exc):
                time.sleep(0.5 * (attempt + 1))
                continue
            fix = ("that its folder exists and is writable" if url.startswith("sqlite") else
                   "that the database server is running, and that its user may create tables there")  # fmt: skip
            raise SeqtuneError(f"--storage {where}: cannot open the study ({_first_line(exc.orig)}); check the URL, "
                               f"{fix}") from None  # fmt: skip
        except sqlalchemy.exc.ArgumentError as exc:  # an unknown scheme or a malformed URL
            raise SeqtuneError(f"--storage {where}: not a storage seqtune can open ({_first_line(exc)}); use "
                               "sqlite:///PATH, postgresql://USER@HOST/DATABASE or journal:PATH") from None  # fmt: skip
        except OSError as exc:  # a journal file in a folder that is not there, or not writable
            if not url.startswith("journal:"):
                raise
            raise SeqtuneError(f"--storage {where}: cannot open the journal file ({exc.strerror or exc}); create its "
                               "folder or pick another path") from None  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# SQLSTATEs of workers creating the storage's tables at the same moment: duplicate table, duplicate object (an
# index or type), unique violation (PostgreSQL's catalogue)
_RACE_STATES = frozenset({"42P07", "42710", "23505"})


def _creation_race(exc: Exception) -> bool:
    """Whether a database error is another worker creating the same tables (or holding SQLite's lock) this moment."""
    import sqlalchemy.exc

    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state is not None:
        return state in _RACE_STATES
    text = str(orig).lower()
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or "database is locked" in text or "already exists" in text


def _storage(optuna: Any, url: str) -> Any:
    """``journal:PATH``: Optuna's journal file (workers on a shared file system, no database server); anything else
    an RDB URL. Heartbeats let a resumed search mark the trials of a killed worker failed instead of running forever
    (RDB only: a journal file has none, so a killed worker's trial stays RUNNING there)."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return optuna.storages.RDBStorage(url, heartbeat_interval=15, grace_period=60)


def _baseline_twin(study: Any, number: int) -> bool:
    """Whether a baseline trial with a lower number than ``number`` exists (trial numbers come from the storage
    atomically, so exactly one copy of the baseline has none)."""
    import optuna

    failed = optuna.trial.TrialState.FAIL
    return any(
        t.user_attrs.get("baseline") and t.number < number and t.state != failed and not t.user_attrs.get("over_budget")
        for t in study.get_trials(deepcopy=False)
    )


def _slots_taken(study: Any, before: int | None) -> int:
    """Trials that used (or are using) a slot of the budget: finished, pruned, or running with a lower number.

    Trial numbers come from the storage atomically, so when two workers race for the last slot the one with the
    higher number sees the other and steps back: every budgeted trial runs exactly once.
    """
    import optuna

    state = optuna.trial.TrialState
    taken = 0
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("over_budget") or t.number == before:
            continue
        if t.state in (state.COMPLETE, state.PRUNED) or (
            t.state == state.RUNNING and (before is None or t.number < before)
        ):
            taken += 1
    return taken
