"""The README stays short and every documentation link leads somewhere: files exist, anchors name real headings."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a bash block is not a heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped except '-' and '_', spaces become '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a page's headings define, with GitHub's -1, -2 ... suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[str]:
    """Link targets in a page's prose (not in code blocks or inline code)."""
    found = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        found += LINK.findall(INLINE_CODE.sub("", line))
    return found


def relative_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, the file it points to, its anchor or '') for every link that is not to another site."""
    out = []
    for target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path.resolve()
        out.append((target, resolved, unquote(anchor)))
    return out


def test_the_slug_follows_github():
    assert slug("Measured: 12 trials on a 10% shard of MRPC") == "measured-12-trials-on-a-10-shard-of-mrpc"
    assert slug("Checkpoints load with `weights_only=True`") == "checkpoints-load-with-weights_onlytrue"
    assert slug("Predict, serve and export") == "predict-serve-and-export"
    assert slug("Distributed training (torchrun / accelerate)") == "distributed-training-torchrun--accelerate"


def test_readme_is_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_there_are_docs_pages():
    assert DOCS, "docs/*.md is empty"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_and_headings_that_exist(page):
    problems = []
    for target, resolved, anchor in relative_links(page):
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {resolved.name}")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {resolved for _, resolved, _ in relative_links(README)}
    missing = [str(p.relative_to(ROOT)) for p in DOCS if p.resolve() not in linked]
    assert not missing, f"not linked from README.md: {missing}"


def test_rendered_tables_match_the_benchmark_results():
    """The README's and docs' speed tables are rendered from benchmarks/results/, never typed by hand."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render_tables.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _benchmark(name: str):
    """A module of benchmarks/ (they import each other by plain name, so the folder is on the path to import)."""
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_benchmark_mfu_is_measured_against_the_precision_it_ran_in():
    speed = _benchmark("train_speed")
    final = {"train_seconds": 10.0, "f1": 0.9, "accuracy": 0.8}
    run = {"train_seconds": 10.0, "real_tokens": 1000, "padded_tokens": 1100, "samples": 30, "epochs": 3,
           "wall_seconds": 11.0, "peak_rss_mb": 1.0, "evals": [final], "final": final}  # fmt: skip
    params = {"layer": 100, "layers": 6, "other": 50}
    peaks = {"float32": 1.0, "bfloat16": 4.0}
    runs = {"course": [{**run, "precision": "fp32"}], "seqtune": [{**run, "precision": "bf16"}],
            "seqtune-top2": [{**run, "precision": "bf16", "train_layers": 2}]}  # fmt: skip
    summary = speed.summarize(runs, peaks, params)
    rows = summary["contenders"]
    flops_per_s = 6 * (6 * 100 + 50) * 1000 / 10.0
    assert rows["course"]["mfu"] == pytest.approx(flops_per_s / 1e9)
    assert rows["seqtune"]["mfu"] == pytest.approx(flops_per_s / 4e9)  # same work, against the bf16 peak
    top2 = (6 * (2 * 100 + 50) * 1000 + 2 * 4 * 100 * 1000 / 3) / 10.0
    assert rows["seqtune-top2"]["mfu"] == pytest.approx(top2 / 4e9)


def test_a_rendered_marker_the_renderer_cannot_read_is_an_error():
    render = _benchmark("render_tables")
    with pytest.raises(ValueError, match="rendered blocks not understood: no-close"):
        render.render_page("text\n<!-- rendered:no-close -->\nold table\n")
    page = "<!-- rendered:step_profile-bf16 -->\nstale\n<!-- /rendered:step_profile-bf16 -->\n"
    assert "stale" not in render.render_page(page)  # a name with a hyphen is filled too


def test_a_cpu_held_to_avx2_is_recorded_as_emulated_never_as_its_own_class(monkeypatch):
    machine = _benchmark("machine")
    for name, value in machine.EMULATE_AVX2.items():
        monkeypatch.setenv(name, value)
    held = machine.describe(threads=2)
    assert held["class"] == "avx2-emulated"
    assert set(held["flags"]) <= {"avx2"}  # the process cannot use the rest
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")  # one variable missing: oneDNN would still use AVX-512 or AMX
    assert machine.describe(threads=2)["class"] != "avx2-emulated"


def test_stored_step_lever_tables_are_renders_of_their_records():
    """step_levers.py owns its files: each Markdown table is its JSON record rendered, never edited by hand."""
    import json

    levers = _benchmark("step_levers")
    stored = sorted((ROOT / "benchmarks" / "results").glob("step_levers-*.json"))
    assert stored
    for path in stored:
        assert levers.render(json.loads(path.read_text())) == path.with_suffix(".md").read_text(), path.name


def test_stored_glue_run_tables_are_renders_of_their_records():
    """glue_run.py owns its files too: a table rendered by an older `render` is rendered again, not left behind."""
    import json

    glue_run = _benchmark("glue_run")
    stored = sorted((ROOT / "benchmarks" / "results").glob("glue_run*.json"))
    assert len(stored) >= 2
    for path in stored:
        assert glue_run.render(json.loads(path.read_text())) == path.with_suffix(".md").read_text(), path.name


def test_f1_seeds_keep_the_timed_runs_seeds_and_run_only_the_missing_ones(tmp_path, monkeypatch):
    import argparse
    import json

    speed = _benchmark("train_speed")
    machine = _benchmark("machine").describe(threads=1)
    final = {"course": [0.86, 0.87], "seqtune-top3": [0.85]}  # timed seeds 42(, 43)
    runs = {name: [{"final": {"f1": f1, "accuracy": 0.8}} for f1 in f1s] for name, f1s in final.items()}
    (tmp_path / f"train_speed-{machine['class']}.json").write_text(json.dumps({"runs": runs}))
    ran = []

    def fake_worker(name, seed, args, threads=None):
        ran.append((name, seed, threads))
        return {"final": {"f1": 0.80 + seed / 1000, "accuracy": 0.7}}

    monkeypatch.setattr(speed, "run_worker", fake_worker)
    monkeypatch.setattr(speed, "describe", lambda threads: machine)
    args = argparse.Namespace(out=str(tmp_path), f1_seeds="43,44", contenders="course,seqtune-top3", threads=1)
    speed.f1_seeds(args)
    assert ran == [("course", 44, 1), ("seqtune-top3", 43, 1), ("seqtune-top3", 44, 1)]
    record = json.loads((tmp_path / f"train_speed-{machine['class']}-f1-seeds.json").read_text())
    assert record["contenders"]["course"]["f1_per_seed"] == {"42": 0.86, "43": 0.87, "44": 0.844}
    assert record["contenders"]["seqtune-top3"]["f1_mean"] == round((0.85 + 0.843 + 0.844) / 3, 4)
    assert (
        "| seqtune-top3 | 0.8500 | 0.8430 | 0.8440 |"
        in (tmp_path / f"train_speed-{machine['class']}-f1-seeds.md").read_text()
    )
