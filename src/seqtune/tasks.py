"""Task registry: what each GLUE task (and a user's own data) looks like and how it is scored.

A `TaskSpec` is plain data. The nine GLUE tasks live in `GLUE_TASKS`; own data gets a spec built from its
columns and labels by `seqtune.data`. Nothing here reads files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from seqtune.errors import SeqtuneError

LOWER_IS_BETTER = frozenset({"loss", "mse"})  # selection metrics where a lower score is the better one

ProblemType = Literal["single_label_classification", "multi_label_classification", "regression"]


@dataclass(frozen=True)
class GlueFile:
    """Where one split lives in GLUE's own TSV layout.

    Fields are header names, or 0-based column positions for files without a header (CoLA train/dev).
    """

    filename: str
    text_fields: tuple[str | int, ...]
    label_field: str | int | None = None
    header: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """Everything seqtune needs to know about a task.

    Attributes:
        name: registry key, e.g. ``"mrpc"``; ``"custom"`` for own data.
        text_columns: the dataset columns fed to the tokenizer (one, or two for sentence pairs).
        label_names: class names in label-id order; ``None`` for regression.
        problem_type: as in ``transformers`` model configs.
        metrics: metric names computed at evaluation (see `seqtune.metrics`).
        selection_metric: the metric that picks the best checkpoint (higher is better unless it is a loss/error).
        eval_splits: splits evaluated during training (MNLI has two).
        test_splits: unlabeled splits used for GLUE submissions.
        hub_config: the ``nyu-mll/glue`` config name, ``None`` for own data.
        glue_files: split -> file layout in a local GLUE folder.
        submission_names: split -> GLUE leaderboard file stem (``MRPC`` -> ``MRPC.tsv``).
        swap_pairs: a paraphrase task whose label does not depend on the order of its two texts: training reads
            each pair in both orders unless told otherwise (`seqtune.pair_order`; measured on MRPC).
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    problem_type: ProblemType = "single_label_classification"
    metrics: tuple[str, ...] = ("accuracy",)
    selection_metric: str = "accuracy"
    eval_splits: tuple[str, ...] = ("validation",)
    test_splits: tuple[str, ...] = ("test",)
    hub_config: str | None = None
    glue_files: dict[str, GlueFile] = field(default_factory=dict)
    submission_names: dict[str, str] = field(default_factory=dict)
    # GLUE's submission format writes label names for these tasks, label ids for the others.
    submission_uses_label_names: bool = False
    # Decision threshold on the positive class's probability (binary) or each label's (multi-label); None = 0.5
    # (argmax for binary). Set by `train.tune_threshold` and applied wherever logits become labels.
    threshold: float | None = None
    swap_pairs: bool = False

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_regression(self) -> bool:
        return self.problem_type == "regression"

    @property
    def is_multi_label(self) -> bool:
        return self.problem_type == "multi_label_classification"

    @property
    def has_threshold(self) -> bool:
        """Whether predictions come from a probability threshold: multi-label, and binary single-label tasks."""
        return self.is_multi_label or (self.problem_type == "single_label_classification" and self.num_labels == 2)

    @property
    def greater_is_better(self) -> bool:
        return self.selection_metric not in LOWER_IS_BETTER

    def selecting(self, metric: str | None) -> TaskSpec:
        """This task with ``metric`` (one of its metrics) as the selection metric; ``None`` keeps its own.

        Example:
            >>> get_task("mrpc").selecting("f1").selection_metric
            'f1'
        """
        if metric is None:
            return self
        if metric not in self.metrics:
            raise SeqtuneError(
                f"--metric {metric}: {self.name} reports {', '.join(self.metrics)}; choose one of them "
                f"(or drop --metric to select on {self.selection_metric})"
            )
        return replace(self, selection_metric=metric)

    def with_labels(self, label_names: tuple[str, ...]) -> TaskSpec:
        return replace(self, label_names=label_names)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b)


GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec(
        name="cola",
        text_columns=("sentence",),
        label_names=("unacceptable", "acceptable"),
        metrics=("matthews_correlation", "accuracy"),
        selection_metric="matthews_correlation",
        hub_config="cola",
        glue_files={
            "train": GlueFile("train.tsv", (3,), 1, header=False),
            "validation": GlueFile("dev.tsv", (3,), 1, header=False),
            "test": GlueFile("test.tsv", ("sentence",)),
        },
        submission_names={"test": "CoLA"},
    ),
    "sst2": TaskSpec(
        name="sst2",
        text_columns=("sentence",),
        label_names=("negative", "positive"),
        hub_config="sst2",
        glue_files={
            "train": GlueFile("train.tsv", ("sentence",), "label"),
            "validation": GlueFile("dev.tsv", ("sentence",), "label"),
            "test": GlueFile("test.tsv", ("sentence",)),
        },
        submission_names={"test": "SST-2"},
    ),
    "mrpc": TaskSpec(
        name="mrpc",
        text_columns=_pair("sentence1", "sentence2"),
        label_names=("not_equivalent", "equivalent"),
        metrics=("accuracy", "f1", "combined_score"),
        selection_metric="combined_score",
        hub_config="mrpc",
        glue_files={
            "train": GlueFile("train.tsv", ("#1 String", "#2 String"), "Quality"),
            "validation": GlueFile("dev.tsv", ("#1 String", "#2 String"), "Quality"),
            "test": GlueFile("test.tsv", ("#1 String", "#2 String")),
        },
        submission_names={"test": "MRPC"},
        swap_pairs=True,
    ),
    "stsb": TaskSpec(
        name="stsb",
        text_columns=_pair("sentence1", "sentence2"),
        label_names=None,
        problem_type="regression",
        metrics=("pearson", "spearmanr", "combined_score", "mse"),
        selection_metric="combined_score",
        hub_config="stsb",
        glue_files={
            "train": GlueFile("train.tsv", ("sentence1", "sentence2"), "score"),
            "validation": GlueFile("dev.tsv", ("sentence1", "sentence2"), "score"),
            "test": GlueFile("test.tsv", ("sentence1", "sentence2")),
        },
        submission_names={"test": "STS-B"},
    ),
    "qqp": TaskSpec(
        name="qqp",
        text_columns=_pair("question1", "question2"),
        label_names=("not_duplicate", "duplicate"),
        metrics=("accuracy", "f1", "combined_score"),
        selection_metric="combined_score",
        hub_config="qqp",
        glue_files={
            "train": GlueFile("train.tsv", ("question1", "question2"), "is_duplicate"),
            "validation": GlueFile("dev.tsv", ("question1", "question2"), "is_duplicate"),
            "test": GlueFile("test.tsv", ("question1", "question2")),
        },
        submission_names={"test": "QQP"},
        swap_pairs=True,
    ),
    "mnli": TaskSpec(
        name="mnli",
        text_columns=_pair("premise", "hypothesis"),
        label_names=("entailment", "neutral", "contradiction"),
        hub_config="mnli",
        eval_splits=("validation_matched", "validation_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
        glue_files={
            "train": GlueFile("train.tsv", ("sentence1", "sentence2"), "gold_label"),
            "validation_matched": GlueFile("dev_matched.tsv", ("sentence1", "sentence2"), "gold_label"),
            "validation_mismatched": GlueFile("dev_mismatched.tsv", ("sentence1", "sentence2"), "gold_label"),
            "test_matched": GlueFile("test_matched.tsv", ("sentence1", "sentence2")),
            "test_mismatched": GlueFile("test_mismatched.tsv", ("sentence1", "sentence2")),
        },
        submission_names={"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"},
        submission_uses_label_names=True,
    ),
    "qnli": TaskSpec(
        name="qnli",
        text_columns=_pair("question", "sentence"),
        label_names=("entailment", "not_entailment"),
        hub_config="qnli",
        glue_files={
            "train": GlueFile("train.tsv", ("question", "sentence"), "label"),
            "validation": GlueFile("dev.tsv", ("question", "sentence"), "label"),
            "test": GlueFile("test.tsv", ("question", "sentence")),
        },
        submission_names={"test": "QNLI"},
        submission_uses_label_names=True,
    ),
    "rte": TaskSpec(
        name="rte",
        text_columns=_pair("sentence1", "sentence2"),
        label_names=("entailment", "not_entailment"),
        hub_config="rte",
        glue_files={
            "train": GlueFile("train.tsv", ("sentence1", "sentence2"), "label"),
            "validation": GlueFile("dev.tsv", ("sentence1", "sentence2"), "label"),
            "test": GlueFile("test.tsv", ("sentence1", "sentence2")),
        },
        submission_names={"test": "RTE"},
        submission_uses_label_names=True,
    ),
    "wnli": TaskSpec(
        name="wnli",
        text_columns=_pair("sentence1", "sentence2"),
        label_names=("not_entailment", "entailment"),
        hub_config="wnli",
        glue_files={
            "train": GlueFile("train.tsv", ("sentence1", "sentence2"), "label"),
            "validation": GlueFile("dev.tsv", ("sentence1", "sentence2"), "label"),
            "test": GlueFile("test.tsv", ("sentence1", "sentence2")),
        },
        submission_names={"test": "WNLI"},
    ),
}

# Common spellings people type for the GLUE tasks.
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}

# What a file's column names become inside seqtune for own data.
CUSTOM_TEXT = "text"
CUSTOM_TEXT_PAIR = "text_pair"


def get_task(name: str) -> TaskSpec:
    """Look up a GLUE task by name (case-insensitive).

    Example:
        >>> get_task("MRPC").selection_metric
        'combined_score'
    """
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise SeqtuneError(
            f"unknown task '{name}': expected one of {', '.join(GLUE_TASKS)}; "
            "for your own data pass --train-file with --text-column and --label-column instead"
        )
    return GLUE_TASKS[key]


def custom_task(
    *,
    pair: bool,
    problem_type: ProblemType,
    label_names: tuple[str, ...] | None,
) -> TaskSpec:
    """The spec for own data: metrics chosen from the problem type."""
    if problem_type == "regression":
        metrics: tuple[str, ...] = ("pearson", "spearmanr", "mse")
        selection = "pearson"
    elif problem_type == "multi_label_classification":
        metrics, selection = ("f1_micro", "f1_macro", "exact_match"), "f1_micro"
    elif label_names is not None and len(label_names) == 2:
        metrics, selection = ("accuracy", "f1", "f1_macro", "matthews_correlation"), "accuracy"
    else:
        metrics, selection = ("accuracy", "f1_macro"), "accuracy"
    return TaskSpec(
        name="custom",
        text_columns=(CUSTOM_TEXT, CUSTOM_TEXT_PAIR) if pair else (CUSTOM_TEXT,),
        label_names=label_names,
        problem_type=problem_type,
        metrics=metrics,
        selection_metric=selection,
    )
