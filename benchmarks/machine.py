"""The machine a benchmark ran on, recorded with every result: CPU model, the flags that decide bf16 and int8 speed,
threads, and the machine class its tables are grouped by."""

from __future__ import annotations

import os
import platform

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")
# What holds a newer CPU to AVX2, so an AVX2-only machine's ratios can be measured on it (`--emulate-avx2`):
# PyTorch's own kernels, oneDNN's and MKL's, and seqtune's automatic precision (fp32 where bf16 is emulated).
EMULATE_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "SEQTUNE_AUTO_PRECISION": "fp32"}  # fmt: skip


def emulating_avx2(environ: dict[str, str] | None = None) -> bool:
    """Whether this process runs held to AVX2 (every variable of `EMULATE_AVX2` set as there).

    Example:
        >>> emulating_avx2({}), emulating_avx2(EMULATE_AVX2)
        (False, True)
    """
    environ = os.environ if environ is None else environ
    return all(environ.get(k) == v for k, v in EMULATE_AVX2.items())


def cpuinfo() -> tuple[str, list[str]]:
    """The CPU model name and which of `FLAGS` it has (from /proc/cpuinfo; empty where there is none; held to AVX2,
    the AVX-512 and AMX flags are left out, as the process cannot use them)."""
    from seqtune.precision import cpu_model_and_flags

    model, flags = cpu_model_and_flags(FLAGS)
    if emulating_avx2():
        flags = [f for f in flags if f == "avx2"]
    return model or platform.processor() or platform.machine(), flags


def machine_class(flags: list[str], peaks: dict[str, float] | None = None) -> str:
    """``amx`` for CPUs with AMX tiles (bf16 matmuls on a matrix unit, Intel Sapphire Rapids and later), ``bf16`` for
    CPUs with native bf16 vector matmuls only (AVX512-BF16), else ``avx2`` (bf16 emulated); with measured matmul
    ``peaks``, ``bf16-slow`` for a CPU whose flags say bf16 but whose bf16 matmuls ran slower than fp32 (a VM seen
    here: 198 against 412 GFLOP/s), so its tables do not stand for either bf16 class.

    Example:
        >>> machine_class(["avx2", "avx512_bf16"]), machine_class(["avx2"]), machine_class(["avx512_bf16", "amx_bf16"])
        ('bf16', 'avx2', 'amx')
        >>> machine_class(["avx512_bf16"], {"float32": 412.0, "bfloat16": 198.0})
        'bf16-slow'
    """
    if not {"avx512_bf16", "amx_bf16"} & set(flags):
        return "avx2"
    if peaks and peaks["bfloat16"] < peaks["float32"]:
        return "bf16-slow"
    return "amx" if "amx_bf16" in flags else "bf16"


def describe(threads: int | None = None, peaks: dict[str, float] | None = None) -> dict:
    """What goes into a result file's ``machine`` field (``peaks``: measured matmul GFLOP/s, see `machine_class`).
    Held to AVX2 (`EMULATE_AVX2`), the class is ``avx2-emulated`` and ``emulated`` names the CPU's own flags."""
    model, flags = cpuinfo()
    record = {"cpu": model, "flags": flags, "class": machine_class(flags, peaks), "threads": threads or _threads(),
              "cores": os.cpu_count()}  # fmt: skip
    if emulating_avx2():
        from seqtune.precision import cpu_model_and_flags

        own = " ".join(cpu_model_and_flags(FLAGS)[1])
        record |= {"class": "avx2-emulated", "emulated": f"held to AVX2 by {' '.join(EMULATE_AVX2)}; own flags: {own}"}
    return record


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def peak_for(precision: str, peaks: dict[str, float]) -> float:
    """The matmul peak (GFLOP/s) a contender's model-FLOPs utilisation is measured against: the peak of the precision
    it trained in.

    Example:
        >>> peak_for("bf16", {"float32": 200.0, "bfloat16": 800.0}), peak_for("fp32", {"float32": 200.0})
        (800.0, 200.0)
    """
    return peaks["bfloat16"] if precision == "bf16" else peaks["float32"]
