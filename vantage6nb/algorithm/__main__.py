"""``python -m vantage6nb.algorithm [module]`` runs one run; ``... --describe [module]`` prints its roles.

The node's environment is decoded in place first (vantage6 encodes every value), so vantage6's
decorators, which read ``os.environ``, see plain values. A module whose distribution is built on
``vantage6-algorithm-tools`` runs through vantage6's own ``wrap_algorithm`` (``V6NB_WRAPPER``:
``vantage6`` or ``vantage6nb`` decides instead of the distribution); any other through ours.
"""

import os
import sys

if len(sys.argv) > 1 and sys.argv[1] == "--describe":  # no module name starts with "-"
    from ._roles import describe_command

    sys.exit(describe_command(sys.argv[2:]))

from ..common.contract import decode_environment  # noqa: E402 - after the cheap --describe branch
from ._vantage6 import built_on_vantage6, run_vantage6_wrapper  # noqa: E402
from ._wrap import wrap_algorithm  # noqa: E402

decode_environment(os.environ)
_module = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PKG_NAME")
# V6NB_WRAPPER (set in an image by `v6nb algorithm build`): vantage6, vantage6nb, or auto
_wrapper = os.environ.get("V6NB_WRAPPER", "auto")
if _module and (_wrapper == "vantage6" or (_wrapper == "auto" and built_on_vantage6(_module))):
    sys.exit(run_vantage6_wrapper(_module))
sys.exit(wrap_algorithm(_module))
