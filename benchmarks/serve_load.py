"""Serving under load, side by side in one run: batching on vs off, torch vs ONNX vs ONNX int8.

Each configuration is a real `seqtune serve` process on a free loopback port; N concurrent clients (closed loop:
each sends its next MRPC dev pair when the previous answer arrives) run for a fixed time. Reports requests/s,
p50/p99 latency and errors per configuration, and writes JSON + markdown to benchmarks/results/.

    python benchmarks/serve_load.py --run runs/mrpc --glue-dir ../shared/glue [--clients 16] [--duration 10]

The ONNX and int8 folders are `<run>/onnx` and `<run>/onnx-int8`, exported first if missing. Loopback only; the
client count and the duration are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

MAX_CLIENTS, MAX_DURATION = 64, 120.0
SRC = Path(__file__).resolve().parents[1] / "src"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_exports(run: Path) -> dict[str, Path]:
    from seqtune.export import EXPORT_INFO, export_run

    folders = {"onnx": run / "onnx", "int8": run / "onnx-int8"}
    if not (folders["onnx"] / EXPORT_INFO).is_file():
        export_run(run)
    if not (folders["int8"] / EXPORT_INFO).is_file():
        export_run(folders["onnx"], quantize="int8", output=folders["int8"])
    return folders


class Server:
    """`python -m seqtune serve FOLDER` on a free loopback port, until stopped."""

    def __init__(self, folder: Path, batching: bool):
        self.port = free_port()
        cmd = [sys.executable, "-m", "seqtune", "serve", str(folder), "--host", "127.0.0.1", "--port", str(self.port)]
        env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd + ([] if batching else ["--no-batching"]), env=env, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


async def load(url: str, pairs: list[tuple[str, str]], clients: int, duration: float) -> dict:
    """``clients`` closed-loop clients for ``duration`` seconds; latencies of the answered requests."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: int, http: httpx.AsyncClient) -> None:
        i = c * 7919  # each client walks the dev set from its own offset
        while time.perf_counter() < deadline:
            a, b = pairs[i % len(pairs)]
            i += 1
            start = time.perf_counter()
            try:
                r = await http.post("/predict", json={"text": a, "text_pair": b})
                key = None if r.status_code == 200 else str(r.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            if key is None:
                latencies.append(time.perf_counter() - start)
            else:
                errors[key] = errors.get(key, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"latencies": latencies, "seconds": elapsed, "errors": errors}


def summarize(rounds: list[dict]) -> dict:
    """Pool the rounds of one configuration: requests/s over all measured seconds, latency percentiles."""
    latencies = [x for r in rounds for x in r["latencies"]]
    seconds = sum(r["seconds"] for r in rounds)
    errors: dict[str, int] = {}
    for r in rounds:
        for key, n in r["errors"].items():
            errors[key] = errors.get(key, 0) + n
    return {
        "requests": len(latencies),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "requests_per_s_by_round": [round(len(r["latencies"]) / r["seconds"], 2) for r in rounds],
        "p50_ms": round(1000 * percentile(latencies, 50), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "errors": errors,
    }


def markdown(results: list[dict], meta: dict) -> str:
    base = next(r for r in results if r["name"] == "torch, batching off")["requests_per_s"]
    lines = [
        f"Serving load test: {meta['clients']} concurrent clients, {meta['rounds']} rounds x {meta['duration']:.0f} s "
        f"per configuration, one MRPC dev pair per request, model `{meta['model']}`, {meta['machine']}.",
        "",
        "| configuration | requests/s | per round | p50 ms | p99 ms | errors | vs torch unbatched |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        errors = sum(r["errors"].values())
        rounds = " / ".join(f"{x:.1f}" for x in r["requests_per_s_by_round"])
        lines.append(
            f"| {r['name']} | {r['requests_per_s']:.1f} | {rounds} | "
            f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {errors} | "
            f"{r['requests_per_s'] / base:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a seqtune run folder (MRPC)")
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per configuration")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over all configurations (order reversed each round)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.duration <= MAX_DURATION or not 1 <= args.rounds <= 5:
        ap.error(f"--clients must be 1..{MAX_CLIENTS}, --duration 0..{MAX_DURATION:.0f} s and --rounds 1..5")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from seqtune.data import load_glue
    from seqtune.runfolder import load_run_config
    from seqtune.tasks import get_task

    run = Path(args.run)
    dev = load_glue(get_task("mrpc"), args.glue_dir)["validation"]
    pairs = list(zip(dev["sentence1"], dev["sentence2"], strict=True))
    folders = {"torch": run, **ensure_exports(run)}
    configs = [(backend, batching) for backend in ("torch", "onnx", "int8") for batching in (True, False)]
    measured: dict[tuple[str, bool], list[dict]] = {c: [] for c in configs}
    load_at_start = os.getloadavg()[0]
    for r in range(args.rounds):
        for backend, batching in configs if r % 2 == 0 else configs[::-1]:  # alternate, so drift hits all alike
            server = Server(folders[backend], batching)
            try:
                server.wait_ready()
                asyncio.run(load(server.url, pairs, args.clients, args.warmup))
                measured[backend, batching].append(asyncio.run(load(server.url, pairs, args.clients, args.duration)))
            finally:
                server.stop()
            rate = len(measured[backend, batching][-1]["latencies"]) / measured[backend, batching][-1]["seconds"]
            print(f"round {r + 1}: {backend}, batching {batching}: {rate:.2f} requests/s", flush=True)
    results = []
    for backend, batching in configs:
        name = f"{'onnx int8' if backend == 'int8' else backend}, batching {'on' if batching else 'off'}"
        results.append(
            {"name": name, "backend": backend, "batching": batching} | summarize(measured[backend, batching])
        )
    meta = {
        "clients": args.clients,
        "duration": args.duration,
        "rounds": args.rounds,
        "model": load_run_config(run).model.name,
        "run": str(run),
        "machine": f"{os.cpu_count()}-core {platform.machine()} VM shared with other jobs (load average "
        f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = markdown(results, meta)
    (out / "serve_load.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
