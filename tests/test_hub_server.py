"""tests/hub_server.py against the real client only (huggingface_hub + hf_xet, no seqtune code), on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest
from hub_server import LocalHub, isolate_hf_client

TOKEN = "hf_local_test_token"
REPO = "test-user/tiny"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running LocalHub; the client's caches, token file and hf_xet files live under tmp_path."""
    isolate_hf_client(monkeypatch, tmp_path / "hf-home")
    with LocalHub(token=TOKEN) as running:
        state = running.cas_dir.parent
        yield running
    assert not state.exists()  # the hub deleted its temp folder


def api(hub: LocalHub, token: str | bool = TOKEN):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=token)


@pytest.fixture
def folder(tmp_path) -> Path:
    """A model folder: ~20 MB of random weights, small text files, and checkpoints/ to be left out."""
    root = tmp_path / "model"
    (root / "checkpoints" / "step-1").mkdir(parents=True)
    (root / "tokenizer").mkdir()
    (root / "model.safetensors").write_bytes(os.urandom(20_000_000))
    (root / "config.json").write_text(json.dumps({"hidden_size": 32, "labels": ["neg", "pos"]}))
    (root / "README.md").write_text("---\nlicense: mit\nlibrary_name: transformers\n---\n# tiny\n")
    (root / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (root / "checkpoints" / "step-1" / "optimizer.pt").write_bytes(os.urandom(1000))
    (root / "checkpoints" / "notes.txt").write_text("not uploaded")
    return root


def expected_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith("checkpoints/")
    }


def downloaded(folder: str | Path) -> dict[str, bytes]:
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


def upload(hub: LocalHub, folder: Path, revision: str | None = None, message: str = "Upload model"):
    return api(hub).upload_folder(
        folder_path=folder,
        repo_id=REPO,
        revision=revision,
        commit_message=message,
        ignore_patterns=["checkpoints/*"],
    )


def test_whoami_with_the_token_and_401_without(hub):
    from huggingface_hub.errors import HfHubHTTPError

    me = api(hub).whoami()
    assert me["name"] == "test-user" and me["type"] == "user"
    with pytest.raises(HfHubHTTPError) as err:
        api(hub, "hf_wrong").whoami()
    assert err.value.response.status_code == 401
    anonymous = httpx.get(f"{hub.url}/api/whoami-v2")
    assert anonymous.status_code == 401 and "error" in anonymous.json()
    assert hub.requests == [("GET", "/api/whoami-v2")] * 3


def test_create_repo_twice_with_exist_ok(hub):
    from huggingface_hub.errors import HfHubHTTPError

    first = api(hub).create_repo(REPO, private=True, exist_ok=True)
    second = api(hub).create_repo(REPO, private=True, exist_ok=True)
    assert first.repo_id == second.repo_id == REPO
    assert hub.requests.count(("POST", "/api/repos/create")) == 2
    assert hub.repos[REPO]["private"] is True and list(hub.repos[REPO]["branches"]) == ["main"]
    with pytest.raises(HfHubHTTPError) as err:
        api(hub).create_repo(REPO)
    assert err.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError) as err:
        api(hub, "hf_wrong").create_repo("test-user/other")
    assert err.value.response.status_code == 401
    assert list(hub.repos) == [REPO]


def test_upload_folder_goes_through_xet_and_snapshot_download_gives_the_same_bytes(hub, folder, tmp_path):
    import hf_xet
    from huggingface_hub import hf_hub_download, snapshot_download

    api(hub).create_repo(REPO, exist_ok=True)
    info = upload(hub, folder)
    want = expected_files(folder)
    assert set(want) == {"README.md", "config.json", "model.safetensors", "tokenizer/vocab.txt"}

    head = hub.repos[REPO]["branches"]["main"]
    assert info.oid == head
    assert hub.commits(REPO)[0]["message"] == "Upload model"
    assert hub.files(REPO) == want  # the weights rebuilt from the local Xet CAS
    lfs = hub.lfs_files(REPO)
    assert list(lfs) == ["model.safetensors"]  # the text files went in the commit body
    assert lfs["model.safetensors"]["size"] == 20_000_000
    assert lfs["model.safetensors"]["xet_hash"] == hf_xet.hash_files([str(folder / "model.safetensors")])[0].hash
    calls = hub.requests
    for call in (
        ("POST", "/api/validate-yaml"),
        ("POST", f"/api/models/{REPO}/preupload/main"),
        ("GET", f"/api/models/{REPO}/xet-write-token/main"),
        ("POST", f"/api/models/{REPO}/commit/main"),
    ):
        assert call in calls
    assert not any("checkpoints" in path or ".git/info/lfs" in path for _, path in calls)
    assert list(hub.cas_dir.rglob("*.mdb")) and list(hub.cas_dir.rglob("xorbs/*"))

    hub.clear_requests()
    snap = snapshot_download(REPO, revision="main", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache-1")
    assert Path(snap).name == head
    assert downloaded(snap) == want
    calls = hub.requests
    assert ("GET", f"/api/models/{REPO}/xet-read-token/{head}") in calls
    assert ("GET", f"/{REPO}/resolve/{head}/model.safetensors") not in calls  # the weights came through Xet
    assert ("GET", f"/{REPO}/resolve/{head}/config.json") in calls

    hub.clear_requests()
    one = hf_hub_download(REPO, "model.safetensors", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache-2")
    assert Path(one).read_bytes() == want["model.safetensors"]
    assert hub.requests[0] == ("HEAD", f"/{REPO}/resolve/main/model.safetensors")
    assert ("GET", f"/{REPO}/resolve/main/model.safetensors") not in hub.requests

    plain = httpx.get(f"{hub.url}/{REPO}/resolve/main/model.safetensors")  # a client without hf_xet
    assert plain.status_code == 200 and plain.content == want["model.safetensors"]
    assert api(hub).list_repo_files(REPO) == sorted(want)
    assert [s.rfilename for s in api(hub).model_info(REPO).siblings] == sorted(want)


def test_a_second_branch_has_its_own_files(hub, folder, tmp_path):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RevisionNotFoundError

    api(hub).create_repo(REPO)
    upload(hub, folder)
    with pytest.raises(RevisionNotFoundError):
        upload(hub, folder, revision="v2")  # the branch must exist first, as on the Hub
    api(hub).create_branch(REPO, branch="v2")
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "extra.txt").write_text("only on v2")
    upload(hub, folder, revision="v2", message="v2 config")

    branches = hub.repos[REPO]["branches"]
    assert set(branches) == {"main", "v2"} and branches["main"] != branches["v2"]
    assert {ref.name for ref in api(hub).list_repo_refs(REPO).branches} == {"main", "v2"}
    assert hub.files(REPO, revision="v2") == expected_files(folder)
    assert "extra.txt" not in hub.files(REPO, revision="main")
    assert [c["message"] for c in hub.commits(REPO, revision="v2")] == ["v2 config", "Upload model", "initial commit"]

    snap = snapshot_download(REPO, revision="v2", endpoint=hub.url, token=TOKEN, local_dir=tmp_path / "v2")
    assert downloaded(snap) == expected_files(folder)


def test_unknown_repos_and_files_are_404s_the_client_understands(hub, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        api(hub).model_info("test-user/missing")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("test-user/missing", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")
    with pytest.raises(RepositoryNotFoundError):
        api(hub).upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="test-user/missing")
    response = httpx.get(f"{hub.url}/api/models/test-user/missing")
    assert response.status_code == 404 and response.headers["X-Error-Code"] == "RepoNotFound"

    api(hub).create_repo(REPO)
    api(hub).upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=REPO)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.txt", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")
    with pytest.raises(RevisionNotFoundError):
        api(hub).list_repo_files(REPO, revision="nope")

    api(hub).create_repo("test-user/secret", private=True)
    with pytest.raises(RepositoryNotFoundError):
        api(hub, False).model_info("test-user/secret")
    assert api(hub).model_info("test-user/secret").private is True


def test_every_write_needs_the_token_and_lfs_files_must_have_been_uploaded(hub):
    api(hub).create_repo(REPO)
    base = f"{hub.url}/api/models/{REPO}"
    header = json.dumps({"key": "header", "value": {"summary": "x", "description": ""}})
    regular = json.dumps({"key": "file", "value": {"path": "a.txt", "content": "aGk=", "encoding": "base64"}})
    writes = [
        ("POST", f"{hub.url}/api/repos/create", {"json": {"name": "other"}}),
        ("POST", f"{base}/preupload/main", {"json": {"files": []}}),
        ("GET", f"{base}/xet-write-token/main", {}),
        ("POST", f"{base}/commit/main", {"content": f"{header}\n{regular}\n"}),
        ("POST", f"{base}/branch/dev", {"json": {}}),
    ]
    for method, url, kwargs in writes:
        for headers in ({}, {"Authorization": "Bearer hf_wrong"}):
            response = httpx.request(method, url, headers=headers, **kwargs)
            assert response.status_code == 401, (method, url, headers)
    assert hub.repos[REPO]["branches"].keys() == {"main"} and hub.files(REPO) == {}

    auth = {"Authorization": f"Bearer {TOKEN}"}
    token = httpx.get(f"{base}/xet-write-token/main", headers=auth).json()
    assert token["casUrl"] == f"local://{hub.cas_dir}" and token["accessToken"] and token["exp"] > 0
    modes = httpx.post(
        f"{base}/preupload/main",
        headers=auth,
        json={"files": [{"path": "w.bin", "size": 10, "sample": base64.b64encode(b"\0" * 10).decode()}]},
    )
    assert modes.json()["files"][0]["uploadMode"] == "lfs"
    ghost = json.dumps({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "ab" * 32, "size": 10}})
    response = httpx.post(f"{base}/commit/main", headers=auth, content=f"{header}\n{ghost}\n")
    assert response.status_code == 422 and "was not uploaded" in response.json()["error"]
    response = httpx.post(f"{base}/commit/main", headers=auth, content=f"{header}\n{regular}\n")
    assert response.status_code == 200 and response.json()["pullRequestUrl"] is None
    assert hub.files(REPO) == {"a.txt": b"hi"}


def test_isolate_with_an_endpoint_makes_the_default_client_talk_to_the_hub(hub, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, get_token, hf_hub_download

    isolate_hf_client(monkeypatch, tmp_path / "hf-home-2", endpoint=hub.url)
    assert get_token() is None  # no token of the user's leaks in
    client = HfApi(token=TOKEN)  # no endpoint= : the patched default
    client.create_repo(REPO)
    with pytest.warns(UserWarning, match="missing yaml metadata"):  # as the Hub says of a card without metadata
        client.upload_file(path_or_fileobj=b"card", path_in_repo="README.md", repo_id=REPO)
    path = hf_hub_download(REPO, "README.md", token=TOKEN, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == b"card"
    assert ("POST", f"/api/models/{REPO}/commit/main") in hub.requests
