"""Launched by torchrun from tests/test_distributed.py: the main process's disk is full when it saves the first
checkpoint (the best model after the first evaluation); the other process must stop too, with its own message."""

import errno
import os
import sys

from seqtune import checkpoint as ckpt
from seqtune.config import load_config
from seqtune.training import train


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


if __name__ == "__main__":
    if os.environ.get("RANK") == "0":
        ckpt.save_model = full_disk
    train(load_config(None, sys.argv[1:]))
