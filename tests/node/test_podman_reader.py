"""A node without root reads a rootless Podman run's volume through its reader in the user's namespaces."""

# The node runs as the Podman user (as in production for a hospital without root); its
# VolumeReader (podman unshare ... node_app.runtimes.podman_reader) reads the run volume as the
# user namespace's root. Every case runs in one script as that user, against real side-cars;
# where the reader must decide alone, the node passes no container (holder None), so that a
# fallback to the archive API would fail the case instead of hiding a missing check.

# ruff: noqa: F811 - the Podman fixtures, imported by name, are arguments of the tests

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .test_podman_runtime import (  # noqa: F401 - the Podman fixtures
    REGISTRY,
    _copy_sources,
    _service_user,
    _user_python,
    podman_client,
    podman_images,
    podman_socket,
    shared_base,
)

pytestmark = pytest.mark.podman

_SCRIPT = r"""
import json, os, secrets, signal, sys, time
from pathlib import Path
from node_app.runtimes.base import RuntimeRefusal
from node_app.runtimes.docker_mounts import IO_DIR
from node_app.runtimes.docker_sidecar import remove
from node_app.runtimes.podman import PodmanRuntime, VolumeReader

sock, work = Path(sys.argv[1]), Path(sys.argv[2])
OUT, LIMIT = f"{IO_DIR}/output", 1 << 20
rt = PodmanRuntime(socket=sock, node_name="reader-" + secrets.token_hex(3), registry=sys.argv[3])
uid, gid = rt._user_ids()
folder = work / "node-folder"
folder.mkdir()
secret = folder / "output.json"
secret.write_text('{"node": "secret-7d1"}')
seen = {}


class Counting:
    # the side-car's container, counting what goes through the archive API
    def __init__(self, inner):
        self.inner, self.archive = inner, 0

    def get_archive(self, *args, **kwargs):
        self.archive += 1
        return self.inner.get_archive(*args, **kwargs)


def take(volume, holder, dest):
    try:
        volume.take_output(holder, "output.json", dest, limit=LIMIT)
        return ["ok", dest.read_text()]
    except RuntimeRefusal as refusal:
        return ["refused", refusal.reason]
    except FileNotFoundError:
        return ["missing", None]
    except Exception as exc:
        return ["error", type(exc).__name__]


def case(name, layout, fn):
    car = rt._start_sidecar(None, f"v6nb-{rt._slug}-rd-{secrets.token_hex(3)}", None, 4)
    try:
        car.volume.write_inputs(car.container, {"input": b"{}", "token": b"t"})
        script = layout.format(secret=secret, folder=folder, out=OUT, io=IO_DIR)
        done = car.container.exec_run(["sh", "-c", script], user=f"{uid}:{gid}")
        assert done.exit_code == 0, done.output
        dest = work / f"{name}.json"
        seen[name] = fn(car, dest) + [dest.exists(), sorted(p.name for p in work.glob("*.partial"))]
    finally:
        remove([car])


PLAIN = "printf '{{\"ok\": 1}}' > {out}/output.json"


def plain(car, dest):
    got = take(car.volume, None, dest)
    small = [car.volume.read_small(None, n) for n in ("token", "missing")]
    return got + [[s.decode() if s else s for s in small], dest.stat().st_mode & 0o777]


def killed(car, dest):
    first = rt._reader.pid
    os.killpg(first, signal.SIGKILL)
    holder = Counting(car.container)
    got = take(car.volume, holder, dest)
    again = car.volume.read_small(None, "token")  # a new reader
    return got + [holder.archive, again.decode(), rt._reader.pid not in (None, first)]


def with_reader(argv, timeout=None):
    def fn(car, dest):
        reader = VolumeReader(argv)
        if timeout:
            reader.START_S = reader.READ_S = reader.COPY_S = timeout
        car.volume.read_with(reader, (uid, gid))
        holder = Counting(car.container)
        got = take(car.volume, holder, dest)
        small = car.volume.read_small(holder, "token")
        stopped = reader.pid is None
        reader.close()
        return got + [holder.archive, small.decode(), stopped]
    return fn


def wrong_owner(car, dest):
    car.volume.read_with(rt._reader, (uid + 1, gid))
    holder = Counting(car.container)
    return take(car.volume, holder, dest) + [holder.archive]


PY = sys.executable
GARBAGE = "import sys\nprint('{\"ready\": true}', flush=True)\nfor _ in sys.stdin: print('[1, 2', flush=True)"
LIES = "import sys\nprint('{\"ready\": true}', flush=True)\nfor _ in sys.stdin: print('{\"data\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\", \"refused\": \"nope\", \"reason\": 1}', flush=True)"
HANGS = "import time\nprint('{\"ready\": true}', flush=True)\ntime.sleep(120)"
try:
    case("plain", PLAIN, plain)
    case("file-link", "ln -s {secret} {out}/output.json", lambda c, d: take(c.volume, None, d))
    case("folder-link", "rmdir {out} && ln -s {folder} {out}", lambda c, d: take(c.volume, None, d))
    case("hard-link", "echo '{{}}' > {out}/a && ln {out}/a {out}/output.json", lambda c, d: take(c.volume, None, d))
    case("over-limit", "echo '{{}}' > {out}/output.json && truncate -s 8G {out}/output.json", lambda c, d: take(c.volume, None, d))
    case("exit-link", "ln -s {secret} {io}/.exit", lambda c, d: [c.volume.read_small(None, ".exit")])
    case("killed", PLAIN, killed)
    case("garbage", PLAIN, with_reader([PY, "-c", GARBAGE]))
    case("lies", PLAIN, with_reader([PY, "-c", LIES]))
    case("hangs", PLAIN, with_reader([PY, "-c", HANGS], timeout=1.0))
    case("wrong-owner", PLAIN, wrong_owner)
    last = rt._reader.pid
finally:
    rt.close()
try:
    os.kill(last, 0)
    seen["stopped"] = False
except ProcessLookupError:
    seen["stopped"] = True
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def seen(podman_socket, podman_images, shared_base) -> dict:
    """What the node, as the Podman user, read in each case (see _SCRIPT)."""
    user = _service_user()
    if os.geteuid() != 0 and os.geteuid() != user.pw_uid:
        pytest.skip("needs root (to become the Podman user) or to be that user")
    work = Path(tempfile.mkdtemp(dir=shared_base))
    src = work / "src"
    _copy_sources(src)
    for p in [work, *work.rglob("*")]:
        shutil.chown(p, user.pw_name, user.pw_name)
    env = {
        "HOME": user.pw_dir,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_RUNTIME_DIR": f"/run/user/{user.pw_uid}",
        "PYTHONPATH": str(src),
        "LANG": "C.UTF-8",
    }
    cmd = [_user_python(), "-c", _SCRIPT, str(podman_socket), str(work), REGISTRY]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", user.pw_name, "--", *cmd]
    done = subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=400, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "secret-7d1" not in done.stderr  # nothing of what it read is logged
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_output_is_read_through_the_reader(seen) -> None:
    # no container given: only the reader can have read these
    assert seen["plain"] == ["ok", '{"ok": 1}', ["t", None], 0o600, True, []]


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("file-link", "symbolic link"),
        ("hard-link", "hard link"),
        ("over-limit", "8192.0 MiB"),
    ],
)
def test_what_the_algorithm_leaves_is_refused_by_the_reader(seen, case, says) -> None:
    kind, reason, written, partial = seen[case]
    assert kind == "refused" and says in reason and "nothing was uploaded" in reason
    assert "secret-7d1" not in reason
    assert not written and partial == []


def test_a_replaced_output_folder_is_no_output(seen) -> None:
    assert seen["folder-link"] == ["missing", None, False, []]


def test_a_small_read_follows_no_link(seen) -> None:
    assert seen["exit-link"] == [None, False, []]


def test_a_killed_reader_falls_back_to_the_archive_api_and_is_started_again(seen) -> None:
    kind, text, archive, again, restarted, written, _ = seen["killed"]
    assert (kind, text, again, restarted, written) == ("ok", '{"ok": 1}', "t", True, True)
    assert archive >= 1


@pytest.mark.parametrize("case", ["garbage", "lies", "hangs"])
def test_a_reader_that_answers_wrong_or_not_at_all_falls_back(seen, case) -> None:
    kind, text, archive, small, stopped, written, _ = seen[case]
    assert (kind, text, small, written) == ("ok", '{"ok": 1}', "t", True)
    assert archive >= 2 and stopped  # both reads through the archive API; the reader stopped


def test_a_folder_of_another_owner_is_not_read_by_the_reader(seen) -> None:
    assert seen["wrong-owner"] == ["ok", '{"ok": 1}', 1, True, []]


def test_the_reader_is_stopped_on_close(seen) -> None:
    assert seen["stopped"] is True
