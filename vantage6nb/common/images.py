"""Image references: parsing ``registry/name:tag@digest`` and matching names against patterns."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ImageRef", "image_matches", "parse_image"]


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: ``registry/name:tag@digest`` (each part but ``name`` optional)."""

    registry: str | None
    name: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """Registry and name, without tag or digest."""
        return f"{self.registry}/{self.name}" if self.registry else self.name


def parse_image(image: str) -> ImageRef:
    """Split an image reference into registry, name, tag and digest.

    Examples
    --------
    >>> parse_image("127.0.0.1:5000/v6nb/summary:1.0@sha256:ab")
    ImageRef(registry='127.0.0.1:5000', name='v6nb/summary', tag='1.0', digest='sha256:ab')
    >>> parse_image("v6nb/summary").name
    'v6nb/summary'
    """
    rest, digest = image.strip(), None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
    registry = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, rest = first, remainder
    return ImageRef(registry=registry, name=rest, tag=tag, digest=digest)


def image_matches(image: str, patterns: Iterable[str]) -> bool:
    """Whether ``image`` (as given, by repository or by name, with or without its tag) matches
    one of the fnmatch ``patterns``.

    Examples
    --------
    >>> image_matches("127.0.0.1:5000/v6nb/summary:1.0", ["v6nb/*"])
    True
    >>> image_matches("evil/miner", ["v6nb/*"])
    False
    """
    ref = parse_image(image)
    candidates = {image, ref.repository, ref.name}
    if ref.tag:
        candidates |= {f"{ref.repository}:{ref.tag}", f"{ref.name}:{ref.tag}"}
    return any(fnmatch.fnmatchcase(c, pat) for pat in patterns for c in candidates)
