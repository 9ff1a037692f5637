"""``python -m node_app start --config node.yaml``."""

import sys

from .cli import main

sys.exit(main())
