"""A local demo network in one call: ``vantage6nb.demo.start(nodes=3)`` starts a real server and nodes on loopback.

The Palmer penguins data (``data/penguins.csv``, CC0, see ``data/LICENSE-palmerpenguins.txt``) is
split, unequally and deterministically, over the nodes.
"""

from ._network import DemoNetwork, start
from ._processes import free_port
from ._running import RunningDemo, running
from ._setup import organization_names, split_dataset

__all__ = [
    "DemoNetwork",
    "RunningDemo",
    "free_port",
    "organization_names",
    "running",
    "split_dataset",
    "start",
]
