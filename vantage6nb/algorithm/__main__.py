"""``python -m vantage6nb.algorithm [module]``: the command a runtime executes for one run."""

import sys

from ._wrap import wrap_algorithm

sys.exit(wrap_algorithm(sys.argv[1] if len(sys.argv) > 1 else None))
