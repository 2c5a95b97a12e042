"""``python -m kvmpmu``: the same as the ``kvmpmu`` console script."""
import sys

from kvmpmu.cli import main

if __name__ == "__main__":
    sys.exit(main())
