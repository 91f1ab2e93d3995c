"""Which precision a run computes in: what ``precision: auto`` resolves to on this machine, and the autocast for it.

``auto`` picks bf16 only where it is both native and faster. The CPU flags (AVX512-BF16, AMX) say whether bf16
matmuls are native; they do not say whether they are fast: on one 2-core VM whose flags list ``avx512_bf16`` a bf16
matmul ran at half the fp32 speed, on another twice it (benchmarks/results/train_speed-bf16.md). So on a CPU with
the flags, ``auto`` times one matmul of a transformer layer's shape in both precisions (about a second, once per
machine: the ratio is cached under ``~/.cache/seqtune``) and takes bf16 when it is at least `MIN_SPEEDUP` x fp32.
The timing runs on one thread: the ratio is a property of the core's instructions, and a multi-threaded matmul waits
for its slowest thread, so another job on the cores could make one precision look slow (a 2-thread timing beside a
1-thread job once read 0.63x on a CPU that runs bf16 at 6.5x fp32).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import torch

from seqtune.errors import SeqtuneError

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_FLAGS = (*CPU_BF16_FLAGS, "avx512_vnni")  # what decides bf16 and int8 speed: recorded with runs and benchmarks
# What ``precision: auto`` resolves to when set (``bf16`` or ``fp32``), whatever the hardware: lets a developer on an
# AVX2 machine see what a bf16 machine computes (``pytest --auto-precision bf16`` sets it), and the reverse.
AUTO_PRECISION_ENV = "SEQTUNE_AUTO_PRECISION"
CACHE_ENV = "SEQTUNE_CACHE"  # where the measured ratio is kept (default ~/.cache/seqtune)
MIN_SPEEDUP = 1.1  # bf16 must beat fp32 by this much: autocast's casts and bf16 rounding are not free
_SHAPE = (1024, 384, 1536)  # tokens x hidden x FFN width: MiniLM's feed-forward matmul for a batch of 16 x 64 tokens


def cpu_model_and_flags(wanted: tuple[str, ...] = CPU_FLAGS) -> tuple[str, list[str]]:
    """The CPU's model name and which of the ``wanted`` flags (default: the speed-relevant `CPU_FLAGS`) it has, from
    /proc/cpuinfo (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags_line = next((line for line in lines if line.startswith("flags")), "")
    present = set(flags_line.split(":", 1)[1].split()) if ":" in flags_line else set()
    return model, [flag for flag in wanted if flag in present]


def cpu_flags() -> list[str]:
    """The speed-relevant flags (`CPU_FLAGS`) this CPU has (empty where it has none: AVX2-only)."""
    return cpu_model_and_flags()[1]


def time_matmul(dtype: torch.dtype, seconds: float = 0.25) -> float:
    """GFLOP/s of one `_SHAPE` matmul in ``dtype`` on the CPU: the best of repeated runs within ``seconds``."""
    m, k, n = _SHAPE
    rng = torch.Generator().manual_seed(0)  # not the global generator: a run's dropout must not see this measurement
    a, b = torch.randn(m, k, generator=rng).to(dtype), torch.randn(k, n, generator=rng).to(dtype)
    torch.mm(a, b)  # warm-up: kernels are chosen on first use
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def _cache_file() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "seqtune"
    return Path(root) / "precision.json"


@contextlib.contextmanager
def _one_thread():
    """torch on one thread inside, its thread count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measured_bf16_speedup() -> float:
    """bf16 matmul speed over fp32 on one core of this CPU: measured once per CPU model, flags and torch version
    (whatever thread count a run uses), then read from the cache (a cache that cannot be read or written is measured
    around, never an error)."""
    model, flags = cpu_model_and_flags()
    key = f"{model} | {' '.join(flags)} | torch {torch.__version__} | one thread"
    path = _cache_file()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    entry = cached.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("bf16_over_fp32"), (int, float)):
        return float(entry["bf16_over_fp32"])
    with _one_thread():  # alternate the two so a neighbour's load on a shared machine hits both alike
        fp32, bf16 = time_matmul(torch.float32), time_matmul(torch.bfloat16)
        fp32, bf16 = max(fp32, time_matmul(torch.float32)), max(bf16, time_matmul(torch.bfloat16))
    ratio = bf16 / fp32
    cached[key] = {"bf16_over_fp32": round(ratio, 3), "measured": time.strftime("%Y-%m-%d")}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cached, indent=1))
        tmp.replace(path)
    return ratio


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs fast here (not merely runs): native bf16 on the GPU; on the CPU, AMX tiles (bf16
    matmuls 6.5x fp32's on the AMX Xeon measured, so never timed: a timing taken while other work shares the cores
    once said 0.63x there, and the cache would have kept it), or the other bf16 flags and a measured matmul at least
    `MIN_SPEEDUP` x fp32 (an AVX512-BF16 VM ran them at half fp32's speed; CPUs without the flags emulate bf16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        flags = cpu_flags()
        if "amx_bf16" in flags:
            return True
        return any(flag in CPU_BF16_FLAGS for flag in flags) and measured_bf16_speedup() >= MIN_SPEEDUP
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where it is native and faster, else ``fp32`` (or what ``SEQTUNE_AUTO_PRECISION`` says);
    explicit choices are kept."""
    if requested != "auto":
        return requested
    forced = os.environ.get(AUTO_PRECISION_ENV, "").strip().lower()
    if forced in ("bf16", "fp32"):
        return forced
    if forced:
        raise SeqtuneError(f"{AUTO_PRECISION_ENV}={forced!r}: expected bf16 or fp32 (or unset it to pick by hardware)")
    return "bf16" if bf16_supported(device) else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16``; nothing for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
