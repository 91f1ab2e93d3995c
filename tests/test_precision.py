"""What `precision: auto` resolves to: bf16 only where the CPU has it natively and a measured matmul says it is
faster; the measurement is cached per machine; SEQTUNE_AUTO_PRECISION forces either way."""

from __future__ import annotations

import json

import pytest
import torch

from seqtune import precision
from seqtune.errors import SeqtuneError

CPU = torch.device("cpu")


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A CPU with the given flags whose matmuls run at the given GFLOP/s; counts the timings taken."""
    monkeypatch.delenv(precision.AUTO_PRECISION_ENV, raising=False)  # `pytest --auto-precision` forces it
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "cache"))
    timings = []

    def make(flags: list[str], fp32: float, bf16: float) -> list:
        monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("Test CPU", flags))

        def time_matmul(dtype, seconds=0.25):
            timings.append(dtype)
            return bf16 if dtype == torch.bfloat16 else fp32

        monkeypatch.setattr(precision, "time_matmul", time_matmul)
        return timings

    return make


def test_auto_takes_bf16_where_native_and_measured_faster(machine):
    machine(["avx512_bf16", "avx512_vnni"], fp32=200.0, bf16=420.0)
    assert precision.resolve_precision("auto", CPU) == "bf16"
    assert precision.resolve_precision("fp32", CPU) == "fp32"  # an explicit choice is kept


def test_auto_takes_fp32_where_the_flags_say_bf16_but_it_runs_slower(machine):
    """A VM seen here: avx512_bf16 in its flags, bf16 matmuls at half the fp32 speed."""
    machine(["avx512_bf16"], fp32=412.0, bf16=198.0)
    assert precision.resolve_precision("auto", CPU) == "fp32"
    assert precision.resolve_precision("bf16", CPU) == "bf16"


def test_auto_takes_fp32_without_timing_on_a_cpu_without_bf16(machine):
    timings = machine([], fp32=200.0, bf16=20.0)
    assert precision.resolve_precision("auto", CPU) == "fp32"
    assert timings == []  # emulated bf16: nothing to measure


def test_an_amx_cpu_takes_bf16_without_timing(machine):
    """AMX bf16 matmuls are several times fp32's: a timing taken while other work shares the cores (0.63x once, on
    the AMX Xeon that measures 6.5x idle) must not turn `auto` to fp32."""
    timings = machine(["avx512_bf16", "amx_bf16"], fp32=300.0, bf16=190.0)
    assert precision.resolve_precision("auto", CPU) == "bf16"
    assert timings == []


def test_the_measurement_is_cached_and_a_broken_cache_is_measured_around(machine, tmp_path):
    timings = machine(["avx512_bf16"], fp32=100.0, bf16=300.0)
    assert precision.measured_bf16_speedup() == pytest.approx(3.0)
    measured = len(timings)
    assert measured > 0
    assert precision.measured_bf16_speedup() == pytest.approx(3.0)
    assert len(timings) == measured  # the second call read the cache
    (entry,) = json.loads((tmp_path / "cache" / "precision.json").read_text()).values()
    assert entry["bf16_over_fp32"] == 3.0
    (tmp_path / "cache" / "precision.json").write_text("{not json")
    assert precision.resolve_precision("auto", CPU) == "bf16"
    assert len(timings) == 2 * measured  # measured again, and the cache rewritten
    assert json.loads((tmp_path / "cache" / "precision.json").read_text())


def test_the_ratio_is_timed_on_one_thread_and_holds_for_every_thread_count(machine, monkeypatch):
    """A multi-threaded timing waits for its slowest thread, so a neighbour's load skews it (2 threads beside a
    1-thread job: 0.63x on a CPU whose bf16 runs 6.5x fp32). One thread measures the core's instructions; a run on
    another thread count reads the same cached ratio instead of timing again."""
    timings = machine(["avx512_bf16"], fp32=100.0, bf16=300.0)
    threads = []
    timed = precision.time_matmul
    monkeypatch.setattr(precision, "time_matmul", lambda dtype, seconds=0.25: threads.append(torch.get_num_threads())
                        or timed(dtype, seconds))  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert precision.measured_bf16_speedup() == pytest.approx(3.0)
        assert threads and set(threads) == {1}
        assert torch.get_num_threads() == 2  # restored
        measured = len(timings)
        torch.set_num_threads(1)
        assert precision.resolve_precision("auto", CPU) == "bf16"
        assert len(timings) == measured  # the cache, not a second timing
    finally:
        torch.set_num_threads(before)


def test_an_unwritable_cache_still_gives_an_answer(machine, monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "file" / "below"))  # a file where a folder must be
    machine(["avx512_bf16"], fp32=100.0, bf16=50.0)
    assert precision.resolve_precision("auto", CPU) == "fp32"


def test_auto_precision_can_be_forced_either_way(machine, monkeypatch):
    """SEQTUNE_AUTO_PRECISION (set by `pytest --auto-precision bf16|fp32`) decides `auto` whatever the CPU has."""
    for flags in (["avx512_bf16"], []):
        machine(flags, fp32=100.0, bf16=300.0)
        monkeypatch.setenv(precision.AUTO_PRECISION_ENV, "bf16")
        assert precision.resolve_precision("auto", CPU) == "bf16"
        monkeypatch.setenv(precision.AUTO_PRECISION_ENV, "fp32")
        assert precision.resolve_precision("auto", CPU) == "fp32"
        assert precision.resolve_precision("bf16", CPU) == "bf16"  # an explicit choice still wins
    monkeypatch.setenv(precision.AUTO_PRECISION_ENV, "fp16")
    with pytest.raises(SeqtuneError, match="SEQTUNE_AUTO_PRECISION='fp16': expected bf16 or fp32"):
        precision.resolve_precision("auto", CPU)


def test_time_matmul_measures_a_real_matmul_without_touching_the_global_rng():
    """A run's first `auto` measures; its resumed run reads the cache: dropout masks must not depend on which."""
    torch.manual_seed(7)
    before = torch.get_rng_state()
    assert precision.time_matmul(torch.float32, seconds=0.02) > 0.1  # GFLOP/s: any CPU does far more
    assert torch.equal(torch.get_rng_state(), before)
