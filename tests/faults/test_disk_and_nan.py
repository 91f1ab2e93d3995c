"""Disk full while saving and a non-finite loss: a one-line error, and the last good checkpoint kept intact."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from conftest import write_csv
from safetensors.torch import load_file

from seqtune import checkpoint as ckpt
from seqtune import load_config
from seqtune.errors import SeqtuneError
from seqtune.training import train


def _cfg(model: Path, out: Path, *extra: str):
    return load_config(None, [f"model.name={model}", f"output={out}", "quiet=true", "model.max_length=32", *extra])


COMMON = ("train.batch_size=8", "train.eval_every=2", "train.lr=1e-3", "train.keep_checkpoints=2", "train.max_steps=8")


def _no_leftovers(out: Path) -> None:
    root = out / ckpt.CHECKPOINTS
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert not list((root / "best").glob("*.tmp"))


def _all_finite(path: Path) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(path).values())


@pytest.mark.parametrize("target", ["checkpoint", "best"])
def test_disk_full_stops_with_one_line_and_keeps_the_last_checkpoint(tiny_model_dir, toy_csv, tmp_path, monkeypatch,
                                                                     target):  # fmt: skip
    """The 2nd resumable checkpoint (step-4), or the best model after step-1 was saved, hits a full disk."""
    out = tmp_path / "run"
    cfg = _cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", *COMMON)
    if target == "best":
        train(cfg, stop_after_steps=1)  # leaves checkpoints/step-1; the next save is the best model at step 2
        cfg = _cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", "resume=true")
    real_save = ckpt.save_model
    calls = []

    def full_disk(model, filename, *args, **kwargs):
        calls.extend([filename] if ".tmp-step-" in filename else [])  # resumable checkpoints, not the best model
        if len(calls) == 2 or target == "best":
            real_save(model, filename, *args, **kwargs)  # the file is left behind, as a real full disk would
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(model, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_model", full_disk)
    with pytest.raises(SeqtuneError) as info:
        train(cfg)
    message = str(info.value)
    kept = out / "checkpoints" / ("step-2" if target == "checkpoint" else "step-1")
    failed = out / "checkpoints" / ("step-4" if target == "checkpoint" else "best")
    assert "\n" not in message
    assert message.startswith(f"{failed}: cannot save the checkpoint: no space left on device; ")
    assert f"the last complete checkpoint {kept} is intact" in message
    assert "Free some disk space" in message and "--output" in message
    _no_leftovers(out)
    assert ckpt.latest_checkpoint(out) == kept
    # the kept checkpoint is complete: resuming from it (with room on the disk again) finishes the run
    monkeypatch.setattr(ckpt, "save_model", real_save)
    assert train(_cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", "resume=true")).completed


def test_nan_loss_stops_before_the_optimizer_step(tiny_model_dir, toy_csv, tmp_path, monkeypatch):
    """Loss goes NaN at step 7: stop there, name the step and the kept checkpoint, leave no NaN anywhere."""
    import seqtune.training as training

    real_loss = training.loss_sum
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 7 else loss

    monkeypatch.setattr(training, "loss_sum", poisoned)
    out = tmp_path / "run"
    with pytest.raises(SeqtuneError) as info:
        train(_cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", *COMMON))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("step 7: loss is nan; the last good checkpoint is kept in ")
    assert str(out / "checkpoints" / "step-6") in message
    assert "--lr" in message and "--precision fp32" in message and "regression targets" in message
    assert ckpt.latest_checkpoint(out) == out / "checkpoints" / "step-6"
    assert _all_finite(out / "checkpoints" / "step-6" / "model.safetensors")
    assert _all_finite(out / "checkpoints" / "best" / "model.safetensors")
    assert json.loads((out / "checkpoints" / "step-6" / "state.json").read_text())["step"] == 6
    assert not (out / "task.json").exists()
    monkeypatch.setattr(training, "loss_sum", real_loss)
    assert train(_cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", "resume=true")).completed


def test_regression_targets_out_of_range_give_an_inf_loss_error(tiny_model_dir, tmp_path):
    from conftest import make_rows

    rows = [{"text": r["text"], "score": 1e30 if i % 2 else -1e30 + 0.5} for i, r in enumerate(make_rows(48))]
    data = write_csv(tmp_path / "huge.csv", rows)
    out = tmp_path / "run"
    # model.prior_init=false: by default the head trains in units of the targets' spread, where these train
    cfg = _cfg(tiny_model_dir, out, f"data.train_file={data}", "data.label_column=score",
               "data.problem_type=regression", "train.batch_size=8", "model.prior_init=false")  # fmt: skip
    with pytest.raises(SeqtuneError, match=r"^step 1: loss is inf; no checkpoint was saved before it; likely causes"):
        train(cfg)


def test_real_write_errors_are_caught_whichever_writer_fails(tiny_model_dir, tmp_path):
    """A real OS write failure (a file-size limit: EFBIG) inside safetensors and inside torch.save is reported in
    one line, cleans up, and keeps the checkpoint before it."""
    import resource
    import signal

    from safetensors import SafetensorError

    from seqtune.modeling import load_model
    from seqtune.tasks import get_task

    model = load_model(str(tiny_model_dir), get_task("sst2"))
    optimizer = torch.optim.AdamW(model.parameters())
    model(input_ids=torch.tensor([[101, 102]])).logits.sum().backward()
    optimizer.step()  # optimizer state: twice the model's size
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ckpt.save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"step": 1}, keep=2)
    model_bytes = (tmp_path / "checkpoints" / "step-1" / "model.safetensors").stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        # room for the weights but not the optimizer state (torch.save fails), then not even the weights (safetensors)
        for step, limit in ((2, model_bytes + 4096), (3, model_bytes // 2)):
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
            with pytest.raises(SeqtuneError) as info:
                ckpt.save_checkpoint(tmp_path, step, model, optimizer, scheduler, {"step": step}, keep=2)
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            message = str(info.value)
            assert "\n" not in message
            assert message.startswith(f"{tmp_path / 'checkpoints' / f'step-{step}'}: cannot save the checkpoint (")
            assert "File too large" in message
            assert f"{tmp_path / 'checkpoints' / 'step-1'} is intact" in message
            assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-1"]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    # how a full disk looks through safetensors (Rust io::Error) and through torch.save (OSError as __context__)
    full = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert ckpt.os_error(full) == (errno.ENOSPC, "No space left on device")
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    except RuntimeError as wrapped:
        assert ckpt.os_error(wrapped)[0] == errno.ENOSPC
    assert "no space left on device" in str(ckpt.write_error(tmp_path / "x", full, tmp_path))
