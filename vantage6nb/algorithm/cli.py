"""``v6nb algorithm``: build an algorithm image from a package folder and push it to a registry."""

from __future__ import annotations

import argparse
import sys

from ..common.errors import V6Error

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="v6nb algorithm", description=__doc__)
    sub = p.add_subparsers(dest="command")
    b = sub.add_parser(
        "build", help="build an image from a package folder (docker build --network none)"
    )
    b.add_argument("path", help="folder with the algorithm package (pyproject.toml or setup.py)")
    b.add_argument(
        "--tag", "-t", required=True, help="image name, e.g. 127.0.0.1:5000/me/average:1.0"
    )
    b.add_argument(
        "--push",
        action="store_true",
        help="push to the registry named in --tag and print the digest",
    )
    b.add_argument(
        "--base",
        default=None,
        help="parent image (default v6nb/python:latest, from scripts/build-images.sh)",
    )
    b.add_argument(
        "--module",
        default=None,
        help="module with the methods (default: the PKG_NAME of a vantage6-style Dockerfile, else the package folder named like the distribution, else the distribution name)",
    )
    ps = sub.add_parser(
        "push", help="push an image to the registry named in its tag and print the digest"
    )
    ps.add_argument(
        "tag", help="image name including its registry, e.g. 127.0.0.1:5000/me/average:1.0"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``v6nb algorithm``; returns the exit code.

    Examples
    --------
    >>> main(["build", "my_algorithm/", "--tag", "127.0.0.1:5000/me/avg:1", "--push"])  # doctest: +SKIP
    127.0.0.1:5000/me/avg:1 sha256:...
    0
    """
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .build import DEFAULT_BASE, build_image, push_image

    try:
        if args.command == "build":
            built = build_image(
                args.path,
                tag=args.tag,
                base=args.base or DEFAULT_BASE,
                module=args.module,
                push=args.push,
            )
        else:
            built = push_image(args.tag)
    except V6Error as exc:
        print(f"v6nb algorithm {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # no engine, engine errors: say so instead of a traceback
        print(
            f"v6nb algorithm {args.command}: {exc} (is a Docker engine running? scripts/setup-docker.sh)",
            file=sys.stderr,
        )
        return 1
    print(f"{built.tag} {built.digest or built.image_id}")
    return 0
