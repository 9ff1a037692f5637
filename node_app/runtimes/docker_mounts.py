"""Where a run's files appear inside its container: bind mounts and the in-container paths."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .base import RunSpec

__all__ = ["DATA_DIR", "ContainerFiles", "container_files"]

RUN_DIR = "/v6nb"
DATA_DIR = f"{RUN_DIR}/data"
_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?):///(.+)$")


@dataclass
class ContainerFiles:
    """The in-container paths of one run's files and the bind mounts that put them there.

    ``outdir`` is a fresh host folder, the only writable mount; the runtime moves the output from
    there to ``RunSpec.output_file`` when the run completes.
    """

    input_file: str
    token_file: str
    output_file: str
    outdir: Path
    volumes: list[str] = field(default_factory=list)  # "host:container:mode", the SDK's list form
    database_uris: dict[str, str] = field(default_factory=dict)


def container_files(spec: RunSpec, *, outdir_owner: tuple[int, int]) -> ContainerFiles:
    """Plan the mounts for ``spec``: input and token read-only, data read-only, one writable output folder.

    Files given by path (csv, parquet, excel, an ``sqlite:///`` URL) are mounted read-only under
    ``/v6nb/data`` and their URIs rewritten; other SQL URLs pass unchanged (the container has no
    network, so they only work through the proxy, never directly).

    Examples
    --------
    >>> from node_app.runtimes.base import DatabaseMount, RunSpec  # doctest: +SKIP
    >>> files = container_files(spec, outdir_owner=(10001, 10001))  # doctest: +SKIP
    >>> files.database_uris["default"]  # doctest: +SKIP
    '/v6nb/data/default.csv'
    """
    outdir = spec.workdir / f".v6nb-output-{spec.run_id}"
    outdir.mkdir(parents=True, exist_ok=True)
    os.chmod(outdir, 0o700)
    files = ContainerFiles(
        input_file=f"{RUN_DIR}/input",
        token_file=f"{RUN_DIR}/token",
        output_file=f"{RUN_DIR}/output/{spec.output_file.name or 'output'}",
        outdir=outdir,
    )
    if os.geteuid() == 0:
        # The algorithm's uid must read its input and token and write its output; nobody else may.
        uid, gid = outdir_owner
        os.chown(outdir, uid, gid)
        for path in (spec.input_file, spec.token_file):
            if path.exists():
                os.chown(path, uid, gid)
                os.chmod(path, 0o400)
    files.volumes.append(f"{spec.input_file.resolve()}:{files.input_file}:ro")
    files.volumes.append(f"{spec.token_file.resolve()}:{files.token_file}:ro")
    files.volumes.append(f"{outdir.resolve()}:{RUN_DIR}/output:rw")
    for i, db in enumerate(spec.databases):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", db.label) or f"db{i}"
        sqlite = _SQLITE.match(db.uri)
        host_path = sqlite.group(2) if sqlite else db.uri
        if db.type == "sql" and not sqlite:
            files.database_uris[db.label] = db.uri
            continue
        host_path = str(Path(host_path).resolve())
        suffix = Path(host_path).suffix
        inside = f"{DATA_DIR}/{i}-{safe}{suffix}"
        files.volumes.append(f"{host_path}:{inside}:ro")
        files.database_uris[db.label] = f"{sqlite.group(1)}:///{inside}" if sqlite else inside
    return files
