"""``python -m server_app start --config server.yaml``."""

import sys

from .cli import main

sys.exit(main())
