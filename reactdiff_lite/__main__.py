import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a busy (shared) CPU, spinning threads of
# small torch ops fight for the cores and run several times slower. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from reactdiff_lite.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
