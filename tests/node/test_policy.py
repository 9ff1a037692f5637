"""Image policy: allowed names and patterns, pinned digests, and reasons that say what to change."""

from __future__ import annotations

import pytest

from node_app.policy import ImagePolicy, parse_image


@pytest.mark.parametrize(
    ("image", "registry", "name", "tag", "digest"),
    [
        ("v6nb/summary", None, "v6nb/summary", None, None),
        ("v6nb/summary:1.2", None, "v6nb/summary", "1.2", None),
        ("127.0.0.1:5000/v6nb/summary:1.2", "127.0.0.1:5000", "v6nb/summary", "1.2", None),
        ("localhost/x@sha256:aa", "localhost", "x", None, "sha256:aa"),
        (
            "harbor.example.org/algos/avg:2@sha256:bb",
            "harbor.example.org",
            "algos/avg",
            "2",
            "sha256:bb",
        ),
    ],
)
def test_parse_image(image, registry, name, tag, digest) -> None:
    ref = parse_image(image)
    assert (ref.registry, ref.name, ref.tag, ref.digest) == (registry, name, tag, digest)


@pytest.mark.parametrize(
    ("allowed", "image", "ok"),
    [
        (["v6nb/*"], "v6nb/summary", True),
        (["v6nb/*"], "127.0.0.1:5000/v6nb/summary:1.0", True),
        (["v6nb/*"], "evil/v6nb", False),
        (["exact/name"], "exact/name:3", True),
        (["exact/name"], "exact/names", False),
        (["127.0.0.1:5000/*"], "127.0.0.1:5000/any/thing", True),
        (["127.0.0.1:5000/*"], "other.org/any/thing", False),
        ([], "v6nb/summary", False),
        (["*"], "anything/at-all", True),
    ],
)
def test_allowed(allowed, image, ok) -> None:
    assert ImagePolicy(allowed).check(image).allowed is ok


def test_refusal_names_image_and_setting() -> None:
    decision = ImagePolicy(["v6nb/*"]).check("evil/miner:latest")
    assert not decision.allowed
    assert "'evil/miner:latest'" in decision.reason and "allowed_images" in decision.reason


def test_pinned_digest() -> None:
    policy = ImagePolicy(["*"], {"127.0.0.1:5000/v6nb/summary": "sha256:good"})
    ok = policy.check("127.0.0.1:5000/v6nb/summary:1.0")
    assert ok.allowed and ok.digest == "sha256:good"
    bad = policy.check("127.0.0.1:5000/v6nb/summary@sha256:evil")
    assert not bad.allowed
    assert "sha256:evil" in bad.reason and "image_digests" in bad.reason
    assert policy.check("127.0.0.1:5000/v6nb/summary@sha256:good").allowed


def test_empty_image_refused() -> None:
    assert not ImagePolicy(["*"]).check("").allowed
