"""The node's image policy: which algorithm images may run here, and at which pinned digest."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ImagePolicy", "ImageRef", "PolicyDecision", "parse_image"]


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


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome of a policy check: ``allowed``, why not, and the digest to enforce (if pinned)."""

    allowed: bool
    reason: str = ""
    digest: str | None = None


class ImagePolicy:
    """Allowed images (exact names or fnmatch patterns) and pinned digests, from node configuration.

    Examples
    --------
    >>> policy = ImagePolicy(["v6nb/*"], {})
    >>> policy.check("v6nb/summary:latest").allowed
    True
    >>> print(policy.check("evil/miner").reason)  # doctest: +ELLIPSIS
    image 'evil/miner' is not allowed on this node...
    """

    def __init__(self, allowed: Sequence[str], digests: Mapping[str, str] | None = None) -> None:
        self.allowed = list(allowed)
        self.digests = {parse_image(k).repository: v for k, v in (digests or {}).items()}
        self._digest_by_name = {parse_image(k).name: v for k, v in (digests or {}).items()}

    def _matches(self, image: str, ref: ImageRef) -> bool:
        candidates = {image, ref.repository, ref.name}
        if ref.tag:
            candidates |= {f"{ref.repository}:{ref.tag}", f"{ref.name}:{ref.tag}"}
        return any(fnmatch.fnmatchcase(c, pat) for pat in self.allowed for c in candidates)

    def check(self, image: str) -> PolicyDecision:
        """Decide whether ``image`` may run; the reason names the image and the setting to change."""
        if not image or not image.strip():
            return PolicyDecision(False, "the task names no image")
        ref = parse_image(image)
        if not self._matches(image, ref):
            shown = ", ".join(self.allowed) if self.allowed else "nothing"
            return PolicyDecision(
                False,
                f"image '{image}' is not allowed on this node (allowed: {shown}); "
                "the node's administrator can add it to `allowed_images` in node.yaml",
            )
        pinned = self.digests.get(ref.repository) or self._digest_by_name.get(ref.name)
        if pinned and ref.digest and ref.digest != pinned:
            return PolicyDecision(
                False,
                f"image '{image}' has digest {ref.digest}, but this node pins {pinned}; "
                "the node's administrator can change `image_digests` in node.yaml",
            )
        return PolicyDecision(True, "", pinned or ref.digest)
