"""``torchrun --nproc_per_node N -m trainer.ddp [shine train options]``: ``shine train`` as a DDP job.

The same as ``torchrun ... -m shine.cli train ...`` (``shine train`` detects torchrun's environment); see
:mod:`trainer.distributed` for what changes with more than one process.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``shine train`` with ``argv`` (default: the command line)."""
    from shine.cli import main as shine_main

    return shine_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
