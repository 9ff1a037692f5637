"""``python -m vantage6nb.algorithm [module]`` runs one run; ``... --describe [module]`` prints its roles."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "--describe":  # no module name starts with "-"
    from ._roles import describe_command

    sys.exit(describe_command(sys.argv[2:]))

from ._wrap import wrap_algorithm  # noqa: E402 - after the cheap --describe branch

sys.exit(wrap_algorithm(sys.argv[1] if len(sys.argv) > 1 else None))
