"""`seqtune serve`: the micro-batcher, and a real uvicorn server on a free loopback port hit with httpx.

Round trips must equal `seqtune predict`; every bad input gets its exact HTTP code and message; a bounded
schemathesis run against /openapi.json finds no 5xx.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import LiveServer, make_rows, write_csv

from seqtune import load_config
from seqtune.cli import main
from seqtune.errors import SeqtuneError
from seqtune.microbatch import MicroBatcher
from seqtune.serve import ServeSettings, create_app
from seqtune.training import train

httpx = pytest.importorskip("httpx")
SHAPE = '{"text": "..." or ["...", ...], "text_pair": the same shape, for pair models only}'
TEXTS = ["the happy cat sat on the mat", "a sad dog", "quick red bird in a big tree happy", "slow fish"]


def _train(model: Path, out: Path, csv: Path, *extra: str) -> Path:
    overrides = [f"model.name={model}", f"output={out}", "quiet=true", "model.max_length=32", "train.lr=1e-3"]
    train(load_config(None, [*overrides, f"data.train_file={csv}", "train.epochs=1", *extra]))
    return out


@pytest.fixture(scope="module")
def single_run(tiny_model_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serve-single")
    return _train(tiny_model_dir, tmp / "run", write_csv(tmp / "toy.csv", make_rows(64)))


@pytest.fixture(scope="module")
def pair_run(tiny_model_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serve-pair")
    csv = write_csv(tmp / "pairs.csv", make_rows(32, pair=True))
    return _train(tiny_model_dir, tmp / "run", csv, "data.text_pair_column=text2", "train.max_steps=2")


SETTINGS = ServeSettings(max_wait_ms=20, max_batch_size=8, max_text_chars=200, max_body_bytes=4096)


@pytest.fixture(scope="module")
def server(single_run):
    with LiveServer(create_app(single_run, SETTINGS)) as live:
        yield live


@pytest.fixture(scope="module")
def pair_server(pair_run):
    with LiveServer(create_app(pair_run, SETTINGS)) as live:
        yield live


def cli_predict(capsys, run: Path, texts: list[str], pairs: list[str] | None = None) -> list[dict]:
    args = ["predict", str(run)] + [a for t in texts for a in ("--text", t)]
    args += [a for p in pairs or [] for a in ("--text-pair", p)]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def assert_same_predictions(served: list[dict], expected: list[dict]) -> None:
    """Equal labels; probabilities equal up to float noise (a batch's padding may differ by a few tokens)."""
    assert len(served) == len(expected)
    for s, e in zip(served, expected, strict=True):
        assert s.keys() == e.keys()
        assert s["label"] == e["label"]
        assert s["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)


# ---------------------------------------------------------------------------------------------- micro-batcher


def _gather(batcher: MicroBatcher, requests: list[list[str]]) -> list[list[str]]:
    async def go():
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    return asyncio.run(go())


def test_batcher_merges_concurrent_requests_sorted_by_length_and_answers_each_in_order():
    calls: list[list[str]] = []

    def run_batch(items: list[str]) -> list[str]:
        calls.append(items)
        return [s.upper() for s in items]

    batcher = MicroBatcher(run_batch, max_batch=6, max_wait_ms=50, key=len)
    requests = [["ccc", "a"], ["bb"], ["dddd", "e", "ff"], ["g"], ["hhhhh", "ii"]]
    assert _gather(batcher, requests) == [[s.upper() for s in r] for r in requests]
    assert sum(len(c) for c in calls) == 9 and len(calls) < len(requests)
    assert (batcher.batches, batcher.items) == (len(calls), 9)
    assert all(len(c) <= 6 for c in calls)  # a batch closes before it would overflow
    assert all(c == sorted(c, key=len) for c in calls)  # the model sees each batch sorted by length


def test_batcher_off_runs_one_request_at_a_time():
    calls: list[list[int]] = []
    batcher = MicroBatcher(lambda xs: calls.append(xs) or [x * 2 for x in xs], max_batch=64, enabled=False)
    assert _gather(batcher, [[1, 2], [3], [4]]) == [[2, 4], [6], [8]]
    assert calls == [[1, 2], [3], [4]]


def test_batcher_failure_reaches_every_caller_and_the_worker_survives():
    def run_batch(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("bad item")
        return items

    batcher = MicroBatcher(run_batch, max_batch=8, max_wait_ms=20)

    async def go():
        results = await asyncio.gather(batcher.submit([0]), batcher.submit([1]), return_exceptions=True)
        return results, await batcher.submit([5])

    results, after = asyncio.run(go())
    assert all(isinstance(r, ValueError) for r in results)
    assert after == [5]


# ------------------------------------------------------------------------------------------- round trips


def test_health_info_and_openapi(server, single_run):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server.url}/info").json()
    assert info["labels"] == ["neg", "pos"] and info["pair"] is False and info["backend"] == "torch"
    assert info["max_length"] == 32 and info["model"] == load_config(single_run / "config.yaml").model.name
    assert info["settings"]["max_batch_size"] == 8
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert set(schema["paths"]) == {"/predict", "/health", "/info"}
    assert set(schema["paths"]["/predict"]["post"]["responses"]) == {"200", "413", "422"}


def test_single_and_batch_round_trip_equal_cli_predict(server, single_run, capsys):
    expected = cli_predict(capsys, single_run, TEXTS)
    one = httpx.post(f"{server.url}/predict", json={"text": TEXTS[0]})
    assert one.status_code == 200
    assert_same_predictions(one.json()["predictions"], expected[:1])
    batch = httpx.post(f"{server.url}/predict", json={"text": TEXTS})
    assert_same_predictions(batch.json()["predictions"], expected)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, single_run, capsys):
    expected = cli_predict(capsys, single_run, TEXTS)
    batcher = server.app.state.batcher
    batches, items = batcher.batches, batcher.items
    answers: dict[int, list[dict]] = {}

    def client(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            answers[i] = c.post("/predict", json={"text": TEXTS[i % 4]}).json()["predictions"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(12):
        assert_same_predictions(answers[i], [expected[i % 4]])
    assert batcher.items - items == 12
    assert batcher.batches - batches < 12  # some requests shared a forward pass


def test_pair_round_trip_equals_cli_predict(pair_server, pair_run, capsys):
    pairs = ["a big tree", "the red fish"]
    expected = cli_predict(capsys, pair_run, TEXTS[:2], pairs)
    r = httpx.post(f"{pair_server.url}/predict", json={"text": TEXTS[:2], "text_pair": pairs})
    assert_same_predictions(r.json()["predictions"], expected)
    r = httpx.post(f"{pair_server.url}/predict", json={"text": TEXTS[0], "text_pair": pairs[0]})
    assert_same_predictions(r.json()["predictions"], expected[:1])


# ------------------------------------------------------------------------------------------------ bad input

BAD = [
    ({"text": "a", "text_pair": "b"}, "this model takes a single text, not a pair: drop text_pair"),
    ({"text": []}, "text is an empty list; send at least one text"),
    ({"text": ["x"] * 9}, "batch of 9 texts is over the limit of 8; split the request"),
    ({"text": "y" * 201}, "text has 201 characters, over the limit of 200; shorten it"),
    ({"text": ["ok", "z" * 201]}, "text[1] has 201 characters, over the limit of 200; shorten it"),
    ({"text": ["ok", "  "]}, "text[1] is empty; every input needs some text"),
    ({"text": ["a"], "text_pair": "b"}, "text and text_pair must have the same shape: both strings, or both lists"),
    (
        {"text": 3},
        f"invalid request (text.str: Input should be a valid string; text.list[str]: Input should be a "
        f"valid list); expected {SHAPE}",
    ),
    ({"txt": "a"}, f"invalid request (text: Field required; txt: Extra inputs are not permitted); expected {SHAPE}"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m[:30] for _, m in BAD])
def test_bad_request_is_422_with_the_reason(server, body, message):
    r = httpx.post(f"{server.url}/predict", json=body)
    assert (r.status_code, r.json()) == (422, {"detail": message})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"text": ', f"malformed JSON (Expecting value); expected {SHAPE}"),
        (b'{"text": "\\ud800"}', "text is not valid Unicode (a lone surrogate); send UTF-8 text"),
        (b"[" * 2000 + b"]" * 2000, f"malformed JSON (could not be parsed); expected {SHAPE}"),
    ],
    ids=["truncated", "lone-surrogate", "too-deep"],
)
def test_malformed_json_is_422(server, raw, message):
    r = httpx.post(f"{server.url}/predict", content=raw, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (422, {"detail": message})


def test_body_over_the_limit_is_413_declared_or_streamed(server):
    big = json.dumps({"text": "word " * 1000}).encode()
    r = httpx.post(f"{server.url}/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {
        "detail": f"request body is {len(big)} bytes, over the limit of 4096 bytes; send fewer or shorter texts "
        "per request"
    }

    def chunks():  # no Content-Length: the server must count as it reads
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 100

    r = httpx.post(f"{server.url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("request body is larger, over the limit of 4096 bytes")


@pytest.mark.parametrize("client", ["urllib", "requests", "httpx"])
def test_a_20_mb_body_gets_its_413_with_every_common_client(server, client):
    """The server reads (and drops) the rest of an oversized body before answering, so a client still sending
    receives the 413 instead of a reset connection."""
    body = b'{"text": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    url, headers = f"{server.url}/predict", {"content-type": "application/json"}
    if client == "urllib":
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=60)
        status, detail = info.value.code, json.loads(info.value.read())["detail"]
    elif client == "requests":
        requests = pytest.importorskip("requests")
        r = requests.post(url, data=body, headers=headers, timeout=60)
        status, detail = r.status_code, r.json()["detail"]
    else:
        r = httpx.post(url, content=body, headers=headers, timeout=60)
        status, detail = r.status_code, r.json()["detail"]
    assert status == 413
    assert detail.startswith(f"request body is {len(body)} bytes, over the limit of 4096 bytes")


def test_pair_model_wants_pairs(pair_server):
    r = httpx.post(f"{pair_server.url}/predict", json={"text": "a"})
    assert (r.status_code, r.json()) == (
        422,
        {"detail": "this model was trained on text pairs: send text_pair as well"},
    )
    r = httpx.post(f"{pair_server.url}/predict", json={"text": ["a", "b"], "text_pair": ["c"]})
    assert r.json() == {"detail": "got 2 texts but 1 text pairs; send one pair per text"}


def _rss_mb() -> float:
    fields = Path("/proc/self/status").read_text().split("VmRSS:")[1].split()
    return int(fields[0]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc for the resident set size")
def test_bad_input_neither_crashes_nor_leaks(server):
    bodies = [b"x" * 100_000, b'{"text": ', json.dumps({"text": ["q" * 150] * 20}).encode(), b'{"text": "\\ud800"}']
    with httpx.Client(base_url=server.url, timeout=60) as c:

        def hammer(rounds: int) -> None:
            for _ in range(rounds):
                for body in bodies:
                    assert c.post(
                        "/predict", content=body, headers={"content-type": "application/json"}
                    ).is_client_error

        hammer(25)  # warm up allocator pools
        before = _rss_mb()
        hammer(100)
        grown = _rss_mb() - before
        assert c.get("/health").json() == {"status": "ok"}
        assert c.post("/predict", json={"text": "still here"}).status_code == 200
    assert grown < 20, f"resident memory grew {grown:.1f} MB over 400 bad requests"


# ----------------------------------------------------------------------------------------- schema-based fuzz

schemathesis = pytest.importorskip("schemathesis")


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzz_finds_no_server_error(server, mode):
    """Every operation in /openapi.json, with bodies that fit the schema (positive) and that do not (negative).

    Driven through Hypothesis directly: schemathesis' pytest plugin (``from_fixture``) does not run on pytest 9.
    """
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {"POST /predict", "GET /health", "GET /info"}
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    for op in operations:
        if mode == "negative" and op.method.upper() == "GET":
            continue  # nothing to get wrong in a request without parameters

        @settings(
            max_examples=25, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=op.as_strategy(GenerationMode(mode)))
        def call(case):
            case.call_and_validate(base_url=server.url, checks=checks)

        call()


# --------------------------------------------------------------------------------------------------- the CLI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve_binds_loopback_and_answers(single_run):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "seqtune", "serve", str(single_run), "--port", str(port), "--max-batch-size", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a loaded machine can take minutes to import
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"text": ["a", "b", "c"]})
        assert r.json() == {"detail": "batch of 3 texts is over the limit of 2; split the request"}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}" in out  # the default bind address is loopback only


def test_cli_serve_bad_input_is_one_line(capsys, tmp_path):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (
        f"seqtune: error: {tmp_path / 'nope'}: run folder not found; pass the --output folder of a seqtune train run\n"
    )
    assert main(["serve", str(tmp_path), "--max-batch-size", "0"]) == 2
    assert capsys.readouterr().err == "seqtune: error: --max-batch-size 0: expected a positive number\n"


def test_missing_extra_names_the_pip_line(monkeypatch, single_run):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    with pytest.raises(SeqtuneError) as err:
        create_app(single_run)
    assert str(err.value) == (
        "seqtune serve needs the 'fastapi' package, which is not installed: pip install 'seqtune[serve]' "
        "(or pip install fastapi uvicorn)"
    )
