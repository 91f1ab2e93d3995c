"""Data parallelism: what each process of a ``torchrun`` / ``accelerate launch`` run does differently.

A plain ``seqtune train`` is a world of one process and every helper here is a no-op. Under a launcher each
process trains on its share of every optimizer step's examples; gradients are averaged by DDP (through
`accelerate`), and only the main process writes the run folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from seqtune.errors import SeqtuneError

T = TypeVar("T")


@dataclass
class World:
    """The processes of one run, seen from one of them."""

    accelerator: Accelerator

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def size(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def shard(self, idxs: Sequence[int]) -> list[int]:
        """This process's examples of one global batch: every ``size``-th, so lengths stay balanced.

        A batch smaller than the world leaves some processes nothing; they still run the step (see
        `step_share`) because DDP needs every process in each gradient all-reduce.
        """
        return list(idxs[self.rank :: self.size])

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over all processes (one all-reduce; identity in a world of one)."""
        if self.size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(tensor, reduction="sum").tolist()

    def gather(self, obj: object) -> list:
        """Every process's ``obj``, in rank order."""
        return [obj] if self.size == 1 else gather_object([obj])

    def on_main(self, write: Callable[[], T]) -> T | None:
        """Run ``write`` on the main process only, and let every process know whether it failed.

        Without this an error in a main-only write (a full disk, say) ends the main process while the others wait
        in their next collective until its timeout (where no launcher stops them, e.g. on other machines). The
        flag travels in one all-reduce, which is also the barrier after the write. A world of one just calls it.
        """
        if self.size == 1:
            return write()
        result, error = None, None
        if self.is_main:
            try:
                result = write()
            except Exception as exc:  # noqa: BLE001 - re-raised below, once the others know
                error = exc
        (failed,) = self.sum([0.0 if error is None else 1.0])
        if error is not None:
            raise error
        if failed:
            raise SeqtuneError(
                f"process {self.rank}: stopping because the main process failed writing the run folder; its "
                "error message says why"
            )
        return result

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def split_rows(self, n: int) -> np.ndarray:
        """Row indices of an ``n``-row evaluation split this process scores (each row exactly once overall)."""
        return np.arange(self.rank, n, self.size)

    def join_rows(self, n: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Put every process's ``values`` for its ``rows`` back into one ``[n, ...]`` array, in split order.

        Unlike a distributed sampler's gather, nothing is padded or repeated, so metrics see exactly the split.
        """
        if self.size == 1:
            return values
        parts = self.gather((rows, values))
        out = np.empty((n, *values.shape[1:]), dtype=values.dtype)
        seen = np.zeros(n, dtype=np.int64)
        for part_rows, part_values in parts:
            out[part_rows] = part_values
            seen[part_rows] += 1
        if not (seen == 1).all():  # an internal invariant; a wrong count here would silently skew every metric
            raise RuntimeError(f"evaluation gathered {int(seen.sum())} rows for a split of {n}")
        return out

    def describe(self, per_device: int, grad_accum: int) -> dict[str, int | str]:
        """What the run folder records about the world: sizes, and the global batch it implies."""
        return {
            "world_size": self.size,
            "per_device_batch_size": per_device,
            "grad_accum": grad_accum,
            "global_batch_size": per_device * self.size * grad_accum,
            "backend": str(self.accelerator.distributed_type.value).lower(),
        }

    def check_resume(self, saved_world: int, checkpoint: object) -> None:
        """Exact resume replays each process's share of the data and RNG, so the world must be the same."""
        if saved_world != self.size:
            raise SeqtuneError(
                f"{checkpoint}: written by a run with {saved_world} process(es), resumed with {self.size}; exact "
                f"resume needs the same number: relaunch with {saved_world} (e.g. torchrun --nproc_per_node "
                f"{saved_world} -m seqtune train --resume ...)"
            )


def launch_world() -> World:
    """The world this process belongs to: a launcher's (torchrun / accelerate launch sets ``WORLD_SIZE``) or one.

    accelerate only sets up a CPU process group (gloo) when told the run is on CPU, so a launched run on a machine
    without a GPU says so; a single process keeps accelerate's own device choice (CUDA, MPS, CPU).
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return World(Accelerator(cpu=launched and not torch.cuda.is_available()))


def step_share(world: World, idxs: Sequence[int]) -> tuple[list[int], float]:
    """This process's examples of one optimizer step and the weight its loss gets.

    DDP averages gradients over processes, so each process's summed loss is scaled by ``size / n``: the result
    is exactly the mean loss over the step's ``n`` examples, whatever the split. A process left without
    examples (a final batch smaller than the world) runs one example with weight 0.
    """
    local = world.shard(idxs)
    if not local:
        return list(idxs[:1]), 0.0
    return local, world.size / len(idxs)
