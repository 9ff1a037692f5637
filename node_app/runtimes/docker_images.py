"""Which image a Docker run uses: local or pulled, checked against its pinned digest; its labels."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from vantage6nb.common.disclosure import FUNCTIONS_LABEL
from vantage6nb.common.schemas import RunStatus

from ..policy import ImageRef, parse_image
from .base import RunSpec, RuntimeRefusal, functions_table

__all__ = [
    "FUNCTIONS_LABEL",
    "explain",
    "find_image",
    "image_digests",
    "image_functions",
    "lookup_image",
]


def find_image(client: Any, spec: RunSpec, registry: str | None) -> Any:
    """The image ``spec`` names, pulled (by digest when pinned) and verified against its pin.

    ``registry`` is used for names that name none. Raises :class:`RuntimeRefusal` (NOT_ALLOWED on a
    digest mismatch, FAILED when the image cannot be had).
    """
    return lookup_image(client, spec.image, spec.digest, registry)


def lookup_image(client: Any, name: str, digest: str | None, registry: str | None) -> Any:
    """:func:`find_image` for an image name and its pinned digest (None: not pinned)."""
    import docker.errors

    ref = parse_image(name)
    pinned = digest or ref.digest
    if digest and ref.digest and digest != ref.digest:
        raise RuntimeRefusal(
            RunStatus.NOT_ALLOWED,
            f"digest mismatch: expected {digest}, got {ref.digest} (in the image name)",
        )
    if not ref.registry and registry:
        ref = dataclasses.replace(ref, registry=registry)
    if ref.registry:
        image = _pull(client, ref, pinned)
    else:
        local = name.split("@", 1)[0]
        try:
            image = client.images.get(local if ref.tag else f"{local}:latest")
        except docker.errors.ImageNotFound as exc:
            raise RuntimeRefusal(
                RunStatus.FAILED,
                f"image '{name}' is not on this node's Docker engine: build it with "
                "`v6nb algorithm build`, or name it with its registry (e.g. 127.0.0.1:5000/...) "
                "so the node pulls it",
            ) from exc
    if pinned:
        have = image_digests(image, ref.repository)
        if pinned not in have:
            got = have[0]  # the registry digest when there is one, else the image id
            raise RuntimeRefusal(
                RunStatus.NOT_ALLOWED, f"digest mismatch: expected {pinned}, got {got}"
            )
    return image


def _pull(client: Any, ref: ImageRef, pinned: str | None) -> Any:
    """The image from its registry: by the pinned digest when there is one, else by tag."""
    import docker.errors

    if pinned:
        # Content addressed: an image already here under that digest is that image; no round trip.
        with contextlib.suppress(docker.errors.APIError):  # not here, or not a valid digest
            return client.images.get(f"{ref.repository}@{pinned}")
    tag = ref.tag or "latest"
    attempts = [pinned, tag] if pinned and not ref.digest else [pinned or tag]
    for i, attempt in enumerate(attempts):
        what = f"{ref.repository}{'@' if attempt.startswith('sha256:') else ':'}{attempt}"
        try:
            return client.images.pull(ref.repository, tag=attempt)
        except docker.errors.APIError as exc:
            if i + 1 < len(attempts):
                # The registry does not hold the pinned digest: pull the tag to report which
                # digest it serves instead (prepare() then refuses it as a digest mismatch).
                continue
            if isinstance(exc, docker.errors.NotFound):  # "manifest unknown": no such image
                raise RuntimeRefusal(RunStatus.FAILED, _not_found(ref, attempt, what)) from exc
            raise RuntimeRefusal(RunStatus.FAILED, f"pull failed: {what}: {explain(exc)}") from exc
        except Exception as exc:  # connection reset, timeout
            raise RuntimeRefusal(RunStatus.FAILED, f"pull failed: {what}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _not_found(ref: ImageRef, attempt: str, what: str) -> str:
    """What a researcher reads when the registry has no such image (or no such tag or digest)."""
    which = "digest" if attempt.startswith("sha256:") else "tag"
    return (
        f"pull failed: {what}: the registry {ref.registry} has no image '{ref.name}' with "
        f"{which} '{attempt}'; check the image name and its {which} for typos (image=... of the "
        "task), and that the image was pushed to that registry"
    )


def image_digests(image: Any, repository: str | None = None) -> list[str]:
    """The digests an image is known by: its registry digests (for ``repository`` first) and its id."""
    digests: list[str] = []
    for rd in image.attrs.get("RepoDigests") or []:
        repo, _, digest = rd.partition("@")
        if (
            repository is None
            or repo == repository
            or parse_image(repo).name == parse_image(repository).name
        ):
            digests.append(digest)
    digests.append(image.id)
    return list(dict.fromkeys(digests))


def image_functions(image: Any) -> dict[str, str] | None:
    """The roles an image declares in its ``org.vantage6nb.functions`` label; None without one."""
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    shown = ", ".join(getattr(image, "tags", None) or []) or image.id
    return functions_table(labels.get(FUNCTIONS_LABEL), source=f"image {shown}")


def explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
