"""The node's image policy: which algorithm images may run here, and at which pinned digest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vantage6nb.common.images import ImageRef, image_matches, parse_image

__all__ = ["ImagePolicy", "ImageRef", "PolicyDecision", "parse_image"]


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

    def check(self, image: str) -> PolicyDecision:
        """Decide whether ``image`` may run; the reason names the image and the setting to change."""
        if not image or not image.strip():
            return PolicyDecision(False, "the task names no image")
        ref = parse_image(image)
        if not image_matches(image, self.allowed):
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
