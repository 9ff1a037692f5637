"""Build an algorithm image from a package folder, offline (``docker build --network none``), and push it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from ..common.errors import V6Error, ValidationError
from ._roles import FUNCTIONS_LABEL

__all__ = [
    "DEFAULT_BASE",
    "BuildFailed",
    "BuiltImage",
    "build_image",
    "package_layout",
    "push_image",
]

DEFAULT_BASE = (
    "v6nb/python:latest"  # v6nb/base + pandas, numpy, pyarrow, ... and the vantage6nb kit
)
WHEEL_CACHE = Path("/var/cache/v6nb/wheels")  # where scripts/build-images.sh keeps its wheels
_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".venv"
)

_DOCKERFILE = """\
FROM {base}
USER 0
COPY wheels /wheels
RUN python3 -m pip install --no-index --find-links /wheels --break-system-packages \\
        --disable-pip-version-check --no-warn-script-location {dist} && rm -rf /wheels
ENV PKG_NAME={module} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp{wrapper}
LABEL org.vantage6nb.algorithm={module}
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT {entrypoint}
"""
_OUR_WRAPPER = ["python3", "-m", "vantage6nb.algorithm"]
# what vantage6's template Dockerfile runs (its CMD), here as the entry point
_VANTAGE6_WRAPPER = [
    "python3",
    "-c",
    "from vantage6.algorithm.tools.wrap import wrap_algorithm; wrap_algorithm()",
]
# vantage6's template: `ARG PKG_NAME="v6-crosstab-py"` / `ENV PKG_NAME=...`, and a CMD calling its wrapper
_PKG_NAME = re.compile(r"^\s*(?:ARG|ENV)\s+PKG_NAME\s*=?\s*[\"']?([A-Za-z0-9_.-]+)[\"']?\s*$", re.M)
_V6_WRAPPER = re.compile(r"vantage6\.algorithm\.tools\.wrap\b.*\bwrap_algorithm\b", re.S)
# Second step: the roles ``--describe`` printed inside the image, as a label (no new layer).
_LABEL_DOCKERFILE = "FROM {image}\nLABEL {label}={value}\n"


class BuildFailed(V6Error):
    """Building or pushing an algorithm image failed; the message holds the tool's own words."""

    status, code = 400, "build_failed"


@dataclass(frozen=True)
class BuiltImage:
    """An image built (and maybe pushed): its tag, local id, and registry digest when pushed."""

    tag: str
    image_id: str
    digest: str | None = None


def _project(path: Path) -> tuple[str, str]:
    """The distribution name and the importable module of the package at ``path``."""
    pyproject = path / "pyproject.toml"
    name = None
    if pyproject.is_file():
        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    if name is None and (path / "setup.py").is_file():
        out = subprocess.run(
            [sys.executable, "setup.py", "--name"],
            cwd=path,
            capture_output=True,
            text=True,
            check=False,
        )
        name = (
            out.stdout.strip().splitlines()[-1]
            if out.returncode == 0 and out.stdout.strip()
            else None
        )
    if not name:
        raise ValidationError(
            f"'{path}' is not a Python package folder: it needs a pyproject.toml with [project] name, or a setup.py"
        )
    return name, re.sub(r"[-.]+", "_", name).lower()


def package_layout(path: str | Path) -> tuple[str, str, bool]:
    """The distribution name, the module to run and whether vantage6's wrapper runs it.

    The module is the ``PKG_NAME`` a vantage6-style Dockerfile in the folder sets (vantage6's
    template: code in a folder named like the package, ``v6-crosstab-py``, which imports under that
    name), else the package folder named like the distribution, else the distribution name with
    ``-`` as ``_``. vantage6's wrapper runs it when that Dockerfile calls
    ``vantage6.algorithm.tools.wrap.wrap_algorithm``.

    Examples
    --------
    >>> package_layout("tests/data/v6_algorithms/v6-average-py")  # doctest: +SKIP
    ('v6-average-py', 'v6-average-py', True)
    """
    src = Path(path)
    dist, module = _project(src)
    dockerfile = src / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8", errors="replace") if dockerfile.is_file() else ""
    named = _PKG_NAME.findall(text)
    if named:
        module = named[-1]
    elif (src / dist / "__init__.py").is_file():
        module = dist
    return dist, module, bool(_V6_WRAPPER.search(text))


def _wheels(
    src: Path, dest: Path, find_links: Sequence[str | Path] = (), offline: bool = False
) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(dest), str(src)]
    for cache in sorted(WHEEL_CACHE.glob("py*")) if WHEEL_CACHE.is_dir() else []:
        cmd[4:4] = ["--find-links", str(cache)]  # the kit's own wheel and the common data stack
    for extra in find_links:
        cmd[4:4] = ["--find-links", str(extra)]
    if offline:
        cmd[4:4] = ["--no-index"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-15:])
        raise BuildFailed(
            f"pip wheel failed for '{src.name}' (are its dependencies on the package index?):\n{tail}"
        )


def _split_tag(tag: str) -> tuple[str, str]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``), the tag defaulting to ``latest``."""
    head, _, last = tag.rpartition("/")
    if ":" in last:
        last, _, image_tag = last.partition(":")
    else:
        image_tag = "latest"
    return (f"{head}/{last}" if head else last), image_tag


def build_image(
    path: str | Path,
    *,
    tag: str,
    base: str = DEFAULT_BASE,
    module: str | None = None,
    push: bool = False,
    client: Any = None,
    find_links: Sequence[str | Path] = (),
    offline: bool = False,
) -> BuiltImage:
    """Build an algorithm image from a package folder with ``docker build --network none``.

    The package and its dependencies become wheels on the host first (``pip wheel``); the build
    installs them with ``--no-index``, so it needs no network. The image runs
    ``python3 -m vantage6nb.algorithm`` with ``PKG_NAME`` set to ``module`` (default: see
    :func:`package_layout`), as user 10001. A vantage6-style package (a Dockerfile calling
    vantage6's ``wrap_algorithm``) runs through vantage6's own wrapper, as that Dockerfile's
    ``CMD`` would (``V6NB_WRAPPER=vantage6`` says so in the image); its other lines are not used. ``find_links`` adds folders of wheels for
    ``pip wheel``; ``offline`` takes wheels from them only (``--no-index``). The image carries the label
    ``org.vantage6nb.functions``: the module's roles (``@federated``, ``@entry_point``), read by
    running ``--describe`` in the built image.

    Examples
    --------
    >>> build_image("my_algorithm/", tag="127.0.0.1:5000/me/avg:1", push=True).digest  # doctest: +SKIP
    'sha256:...'
    """
    import docker
    import docker.errors

    src = Path(path).resolve()
    if not src.is_dir():
        raise ValidationError(
            f"'{path}' is not a folder; give the folder that holds your pyproject.toml"
        )
    dist, default_module, vantage6_wrapper = package_layout(src)
    client = client or docker.from_env(timeout=600)
    with tempfile.TemporaryDirectory(prefix="v6nb-build-") as tmp:
        ctx = Path(tmp)
        copy = ctx / "src"
        shutil.copytree(
            src, copy, ignore=_IGNORE
        )  # build from a copy: no droppings in the user's folder
        (ctx / "wheels").mkdir()
        _wheels(copy, ctx / "wheels", find_links, offline)
        shutil.rmtree(copy)
        if base == DEFAULT_BASE:  # its parent already holds these: keep them out of the new layer
            for cache in WHEEL_CACHE.glob("py*"):
                for whl in cache.glob("*.whl"):
                    (ctx / "wheels" / whl.name).unlink(missing_ok=True)
        (ctx / "Dockerfile").write_text(
            _DOCKERFILE.format(
                base=base,
                dist=dist,
                module=module or default_module,
                wrapper=" V6NB_WRAPPER=vantage6" if vantage6_wrapper else "",
                entrypoint=json.dumps(_VANTAGE6_WRAPPER if vantage6_wrapper else _OUR_WRAPPER),
            )
        )
        try:
            # untagged: the tag goes on the next step's image, which adds the roles label
            image, _ = client.images.build(
                path=str(ctx), network_mode="none", rm=True, forcerm=True
            )
        except docker.errors.BuildError as exc:
            lines = [c.get("stream", "") or c.get("error", "") for c in exc.build_log]
            raise BuildFailed(f"docker build failed: {exc.msg}\n{''.join(lines)[-2000:]}") from exc
        except docker.errors.APIError as exc:
            raise BuildFailed(f"docker build failed: {exc.explanation or exc}") from exc
        image = _label_functions(client, image.id, module or default_module, tag, ctx / "label")
    built = BuiltImage(tag=tag, image_id=image.id)
    return push_image(tag, client=client) if push else built


def _dockerfile_string(value: str) -> str:
    """``value`` as a double-quoted Dockerfile string (backslash, quote and ``$`` escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _label_functions(client: Any, image_id: str, module: str, tag: str, ctx: Path) -> Any:
    """Tag ``image_id`` plus the label :data:`FUNCTIONS_LABEL` holding ``module``'s roles.

    The roles are read inside the image (``--describe``, no network): there the module imports
    with the Python and the dependencies the node will run it with, which the host may not have.
    """
    import docker.errors

    try:
        out = client.containers.run(
            image_id,
            ["--describe", module],
            entrypoint=_OUR_WRAPPER,  # a vantage6-style image's own runs vantage6's wrapper
            network_mode="none",
            remove=True,
            stdout=True,
            stderr=False,
        )
        table = json.loads(out)["functions"]
        if not isinstance(table, dict):
            raise TypeError(f"'functions' is a {type(table).__name__}, not an object")
    except docker.errors.ContainerError as exc:
        why = (exc.stderr or b"").decode("utf-8", "replace").strip()[-2000:]
        raise BuildFailed(
            f"the image cannot import '{module}' (python3 -m vantage6nb.algorithm --describe "
            f"{module} failed): {why or exc}; check --module and the package's dependencies"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildFailed(f"--describe {module} printed no roles table: {exc}") from exc
    except docker.errors.APIError as exc:
        raise BuildFailed(
            f"describing '{module}' in the image failed: {exc.explanation or exc}"
        ) from exc
    ctx.mkdir()
    value = _dockerfile_string(json.dumps({"functions": table}, sort_keys=True))
    (ctx / "Dockerfile").write_text(
        _LABEL_DOCKERFILE.format(image=image_id, label=FUNCTIONS_LABEL, value=value)
    )
    try:
        image, _ = client.images.build(path=str(ctx), tag=tag, network_mode="none", rm=True)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise BuildFailed(f"docker build of the roles label failed: {exc}") from exc
    return image


def push_image(tag: str, *, client: Any = None) -> BuiltImage:
    """Push ``tag`` (which must name its registry, e.g. ``127.0.0.1:5000/me/avg:1``); returns its digest.

    Examples
    --------
    >>> push_image("127.0.0.1:5000/me/avg:1").digest  # doctest: +SKIP
    'sha256:...'
    """
    import docker

    repository, image_tag = _split_tag(tag)
    first = repository.split("/", 1)[0]
    if "/" not in repository or not ("." in first or ":" in first or first == "localhost"):
        raise ValidationError(
            f"cannot push '{tag}': name the image with its registry, e.g. 127.0.0.1:5000/{repository}:{image_tag}"
        )
    client = client or docker.from_env(timeout=600)
    errors = [
        line["error"]
        for line in client.images.push(repository, tag=image_tag, stream=True, decode=True)
        if "error" in line
    ]
    if errors:
        raise BuildFailed(f"push of '{tag}' failed: {errors[-1]}")
    image = client.images.get(tag)
    digest = next(
        (
            d.split("@", 1)[1]
            for d in image.attrs.get("RepoDigests") or []
            if d.startswith(repository + "@")
        ),
        None,
    )
    return BuiltImage(tag=tag, image_id=image.id, digest=digest)
