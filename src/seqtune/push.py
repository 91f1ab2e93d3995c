"""Share a run folder (or an ONNX export folder) on the Hugging Face Hub with `huggingface_hub`.

One commit per push (`HfApi.create_commit`): either every file arrives or none does. Checkpoints, TensorBoard event
files, evaluation predictions and half-written temporary folders stay local. The model card (README.md) is rendered
again for the repo, so its name and usage snippets say ``OWNER/NAME`` instead of a local path.

Token and endpoint come the standard way: ``HF_TOKEN`` or a saved ``hf auth login``, ``HF_ENDPOINT``. Every way a
push can fail before or while talking to the Hub (offline mode, no token, unreachable endpoint, refused token,
unknown repo or revision) is a one-line `SeqtuneError`.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtune import runfolder
from seqtune.errors import SeqtuneError

# Local-only files of a run folder: resume state, event files, dev predictions, half-written folders.
LOCAL_ONLY = (
    f"{runfolder.CHECKPOINTS}/*",
    f"*/{runfolder.CHECKPOINTS}/*",
    f"{runfolder.TENSORBOARD_DIR}/*",
    f"*/{runfolder.TENSORBOARD_DIR}/*",
    f"{runfolder.WANDB_DIR}/*",
    runfolder.TRACKING_FILE,
    runfolder.EVAL_PREDICTIONS,
    f"*/{runfolder.EVAL_PREDICTIONS}",
    ".tmp-*",
    "*/.tmp-*",
    "*.lock",
)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_url: str
    files: list[str]  # paths in the repo


def files_to_push(folder: Path) -> list[str]:
    """The folder's files that go to the Hub (relative POSIX paths), local-only ones left out.

    Example:
        >>> files_to_push(Path("runs/mrpc"))  # doctest: +SKIP
        ['README.md', 'config.json', 'config.yaml', 'metrics.json', 'model.safetensors', ...]
    """
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(rel, pattern) for pattern in LOCAL_ONLY):
            out.append(rel)
    return out


def push_to_hub(
    run: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> PushResult:
    """Upload a finished run folder (or an export folder) to ``repo_id`` in one commit; create the repo (and the
    ``revision`` branch) when missing.

    Example:
        >>> push_to_hub("runs/mrpc", "me/minilm-mrpc", private=True)  # doctest: +SKIP
        PushResult(repo_id='me/minilm-mrpc', revision='main', commit_url='https://huggingface.co/me/...', ...)
    """
    from huggingface_hub import CommitOperationAdd

    folder = _check_folder(Path(run))
    api = check_can_push(repo_id, token, endpoint)
    branch = revision or "main"
    files = files_to_push(folder)
    card = _card_for(folder, repo_id)
    operations = [
        CommitOperationAdd(path_in_repo=rel, path_or_fileobj=card if rel == runfolder.MODEL_CARD and card else
                           str(folder / rel))
        for rel in files
    ]  # fmt: skip
    with _hub_errors(api.endpoint, repo_id, branch):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"seqtune: upload {folder.name}",
            revision=branch,
        )
    return PushResult(repo_id, branch, str(info.commit_url), files)


def check_can_push(repo_id: str, token: str | None = None, endpoint: str | None = None) -> Any:
    """Everything a push needs short of the upload: a valid repo id, online mode, a token, a reachable Hub that
    accepts the token. Returns the `HfApi` to push with. `seqtune train --push-to-hub` calls it before training."""
    from huggingface_hub import HfApi, constants, get_token

    if not _REPO_ID.match(repo_id):
        raise SeqtuneError(f"--repo-id {repo_id}: expected OWNER/NAME (letters, digits, '-', '_', '.')")
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if constants.HF_HUB_OFFLINE:
        raise SeqtuneError(f"push: HF_HUB_OFFLINE is set, so nothing may reach {endpoint}; unset it to push")
    token = token or get_token()
    if not token:
        raise SeqtuneError("push: no Hugging Face token; set HF_TOKEN or run `hf auth login` (a write token)")
    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(endpoint, repo_id, "main"):
        api.whoami()  # reachable, and the token is valid: before anything is created
    return api


def _check_folder(folder: Path) -> Path:
    from seqtune.runtime import is_onnx_folder

    if not folder.is_dir():
        raise SeqtuneError(f"{folder}: folder not found; pass a run folder or an export folder")
    finished = (folder / runfolder.TASK_FILE).is_file() and (
        (folder / runfolder.WEIGHTS_FILE).is_file() or (folder / runfolder.ENSEMBLE_FILE).is_file()
        or is_onnx_folder(folder)
    )  # fmt: skip
    if not finished:
        raise SeqtuneError(
            f"{folder}: not a finished run or export (no {runfolder.TASK_FILE} and weights); finish it first "
            f"(`seqtune train --resume --output {folder}`)"
        )
    return folder


def _card_for(folder: Path, repo_id: str) -> bytes | None:
    """The folder's model card rendered for ``repo_id``; None when the folder has no card of seqtune's."""
    from seqtune.model_card import render_model_card
    from seqtune.run_metrics import read_metrics

    if not (folder / runfolder.MODEL_CARD).is_file() or not (folder / runfolder.METRICS_FILE).is_file():
        return None
    cfg = runfolder.load_run_config(folder)
    return render_model_card(folder, cfg, runfolder.load_task(folder), read_metrics(folder), repo_id).encode()


class _hub_errors:
    """Turns what `huggingface_hub` and the network raise into one line that says what to do."""

    def __init__(self, endpoint: str, repo_id: str, revision: str):
        self.endpoint, self.repo_id, self.revision = endpoint, repo_id, revision

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, (SeqtuneError, KeyboardInterrupt)):
            return False
        raise SeqtuneError(self.message(exc)) from exc

    def message(self, exc: BaseException) -> str:
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        where = f"push to {self.repo_id} at {self.endpoint}"
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, RevisionNotFoundError):
            return f"{where}: revision '{self.revision}' not found; create the branch first or leave out --revision"
        if status in (401, 403):
            return (f"{where}: the token was refused (HTTP {status}); use a token with write access to {self.repo_id} "
                    "(HF_TOKEN or `hf auth login`)")  # fmt: skip
        if isinstance(exc, RepositoryNotFoundError) or status == 404:
            return f"{where}: repository not found (HTTP 404); check OWNER/NAME and that the token may write there"
        if isinstance(exc, HfHubHTTPError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{where}: the Hub answered HTTP {status}: {first}"
        if _is_network_error(exc):
            return f"{where}: cannot reach the Hub ({type(exc).__name__}); check the network or HF_ENDPOINT"
        return f"{where}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def _is_network_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "OSError",
                         "ConnectionError", "TransportError", "OfflineModeIsEnabled"})  # fmt: skip
