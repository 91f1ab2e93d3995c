"""Loading nothing unsafe: safetensors only unless --allow-pickle, weights_only=True always, no remote code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_bert, write_csv
from safetensors.torch import load_file

from seqtune import cli, load_config
from seqtune.errors import SeqtuneError
from seqtune.modeling import load_model, resolve_model
from seqtune.predict import load_run, predict
from seqtune.tasks import get_task
from seqtune.training import train


class Payload:
    """Unpickling this creates ``marker``: the proof that a pickle file ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def to_pickle_weights(folder: Path) -> Path:
    """Turn a save_pretrained folder into a legacy one: ``pytorch_model.bin`` (pickle) and no safetensors."""
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.fixture(scope="module")
def bin_model_dir(tmp_path_factory) -> Path:
    return to_pickle_weights(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-bin")))


def _one_line_refusal(message: str, path: Path) -> None:
    assert "\n" not in message.strip()
    assert str(path / "pytorch_model.bin") in message
    assert "--allow-pickle" in message


def test_pickle_only_model_folder_is_refused(bin_model_dir):
    with pytest.raises(SeqtuneError) as info:
        resolve_model(str(bin_model_dir))
    _one_line_refusal(str(info.value), bin_model_dir)
    # load_model on its own refuses too (transformers is told use_safetensors=True)
    with pytest.raises(SeqtuneError, match="--allow-pickle"):
        load_model(str(bin_model_dir), get_task("sst2"))
    # --from-scratch reads no weights, so there is nothing to refuse
    assert resolve_model(str(bin_model_dir), need_weights=False) == str(bin_model_dir)


def test_allow_pickle_loads_the_same_weights_with_weights_only(bin_model_dir, tiny_model_dir, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = resolve_model(str(bin_model_dir), allow_pickle=True)
    model = load_model(path, get_task("sst2"), allow_pickle=True)
    assert calls and all(w is True for w in calls)  # transformers reads the .bin with weights_only=True
    reference = load_model(str(tiny_model_dir), get_task("sst2"))
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.state_dict()[key], reference.state_dict()[key])


def test_allow_pickle_still_refuses_code_in_the_pickle(tmp_path):
    folder = build_tiny_bert(tmp_path / "evil")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    torch.save({"weights": Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(SeqtuneError, match="refused to load the pickle weights"):
        load_model(str(folder), get_task("sst2"), allow_pickle=True)
    assert not marker.exists()


def test_cli_refuses_then_accepts_with_allow_pickle(bin_model_dir, tmp_path, capsys):
    from conftest import make_rows

    data = write_csv(tmp_path / "toy.csv", make_rows(48))
    args = ["train", "--train-file", str(data), "--model", str(bin_model_dir), "--max-length", "32",
            "--max-steps", "2", "--output", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("seqtune: error: ")
    _one_line_refusal(err, bin_model_dir)
    assert not (tmp_path / "run").exists()  # nothing written
    assert cli.main([*args, "--allow-pickle"]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()  # seqtune itself always writes safetensors


def test_load_run_refuses_a_pickle_only_run_folder(tiny_model_dir, tmp_path, capsys):
    from conftest import make_rows

    data = write_csv(tmp_path / "toy.csv", make_rows(48))
    run = tmp_path / "run"
    train(load_config(None, [f"model.name={tiny_model_dir}", f"output={run}", "quiet=true",
                             "model.max_length=32", f"data.train_file={data}", "train.max_steps=2"]))  # fmt: skip
    before = predict(run, "a happy cat")
    to_pickle_weights(run)
    with pytest.raises(SeqtuneError) as info:
        load_run(run)
    _one_line_refusal(str(info.value), run)
    assert cli.main(["predict", str(run), "--text", "a happy cat"]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert predict(load_run(run, allow_pickle=True), "a happy cat") == before
    assert cli.main(["predict", str(run), "--text", "a happy cat", "--allow-pickle"]) == 0


def test_checkpoint_with_pickled_code_is_refused_not_run(tiny_model_dir, tmp_path):
    from conftest import make_rows

    data = write_csv(tmp_path / "toy.csv", make_rows(48))
    out = tmp_path / "run"
    overrides = [f"model.name={tiny_model_dir}", f"output={out}", "quiet=true", "model.max_length=32",
                 f"data.train_file={data}", "train.batch_size=8"]  # fmt: skip
    train(load_config(None, overrides), stop_after_steps=2)
    checkpoint = out / "checkpoints" / "step-2"
    marker = tmp_path / "code-ran"
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    state["extra"] = Payload(marker)
    torch.save(state, checkpoint / "optimizer.pt")
    with pytest.raises(SeqtuneError) as info:
        train(load_config(None, [*overrides, "resume=true"]))
    message = str(info.value)
    assert "\n" not in message
    assert str(checkpoint / "optimizer.pt") in message and "refused to load" in message
    assert not marker.exists()


def test_trust_remote_code_is_off_by_default(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from seqtune.config import ModelConfig

    assert ModelConfig().trust_remote_code is False and ModelConfig().allow_pickle is False
    seen = {}
    real = AutoModelForSequenceClassification.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", spy)
    load_model(str(tiny_model_dir), get_task("sst2"))
    assert seen["trust_remote_code"] is False
    assert seen["use_safetensors"] is True and seen["weights_only"] is True


def test_copy_of_safe_folder_with_extra_bin_prefers_safetensors(tiny_model_dir, tmp_path):
    """A folder with both files loads the safetensors one and never touches the pickle."""
    folder = tmp_path / "both"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    assert resolve_model(str(folder)) == str(folder)
    load_model(str(folder), get_task("sst2"))
