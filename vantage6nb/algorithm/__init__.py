"""The algorithm developer kit: the wrapper that runs a method, data loading, the proxy client."""

from ._wrap import wrap_algorithm

__all__ = ["wrap_algorithm"]
