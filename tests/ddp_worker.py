"""Launched by torchrun from tests/test_distributed.py: a distributed run that stops after N optimizer steps,
as a preempted job would (checkpoint saved, run folder left resumable)."""

import sys

from seqtune.config import load_config
from seqtune.training import train

if __name__ == "__main__":
    train(load_config(None, sys.argv[2:]), stop_after_steps=int(sys.argv[1]))
