"""Render the README's and docs' speed tables from `benchmarks/results/`: one table per machine class, each naming
its machine. No figure in those blocks is typed by hand.

    python benchmarks/render_tables.py           # rewrite the blocks
    python benchmarks/render_tables.py --check   # exit 1 when a block differs from the results (the tests run this)

A block sits between ``<!-- rendered:NAME -->`` and ``<!-- /rendered:NAME -->`` in a Markdown page: ``speed`` (and
``speed-main``) is built here, any other NAME is ``benchmarks/results/NAME.md`` (the benchmark's own rendering)
without its title.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLASSES = {
    "amx": "CPU with AMX bf16 matrix tiles",
    "bf16": "CPU with native bf16 (AVX512-BF16)",
    "bf16-slow": "CPU that lists AVX512-BF16 but ran bf16 matmuls slower than fp32",
    "avx2": "AVX2-only CPU (bf16 emulated, so fp32)",
    "avx2-emulated": "AVX2 emulated: a newer CPU held to AVX2 (PyTorch, oneDNN and MKL kernels; fp32)",
}


def _machine(data: dict, cls: str) -> str:
    meta = data["meta"]
    m = meta.get("machine") or {"cpu": "x86-64 VM (model not recorded)", "flags": [], "threads": meta.get("threads")}
    flags = ", ".join(m["flags"]) if m["flags"] else "flags not recorded"
    date = f", {meta['date']}" if meta.get("date") else ""
    return f"{CLASSES.get(cls, cls)}: {m['cpu']} ({flags}), {m['threads']} threads, torch {meta['torch']}{date}"


def speed_tables(results: Path = RESULTS, classes: tuple[str, ...] = tuple(CLASSES)) -> str:
    """The training-speed tables of the machine ``classes`` measured, in the order of `CLASSES`."""
    out = []
    order = list(CLASSES)
    files = [p for p in results.glob("train_speed-*.json") if p.stem.split("-", 1)[1] in classes]
    files.sort(key=lambda p: (order.index(p.stem.split("-", 1)[1]), p.name))
    for path in files:
        cls = path.stem.split("-", 1)[1]
        data = json.loads(path.read_text())
        rows, peaks = data["summary"]["contenders"], data["peaks"]
        course = rows.get("course")
        out += [
            f"**{_machine(data, cls)}** (matmul peak fp32 {peaks['float32']:.0f}, bf16 {peaks['bfloat16']:.0f} "
            f"GFLOP/s; `{path.relative_to(ROOT)}`)",
            "",
            "| contender | precision | real tok/s | x course | train s | s to course's F1 | dev F1 | MFU |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            ratio = f"{r['real_tokens_per_s'] / course['real_tokens_per_s']:.2f}x" if course else "-"
            reach = f"{r['seconds_to_course_f1']:.0f}" if r["seconds_to_course_f1"] is not None else "never"
            precision = r.get("precision") or ("bf16" if name == "course-bf16" else "fp32")
            out.append(
                f"| {name} | {precision} | {r['real_tokens_per_s']:,.0f} | {ratio} | {r['train_seconds']:.0f} | "
                f"{reach} | {r['final_f1']:.4f} | {r['mfu']:.1%} |"
            )
        for name, reason in data["meta"].get("skipped", {}).items():
            out.append(f"\n{name}: skipped ({reason}).")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# speed: every class measured (docs); speed-main: the kinds of CPU a user has, for the README
BLOCKS = {"speed": speed_tables, "speed-main": lambda: speed_tables(classes=("amx", "bf16", "avx2", "avx2-emulated"))}
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def block(name: str) -> str:
    if name in BLOCKS:
        return BLOCKS[name]()
    lines = (RESULTS / f"{name}.md").read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip() + "\n"


def render_page(text: str) -> str:
    """``text`` with every rendered block replaced by its current content; a marker without its closing twin (or
    with a name the pattern does not take) is an error, not a block silently left as it was."""
    filled = []

    def fill(match: re.Match) -> str:
        name = match.group(1)
        filled.append(name)
        return f"<!-- rendered:{name} -->\n{block(name)}<!-- /rendered:{name} -->"

    out = re.sub(r"<!-- rendered:([\w-]+) -->\n.*?<!-- /rendered:\1 -->", fill, text, flags=re.S)
    opened = re.findall(r"<!-- rendered:(\S+) -->", text)
    if len(opened) != len(filled):
        unmatched = sorted(set(opened) - set(filled)) or opened
        raise ValueError(f"rendered blocks not understood: {', '.join(unmatched)} (names: letters, digits, _ and -)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    stale = []
    for page in PAGES:
        text = page.read_text()
        rendered = render_page(text)
        if rendered != text:
            stale.append(page)
            if not args.check:
                page.write_text(rendered)
    if args.check and stale:
        print(f"out of date: {', '.join(str(p) for p in stale)}; run python benchmarks/render_tables.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
