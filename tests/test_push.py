"""`seqtune push` and `train --push-to-hub` through the real huggingface_hub client (Xet uploads included) to a local
server that speaks the Hub's API (tests/hub_server.py): what arrives, byte for byte; the card the Hub renders; a
download that predicts exactly as the local run; and every way a push fails as one line."""

from __future__ import annotations

import json

import pytest
from conftest import assert_clean_error, run_cli
from hub_server import LocalHub, isolate_hf_client

REPO = "test-user/tiny-mrpc"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with LocalHub(token="hf_test") as server:
        isolate_hf_client(monkeypatch, tmp_path / "hf-home", endpoint=server.url)
        monkeypatch.setenv("HF_TOKEN", server.token)
        yield server


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """A run folder as `seqtune train` leaves it (checkpoints of a kept evaluation included)."""
    from conftest import make_rows, write_csv

    from seqtune import load_config, train

    root = tmp_path_factory.mktemp("push-run")
    data = write_csv(root / "pairs.csv", make_rows(40, pair=True))
    cfg = load_config(None, [f"model.name={tiny_model_dir}", f"data.train_file={data}", "data.text_pair_column=text2",
                             f"output={root / 'run'}", "quiet=true", "model.max_length=32", "train.epochs=1",
                             "train.keep_checkpoints=1"])  # fmt: skip
    train(cfg)
    return root / "run"


def test_train_push_to_hub_sends_the_run_and_a_download_predicts_the_same(tiny_model_dir, mini_glue, hub, tmp_path,
                                                                          capsys):  # fmt: skip
    from huggingface_hub import ModelCard, snapshot_download
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from seqtune.predict import predict
    from seqtune.push import files_to_push

    out = tmp_path / "mrpc"
    code, stdout, err = run_cli(capsys, "train", "mrpc", "--data-dir", mini_glue, "--model", tiny_model_dir,
                                "--epochs", "1", "--quiet", "--output", out, "--push-to-hub", REPO)  # fmt: skip
    assert code == 0, err
    assert f"to {REPO} (main)" in stdout
    arrived = hub.files(REPO)
    sent = files_to_push(out)
    assert sorted(arrived) == sorted(sent) and "model.safetensors" in sent
    assert not any(p.startswith("checkpoints/") or p == "eval_predictions.npz" for p in arrived)
    for path in sent:
        if path != "README.md":
            assert arrived[path] == (out / path).read_bytes(), path
    assert "model.safetensors" in hub.lfs_files(REPO)  # the weights took the large-file (Xet) path
    assert any("xet-write-token" in path for _, path in hub.requests)

    card = ModelCard(arrived["README.md"].decode())
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    best = json.loads((out / "metrics.json").read_text())["best"]["metrics"]["validation"]
    assert name == REPO and {r.metric_type: r.metric_value for r in results} == {
        k: round(v, 6) for k, v in best.items()
    }
    assert f'model="{REPO}"' in card.text and "## Limitations" in card.text and "## Training procedure" in card.text

    local = snapshot_download(REPO, cache_dir=tmp_path / "download")
    texts, pairs = ["a cat sat on the mat", "the dog ran"], ["a cat was on a mat", "a bird flew"]
    assert predict(local, texts, pairs) == predict(out, texts, pairs)


def test_push_to_a_new_branch_of_a_private_repo(trained, hub, capsys):
    code, stdout, err = run_cli(capsys, "push", trained, "--repo-id", REPO, "--private", "--revision", "v2",
                                "--commit-message", "second try")  # fmt: skip
    assert code == 0, err
    assert hub.repos[REPO]["private"] is True and "v2" in hub.repos[REPO]["branches"]
    assert hub.commits(REPO, "v2")[0]["message"] == "second try"
    assert "model.safetensors" in hub.files(REPO, "v2")


def test_an_onnx_export_folder_is_pushed_too(trained, hub, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from seqtune.export import export_run

    exported = export_run(trained, output=tmp_path / "onnx").output
    code, _, err = run_cli(capsys, "push", exported, "--repo-id", "test-user/tiny-onnx")
    assert code == 0, err
    arrived = hub.files("test-user/tiny-onnx")
    assert arrived["model.onnx"] == (exported / "model.onnx").read_bytes() and "export.json" in arrived


@pytest.mark.parametrize(
    "setup, message",
    [
        ("offline", "push: HF_HUB_OFFLINE is set, so nothing may reach"),
        ("no-token", "push: no Hugging Face token; set HF_TOKEN or run `hf auth login`"),
        ("bad-token", f"push to {REPO} at http://127.0.0.1:"),
        ("unreachable", f"push to {REPO} at http://127.0.0.1:9: cannot reach the Hub"),
        ("bad-repo-id", "--repo-id no-owner: expected OWNER/NAME"),
    ],
)
def test_a_push_that_cannot_happen_is_one_line_and_leaves_nothing(setup, message, trained, hub, monkeypatch, capsys):
    import huggingface_hub.constants as constants

    repo = "no-owner" if setup == "bad-repo-id" else REPO
    if setup == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    elif setup == "no-token":
        monkeypatch.delenv("HF_TOKEN")
    elif setup == "bad-token":
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    elif setup == "unreachable":
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    code, _, err = run_cli(capsys, "push", trained, "--repo-id", repo)
    line = assert_clean_error(code, err, message)
    if setup == "bad-token":
        assert "the token was refused (HTTP 401)" in line
    assert hub.repos == {}  # nothing created, nothing half-pushed


def test_train_checks_the_push_before_training(tiny_model_dir, mini_glue, hub, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    out = tmp_path / "never"
    code, _, err = run_cli(capsys, "train", "mrpc", "--data-dir", mini_glue, "--model", tiny_model_dir,
                           "--output", out, "--push-to-hub", REPO)  # fmt: skip
    assert_clean_error(code, err, "the token was refused (HTTP 401)")
    assert not out.exists()  # refused before a minute of training was spent


def test_an_unfinished_run_is_not_pushed(trained, hub, tmp_path, capsys):
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.yaml").write_text((trained / "config.yaml").read_text())
    code, _, err = run_cli(capsys, "push", half, "--repo-id", REPO)
    assert_clean_error(code, err, f"{half}: not a finished run or export")
