"""`python -m seqtune ...` (what `accelerate launch -m seqtune` and `torchrun -m seqtune` run)."""

import sys

from seqtune.cli import main

sys.exit(main())
