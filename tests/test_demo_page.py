"""`seqtune serve`'s demo page in a real browser: headless Chromium (Debian's package) driven by Playwright types a
text (and its pair), submits, and reads the labels, bars or score the page shows; they must be what `predict` says.
The page loads nothing from outside the server (no CDN), and /docs points at the schema instead of a CDN UI."""

from __future__ import annotations

import shutil

import pytest
from conftest import LiveServer, make_rows, run_cli, write_csv

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (CI installs it: apt-get install chromium)"
)
pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _run(capsys, model, tmp_path, rows, *extra) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_csv(tmp_path / "data.csv", rows)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", model, "--train-file", data, "--max-steps", "3", "--quiet",
                           "--precision", "fp32", "--output", out, *extra)  # fmt: skip
    assert code == 0, err
    return out


def _ask(browser, url: str, text: str, pair: str | None = None, shot=None) -> dict:
    """Type, submit, read what the page shows; every request the page made must go to the server."""
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('about').textContent.startsWith('Model ')")
    assert page.is_visible("#pair") == (pair is not None)
    page.fill("#text", text)
    if pair is not None:
        page.fill("#pair", pair)
    page.click("#submit")
    page.wait_for_selector("#result .answer")
    shown = {
        "answer": page.text_content("#result .answer"),
        "bars": {
            row.get_attribute("data-label"): float(row.query_selector(".value").text_content())
            for row in page.query_selector_all("#result .row")
        },  # fmt: skip
        "on": sorted(row.get_attribute("data-label") for row in page.query_selector_all("#result .row.on")),
        "error": page.text_content("#error"),
    }
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert requested and all(u.startswith(url) for u in requested), requested
    return shown


def test_a_pair_model_shows_its_label_and_a_bar_per_label(tiny_model_dir, tmp_path, capsys, browser):
    from seqtune.predict import predict
    from seqtune.serve import create_app

    run = _run(capsys, tiny_model_dir, tmp_path, make_rows(24, pair=True), "--text-pair-column", "text2")
    text, pair = "the happy cat sat on the mat", "a sad dog ran"
    [expected] = predict(run, text, pair)
    shot = tmp_path / "demo.png"
    with LiveServer(create_app(run)) as live:
        shown = _ask(browser, live.url, text, pair, shot)
    assert shown["answer"] == f"Label: {expected['label']}" and shown["on"] == [expected["label"]]
    assert shown["bars"] == pytest.approx(expected["probabilities"], abs=1e-3)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


def test_multi_label_shows_every_label_and_regression_a_score(tiny_model_dir, tmp_path, capsys, browser):
    from seqtune.predict import predict
    from seqtune.serve import create_app

    rows = [{"text": r["text"], "tags": "a,b" if r["label"] == "pos" else "c"} for r in make_rows(24)]
    tags = _run(capsys, tiny_model_dir, tmp_path / "tags", rows, "--label-column", "tags", "--multi-label")
    scores = [{"text": r["text"], "label": 1.0 + 2.5 * (r["label"] == "pos")} for r in make_rows(24)]
    score = _run(capsys, tiny_model_dir, tmp_path / "score", scores, "--regression")
    text = "a quick blue fish"
    with LiveServer(create_app(tags)) as live:
        shown = _ask(browser, live.url, text)
    [expected] = predict(tags, text)
    assert set(shown["bars"]) == {"a", "b", "c"} and shown["on"] == sorted(expected["labels"]), (shown, expected)
    assert shown["bars"] == pytest.approx(expected["probabilities"], abs=1e-3)
    with LiveServer(create_app(score)) as live:
        shown = _ask(browser, live.url, text)
    [expected] = predict(score, text)
    assert shown["answer"] == f"Score: {expected['score']:.4f}" and shown["bars"] == {}


def test_docs_points_at_the_schema_and_loads_nothing_from_outside(tiny_model_dir, tmp_path, capsys, browser):
    import httpx

    from seqtune.serve import create_app

    run = _run(capsys, tiny_model_dir, tmp_path, make_rows(16))
    with LiveServer(create_app(run)) as live:
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(live.url + "/docs")
        assert page.get_attribute("a[href='/openapi.json']", "href") == "/openapi.json"
        page.close()
        schema = httpx.get(live.url + "/openapi.json").json()
    assert all(u.startswith(live.url) for u in requested)
    assert "/predict" in schema["paths"] and "/" not in schema["paths"]
