"""A small, real Hugging Face Hub on 127.0.0.1 for tests: FastAPI served by uvicorn in a background thread.

It speaks the HTTP calls that ``huggingface_hub`` 2.4 (with ``hf_xet`` installed) makes for model repos:

- ``whoami`` (GET /api/whoami-v2), ``create_repo`` / ``delete_repo`` (POST /api/repos/create, DELETE /api/repos/delete),
  the README metadata check before an upload (POST /api/validate-yaml);
- ``upload_folder`` / ``upload_file`` / ``create_commit``: preupload (POST .../preupload/{rev}: "lfs" for weight-like
  suffixes, binary samples or files of 10 MiB and more, "regular" otherwise, with the remote oid of unchanged files),
  the Xet write token (GET .../xet-write-token/{rev}), answered with ``casUrl: local://<temp dir>`` so ``hf_xet`` writes
  its xorbs and shards to disk, and the NDJSON commit (POST .../commit/{rev}: file, lfsFile, deletedFile,
  deletedFolder lines). An lfsFile is accepted only when its sha256 is in a shard the client wrote (MDB shard format,
  xet-core ``spec/shard.md``), which also gives the Xet file hash served for downloads;
- ``create_branch`` / ``delete_branch`` (POST/DELETE .../branch/{name}), ``list_repo_refs`` (GET .../refs);
- ``model_info`` / ``repo_info`` (GET /api/models/{id}[/revision/{rev}]), ``list_repo_files`` / ``list_repo_tree``
  (GET .../tree/{rev}[/{path}], one page), ``snapshot_download`` and ``hf_hub_download``: HEAD/GET
  /{id}/resolve/{rev}/{path}. Regular files are served as bytes; LFS files answer with the Xet headers (X-Xet-Hash,
  X-Xet-Refresh-Route to GET .../xet-read-token/{rev}), so ``hf_xet`` rebuilds them from the same local CAS folder.
  A plain GET of an LFS file also works: the server rebuilds the bytes with ``hf_xet`` itself.

Writes need ``Authorization: Bearer <token>`` (401 otherwise); private repos need it for reads too. Errors carry the
``X-Error-Code`` / ``X-Error-Message`` headers and JSON ``{"error": ...}`` bodies the client maps to
``RepositoryNotFoundError``, ``RevisionNotFoundError`` and ``EntryNotFoundError``. Every request is recorded.

It does not speak: dataset/space repos, pull requests (``create_pr``), tags, the legacy LFS batch upload (a client
without ``hf_xet``), ``.gitignore`` rules in preupload, pagination, gated repos, or branch names holding ``/``. A new
repo starts with an empty initial commit (no ``.gitattributes``). State lives in memory and in one temp folder.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import shutil
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.onnx_data", "*.msgpack", "*.npy",
    "*.npz", "*.pkl", "*.pickle", "*.joblib", "*.model", "*.ot", "*.tflite", "*.arrow", "*.parquet", "*.zip", "*.gz",
    "*.tar", "*.tgz", "*.xz", "*.zst", "*.7z", "*.bz2", "*.gguf", "*tfevents*",
)  # fmt: skip
LFS_MIN_SIZE = 10 * 1024 * 1024
XET_TOKEN_SECONDS = 3600

_SHARD_TAG = bytes.fromhex("48465265706f4d6574614461746100556967456a7b815783a5bdd95ccdd14aa9")
_RECORD = 48
_WITH_VERIFICATION = 1 << 31
_WITH_METADATA_EXT = 1 << 30


def _merkle_hex(raw: bytes) -> str:
    """A xet-core hash ([u64; 4], little endian) as the hex string the client uses: each u64 printed big-endian."""
    return "".join(raw[i : i + 8][::-1].hex() for i in range(0, 32, 8))


def parse_shard(data: bytes) -> list[tuple[str, str | None, int]]:
    """The File Info section of an MDB shard: (xet file hash, sha256 or None, size) per file."""
    if len(data) < _RECORD or data[:32] != _SHARD_TAG:
        return []
    files, off = [], _RECORD
    while off + _RECORD <= len(data):
        if data[off : off + 32] == b"\xff" * 32:  # bookend
            break
        flags, n = struct.unpack_from("<II", data, off + 32)
        file_hash = _merkle_hex(data[off : off + 32])
        size = sum(struct.unpack_from("<I", data, off + _RECORD * (1 + i) + 36)[0] for i in range(n))
        off += _RECORD * (1 + n)
        if flags & _WITH_VERIFICATION:
            off += _RECORD * n
        sha256 = None
        if flags & _WITH_METADATA_EXT:
            sha256 = _merkle_hex(data[off : off + 32])
            off += _RECORD
        if off > len(data):  # truncated (a shard being written)
            break
        files.append((file_hash, sha256, size))
    return files


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Blob:
    """A file in a commit: ``data`` for a regular file, or ``sha256`` + ``xet_hash`` for an LFS (Xet) file."""

    size: int
    data: bytes | None = None
    sha256: str | None = None
    xet_hash: str | None = None

    @property
    def lfs(self) -> bool:
        return self.data is None

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @property
    def oid(self) -> str:
        """Git blob id: of the bytes, or of the LFS pointer file."""
        return git_blob_sha1(self.pointer if self.lfs else self.data)


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    description: str
    files: dict[str, Blob]
    date: str = field(default_factory=_now)


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    created: str = field(default_factory=_now)


class HubError(Exception):
    """An HTTP error answered the way the Hub does (status, JSON body, X-Error-* headers)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, body=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.body = headers or {}, body or {}

    def response(self) -> JSONResponse:
        headers = {"X-Error-Message": self.message.encode("ascii", "backslashreplace").decode(), **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return JSONResponse({"error": self.message, **self.body}, status_code=self.status, headers=headers)


def _repo_not_found(repo_id: str, status: int = 404) -> HubError:
    return HubError(status, f"Repository Not Found: {repo_id}", "RepoNotFound")


class _Recorder:
    """ASGI wrapper that records (method, path) of every HTTP request."""

    def __init__(self, app, log: list, lock: threading.Lock):
        self.app, self.log, self.lock = app, log, lock

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            with self.lock:
                self.log.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


class LocalHub:
    """A Hub on a free loopback port while the ``with`` block runs; its temp folder is deleted on exit.

    ``token`` is the one valid token (user ``user``, member of ``orgs``). ``hub.url`` is the endpoint to pass to the
    client; ``hub.files(repo_id, revision)`` gives the bytes that arrived (LFS files rebuilt from the Xet CAS);
    ``hub.repos`` and ``hub.requests`` show the state and the (method, path) of every request.
    """

    def __init__(self, token: str = "hf_test", user: str = "test-user", orgs: tuple[str, ...] = ()):
        self.token, self.user, self.orgs = token, user, tuple(orgs)
        self.url = ""
        self._repos: dict[str, Repo] = {}
        self._requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._log_lock = threading.Lock()
        self._blob_lock = threading.Lock()
        self._shards: dict[Path, tuple[float, int, list]] = {}
        self._xet_index: dict[str, tuple[str, int]] = {}  # sha256 -> (xet hash, size)
        self._xet_session = None
        self._tmp: Path | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalHub:
        import uvicorn

        self._tmp = Path(tempfile.mkdtemp(prefix="localhub-"))
        self.cas_dir.mkdir()
        (self._tmp / "blobs").mkdir()
        app = _Recorder(build_app(self), self._requests, self._log_lock)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="localhub", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._cleanup()
                raise RuntimeError("LocalHub: uvicorn did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._cleanup()

    def _cleanup(self) -> None:
        self._xet_session = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def cas_dir(self) -> Path:
        """The folder behind ``local://``: hf_xet writes xorbs and shards under ``cas_dir/xet``."""
        assert self._tmp is not None, "LocalHub is not running"
        return self._tmp / "cas"

    @property
    def cas_url(self) -> str:
        return f"local://{self.cas_dir}"

    # -- test API --------------------------------------------------------------------------------------------------

    @property
    def repos(self) -> dict[str, dict]:
        """repo_id -> {"private": bool, "branches": {name: commit oid}} (a copy)."""
        with self._lock:
            return {rid: {"private": r.private, "branches": dict(r.branches)} for rid, r in self._repos.items()}

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far, in order (a copy)."""
        with self._log_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def commits(self, repo_id: str, revision: str = "main") -> list[dict]:
        """History of ``revision``, newest first: oid, message, description, sorted file paths."""
        with self._lock:
            repo = self._repo(repo_id)
            out, oid = [], self._resolve(repo, revision)
            while oid is not None:
                c = repo.commits[oid]
                out.append({"oid": c.oid, "message": c.message, "description": c.description, "files": sorted(c.files)})
                oid = c.parent
            return out

    def lfs_files(self, repo_id: str, revision: str = "main") -> dict[str, dict]:
        """The LFS (Xet) files of ``revision``: path -> {"sha256", "size", "xet_hash"}."""
        with self._lock:
            repo = self._repo(repo_id)
            files = repo.commits[self._resolve(repo, revision)].files
        return {p: {"sha256": b.sha256, "size": b.size, "xet_hash": b.xet_hash} for p, b in files.items() if b.lfs}

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """path -> bytes at ``revision``; LFS files are rebuilt from the local Xet CAS (and checked by sha256)."""
        with self._lock:
            repo = self._repo(repo_id)
            files = dict(repo.commits[self._resolve(repo, revision)].files)
        return {p: (self._blob_path(b).read_bytes() if b.lfs else b.data) for p, b in sorted(files.items())}

    # -- state helpers (server side) -------------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _repo_not_found(repo_id)
        return repo

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_commit(self, repo: Repo, parent: str | None, message: str, description: str, files: dict) -> Commit:
        seed = f"{repo.repo_id}\0{parent}\0{message}\0{uuid.uuid4()}".encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), parent, message, description, files)
        repo.commits[commit.oid] = commit
        return commit

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self.token}"

    def _require_token(self, request: Request) -> None:
        auth = request.headers.get("authorization")
        if not auth:
            raise HubError(401, "Invalid username or password.")
        if auth != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def _readable(self, request: Request, repo_id: str) -> Repo:
        """The repo, if it exists and the caller may read it (private repos need the token)."""
        repo = self._repo(repo_id)
        if repo.private and not self._authorized(request):
            raise _repo_not_found(repo_id, 401 if not request.headers.get("authorization") else 404)
        return repo

    def _writable(self, request: Request, repo_id: str) -> Repo:
        self._require_token(request)
        return self._repo(repo_id)

    def _branch(self, repo: Repo, revision: str) -> str:
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return revision

    def _xet_lookup(self, sha256: str) -> tuple[str, int] | None:
        """(xet hash, size) of a file uploaded to the local CAS, from the shards (*.mdb) the client wrote."""
        if sha256 not in self._xet_index:
            for path in sorted(self.cas_dir.rglob("*.mdb")):
                try:
                    stat = path.stat()
                    key = (stat.st_mtime, stat.st_size)
                    if self._shards.get(path, (None, None))[:2] == key:
                        continue
                    entries = parse_shard(path.read_bytes())
                except OSError:
                    continue
                self._shards[path] = (*key, entries)
                for xet_hash, sha, size in entries:
                    if sha is not None:
                        self._xet_index[sha] = (xet_hash, size)
        return self._xet_index.get(sha256)

    def _blob_path(self, blob: Blob) -> Path:
        """An LFS file's bytes on disk, rebuilt once from the local CAS with hf_xet."""
        assert self._tmp is not None
        path = self._tmp / "blobs" / blob.sha256
        with self._blob_lock:
            if not path.exists():
                import hf_xet

                if self._xet_session is None:  # our own session, without a chunk cache
                    self._xet_session = hf_xet.XetSession(hf_xet.XetConfig().with_config("chunk_cache.size_bytes", 0))
                part = path.with_suffix(".part")
                with self._xet_session.new_file_download_group(
                    endpoint=self.cas_url, token="local", token_expiry_unix_secs=int(time.time()) + XET_TOKEN_SECONDS
                ) as group:
                    group.start_download_file(hf_xet.XetFileInfo(blob.xet_hash, blob.size), str(part))
                digest = hashlib.sha256(part.read_bytes()).hexdigest()
                if digest != blob.sha256:
                    part.unlink()
                    raise RuntimeError(f"LocalHub: rebuilt {blob.sha256} from Xet but got sha256 {digest}")
                part.rename(path)
        return path

    def _xet_token(self) -> JSONResponse:
        """A Xet token for the local CAS, as JSON (read by hf_xet) and as headers (read by huggingface_hub)."""
        token, exp = f"xet-local-{uuid.uuid4().hex}", int(time.time()) + XET_TOKEN_SECONDS
        headers = {"X-Xet-Cas-Url": self.cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)}
        return JSONResponse({"casUrl": self.cas_url, "accessToken": token, "exp": exp}, headers=headers)


def isolate_hf_client(monkeypatch, home: Path, endpoint: str | None = None) -> None:
    """Point an in-process ``huggingface_hub`` client at nothing but ``home`` and let it go online (to LocalHub).

    ``huggingface_hub.constants`` reads the environment at import time (and tests/conftest.py sets
    ``HF_HUB_OFFLINE=1`` first), so both the variables and the constants are patched. ``hf_xet`` reads
    ``HF_HOME`` / ``HF_XET_CACHE`` when a session is created. With ``endpoint`` (e.g. ``hub.url``) the client's
    default endpoint is patched too; without it, pass ``endpoint=hub.url`` to every client call.
    """
    import huggingface_hub.constants as constants

    paths = {
        "HF_HOME": home,
        "HF_HUB_CACHE": home / "hub",
        "HF_XET_CACHE": home / "xet",
        "HF_TOKEN_PATH": home / "token",
    }
    for key, value in paths.items():
        monkeypatch.setenv(key, str(value))
        monkeypatch.setattr(constants, key, str(value))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(home / "assets"))
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_ENDPOINT", "HF_HUB_DISABLE_XET"):
        monkeypatch.delenv(key, raising=False)
    if endpoint is not None:
        endpoint = endpoint.rstrip("/")
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    name = path.rsplit("/", 1)[-1]
    return size >= LFS_MIN_SIZE or b"\0" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


def _tree_entries(files: dict[str, Blob], path: str, recursive: bool) -> list[dict]:
    """The /tree listing of ``path`` (directories first, then files)."""
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    dirs, entries = set(), []
    for p, blob in sorted(files.items()):
        if not p.startswith(prefix):
            continue
        parts = p[len(prefix) :].split("/")
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            dirs.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": p}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
                entry["xetHash"] = blob.xet_hash
            entries.append(entry)
    folders = [{"type": "directory", "oid": git_blob_sha1(d.encode()), "size": 0, "path": d} for d in sorted(dirs)]
    return folders + entries


def build_app(hub: LocalHub) -> FastAPI:
    """The FastAPI app behind ``hub`` (handlers are sync: they run in the threadpool, under ``hub._lock``)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    models = "/api/models/{ns}/{name}"

    @app.exception_handler(HubError)
    async def _hub_error(request: Request, exc: HubError) -> JSONResponse:
        return exc.response()

    @app.get("/api/whoami-v2")
    def whoami(request: Request):
        hub._require_token(request)
        return {
            "type": "user",
            "id": hashlib.sha1(hub.user.encode()).hexdigest()[:24],
            "name": hub.user,
            "fullname": hub.user,
            "email": f"{hub.user}@localhost",
            "emailVerified": True,
            "canPay": False,
            "isPro": False,
            "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "write"} for org in hub.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        }

    @app.post("/api/repos/create")
    async def create_repo(request: Request):
        payload = await request.json()
        return _create_repo(request, payload)

    def _create_repo(request: Request, payload: dict):
        hub._require_token(request)
        if payload.get("type", "model") != "model":
            raise HubError(400, "LocalHub only hosts model repos")
        namespace = payload.get("organization") or hub.user
        if namespace != hub.user and namespace not in hub.orgs:
            raise HubError(403, f"You don't have the rights to create a model under the namespace {namespace!r}")
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{hub.url}/{repo_id}"
        with hub._lock:
            if repo_id in hub._repos:
                raise HubError(409, "You already created this model repo", body={"url": url})
            repo = Repo(repo_id, private=payload.get("visibility") == "private")
            repo.branches["main"] = hub._new_commit(repo, None, "initial commit", "", {}).oid
            hub._repos[repo_id] = repo
        return {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}

    @app.delete("/api/repos/delete")
    async def delete_repo(request: Request):
        payload = await request.json()
        hub._require_token(request)
        repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
        with hub._lock:
            hub._repo(repo_id)
            del hub._repos[repo_id]
        return {}

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request):
        import yaml

        content = (await request.json()).get("content", "")
        if not content.startswith("---"):
            return {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        block = content.split("\n---", 1)[0][3:]
        try:
            meta = yaml.safe_load(block)
        except yaml.YAMLError as err:
            return JSONResponse({"errors": [{"message": f"Invalid YAML: {err}"}]}, status_code=400)
        if meta is not None and not isinstance(meta, dict):
            return JSONResponse({"errors": [{"message": "metadata must be a YAML mapping"}]}, status_code=400)
        return {"errors": [], "warnings": []}

    def _model_info(request: Request, ns: str, name: str, revision: str):
        repo_id = f"{ns}/{name}"
        with hub._lock:
            repo = hub._readable(request, repo_id)
            commit = repo.commits[hub._resolve(repo, revision)]
        blobs = request.query_params.get("blobs") in ("1", "true", "True")
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict = {"rfilename": path}
            if blobs:
                sibling.update(size=blob.size, blobId=blob.oid)
                if blob.lfs:
                    sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
            siblings.append(sibling)
        return {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": ns,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }

    @app.get(models)
    def model_info(request: Request, ns: str, name: str):
        return _model_info(request, ns, name, "main")

    @app.get(models + "/revision/{revision:path}")
    def model_info_revision(request: Request, ns: str, name: str, revision: str):
        return _model_info(request, ns, name, revision)

    @app.get(models + "/tree/{revision}")
    @app.get(models + "/tree/{revision}/{path:path}")
    def tree(request: Request, ns: str, name: str, revision: str, path: str = ""):
        with hub._lock:
            repo = hub._readable(request, f"{ns}/{name}")
            commit = repo.commits[hub._resolve(repo, revision)]
        recursive = request.query_params.get("recursive") in ("1", "true", "True")
        entries = _tree_entries(commit.files, path, recursive)
        if path.strip("/") and not entries:
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        return entries

    @app.get(models + "/refs")
    def refs(request: Request, ns: str, name: str):
        with hub._lock:
            repo = hub._readable(request, f"{ns}/{name}")
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    @app.post(models + "/branch/{branch:path}")
    async def create_branch(request: Request, ns: str, name: str, branch: str):
        body = await request.body()
        payload = json.loads(body) if body else {}
        with hub._lock:
            repo = hub._writable(request, f"{ns}/{name}")
            if branch.startswith("refs/") or "/" in branch or not branch:
                raise HubError(400, f"Invalid reference for a branch: {branch}")
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = hub._resolve(repo, payload.get("startingPoint") or "main")
        return {}

    @app.delete(models + "/branch/{branch:path}")
    def delete_branch(request: Request, ns: str, name: str, branch: str):
        with hub._lock:
            repo = hub._writable(request, f"{ns}/{name}")
            if branch == "main":
                raise HubError(403, "Cannot delete the default branch")
            del repo.branches[hub._branch(repo, branch)]
        return {}

    @app.post(models + "/preupload/{revision:path}")
    async def preupload(request: Request, ns: str, name: str, revision: str):
        payload = await request.json()
        if request.query_params.get("create_pr"):
            raise HubError(400, "LocalHub does not support pull requests (create_pr)")
        with hub._lock:
            repo = hub._writable(request, f"{ns}/{name}")
            commit = repo.commits[repo.branches[hub._branch(repo, revision)]]
        files = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = _is_lfs(path, size, base64.b64decode(item.get("sample", "")))
            remote = commit.files.get(path)
            oid = None
            if remote is not None and remote.lfs == lfs:
                oid = remote.sha256 if remote.lfs else git_blob_sha1(remote.data)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return {"files": files, "commitOid": commit.oid}

    @app.get(models + "/xet-write-token/{revision:path}")
    def xet_write_token(request: Request, ns: str, name: str, revision: str):
        with hub._lock:
            repo = hub._writable(request, f"{ns}/{name}")
            if revision != "None":  # "None": token for a future PR ref
                hub._branch(repo, revision)
        return hub._xet_token()

    @app.get(models + "/xet-read-token/{revision:path}")
    def xet_read_token(request: Request, ns: str, name: str, revision: str):
        with hub._lock:
            repo = hub._readable(request, f"{ns}/{name}")
            hub._resolve(repo, revision)
        return hub._xet_token()

    @app.post(models + "/commit/{revision:path}")
    async def commit(request: Request, ns: str, name: str, revision: str):
        body = await request.body()
        if request.query_params.get("create_pr"):
            raise HubError(400, "LocalHub does not support pull requests (create_pr)")
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError as err:
            raise HubError(400, f"Invalid NDJSON body: {err}") from None
        return _commit(request, f"{ns}/{name}", revision, lines)

    def _commit(request: Request, repo_id: str, revision: str, lines: list[dict]):
        with hub._lock:
            repo = hub._writable(request, repo_id)
            head = repo.branches[hub._branch(repo, revision)]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "The first NDJSON line must be the commit header")
            header = lines[0]["value"]
            parent = header.get("parentCommit")
            if parent is not None and not head.startswith(parent):
                raise HubError(412, f"A commit has happened since {parent}: {revision} is at {head}")
            files = dict(repo.commits[head].files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    content = value.get("content", "")
                    data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    files[path] = Blob(size=len(data), data=data)
                elif key == "lfsFile":
                    files[path] = _lfs_blob(repo, value)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"File not found: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    gone = [p for p in files if p.startswith(prefix)]
                    if not gone:
                        raise HubError(404, f"Folder not found: {path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            new = hub._new_commit(repo, head, header.get("summary", ""), header.get("description", ""), files)
            repo.branches[revision] = new.oid
        return {
            "success": True,
            "commitOid": new.oid,
            "commitUrl": f"{hub.url}/{repo_id}/commit/{new.oid}",
            "commitMessage": new.message,
            "pullRequestUrl": None,
        }

    def _lfs_blob(repo: Repo, value: dict) -> Blob:
        if value.get("algo", "sha256") != "sha256":
            raise HubError(400, f"Unsupported LFS algo {value.get('algo')!r}")
        sha256 = value["oid"]
        known = next((b for c in repo.commits.values() for b in c.files.values() if b.sha256 == sha256), None)
        found = (known.xet_hash, known.size) if known is not None else hub._xet_lookup(sha256)
        if found is None:
            raise HubError(422, f"LFS object {sha256} was not uploaded (no Xet shard lists it)")
        xet_hash, size = found
        if value.get("size") is not None and int(value["size"]) != size:
            raise HubError(422, f"LFS object {sha256}: size {value['size']} != uploaded size {size}")
        return Blob(size=size, sha256=sha256, xet_hash=xet_hash)

    @app.api_route("/{ns}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    def resolve(request: Request, ns: str, name: str, revision: str, path: str):
        with hub._lock:
            repo = hub._readable(request, f"{ns}/{name}")
            oid = hub._resolve(repo, revision)
            blob = repo.commits[oid].files.get(path)
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": oid})
        if not blob.lfs:
            headers.update({"ETag": f'"{blob.oid}"', "Content-Length": str(blob.size)})
            body = b"" if request.method == "HEAD" else blob.data
            return Response(body, headers=headers, media_type="application/octet-stream")
        headers.update(
            {
                "ETag": f'"{blob.sha256}"',
                "X-Linked-Etag": f'"{blob.sha256}"',
                "X-Linked-Size": str(blob.size),
                "X-Xet-Hash": blob.xet_hash,
                "X-Xet-Refresh-Route": f"{hub.url}/api/models/{ns}/{name}/xet-read-token/{oid}",
            }
        )
        if request.method == "HEAD":
            headers["Content-Length"] = str(blob.size)
            return Response(headers=headers, media_type="application/octet-stream")
        return FileResponse(hub._blob_path(blob), headers=headers, media_type="application/octet-stream")

    return app
