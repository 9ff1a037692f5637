"""Isolation probes for the Docker runtime: each method tries to break one isolation property."""

from __future__ import annotations

import os
import socket
import time
import urllib.request

from vantage6nb.common import contract


def interfaces():
    """Network interfaces the algorithm sees (from the kernel's index and /proc/net/dev)."""
    with open("/proc/net/dev", encoding="ascii") as fh:
        dev = [line.split(":", 1)[0].strip() for line in fh.readlines()[2:]]
    return {
        "if_nameindex": sorted(name for _, name in socket.if_nameindex()),
        "proc_net_dev": sorted(dev),
    }


def connect(host="127.0.0.1", port=80, timeout=2.0):
    """Try a TCP connection; report whether it was established and what it read."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            return {"connected": True, "data": s.recv(100).decode("latin-1"), "error": ""}
    except OSError as exc:
        return {"connected": False, "data": "", "error": repr(exc)}


def write_file(path):
    """Try to create (or append to) a file."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("probe was here\n")
        return {"written": True, "error": ""}
    except OSError as exc:
        return {"written": False, "error": repr(exc)}


def write_tmp():
    """Write into TEMPORARY_FOLDER (must work)."""
    folder = contract.read_environment(os.environ, contract.TEMPORARY_FOLDER) or "/tmp"
    return {"folder": folder, **write_file(os.path.join(folder, "scratch.txt"))}


def write_database(label="default"):
    """Try to modify a database file handed over by the node."""
    uri = contract.read_environment(os.environ, contract.database_env_names(label)[0])
    return {"uri": uri, **write_file(uri)}


def identity():
    """uid/gid and the capability and no-new-privileges lines of /proc/self/status."""
    status = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs"):
                status[key] = value.strip()
    return {"uid": os.getuid(), "gid": os.getgid(), **status}


def cpu_quota():
    """The CPU quota of the container's cgroup (v2 cpu.max, or v1 cfs quota/period)."""
    out = {}
    for path in (
        "/sys/fs/cgroup/cpu.max",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us",
    ):
        try:
            with open(path, encoding="ascii") as fh:
                out[path] = fh.read().strip()
        except OSError:
            pass
    return out


def eat_memory(mb=2048):
    """Allocate and touch ``mb`` MiB, one MiB at a time."""
    chunks = []
    for _ in range(int(mb)):
        chunks.append(bytearray(b"x" * (1 << 20)))
    return {"allocated_mb": len(chunks)}


def fork_bomb(attempts=300, linger=3.0):
    """Fork up to ``attempts`` children that linger; report how many forks succeeded."""
    started, error = 0, ""
    children = []
    for _ in range(int(attempts)):
        try:
            pid = os.fork()
        except OSError as exc:
            error = repr(exc)
            break
        if pid == 0:  # child: hold a pid slot for a while, then leave without cleanup
            time.sleep(linger)
            os._exit(0)
        children.append(pid)
        started += 1
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
    return {"started": started, "error": error}


def proxy_get(path="/probe"):
    """GET ``HOST:PORT/API_PATH<path>`` with the run's token, as an algorithm talks to its proxy."""
    env = os.environ
    host = contract.read_environment(env, contract.HOST)
    port = contract.read_environment(env, contract.PORT)
    api = contract.read_environment(env, contract.API_PATH) or ""
    token = (
        open(contract.read_environment(env, contract.TOKEN_FILE), encoding="utf-8").read().strip()
    )
    url = f"{host}:{port}{api}{path}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return {"url": url, "status": resp.status, "body": resp.read().decode("utf-8")}


# -- the way back out: what the node reads from the run (docs/security.md) ------------------------


def _output_path():
    return contract.read_environment(os.environ, contract.OUTPUT_FILE)


def fill(folder="", mb=64, catch=True):
    """Write up to ``mb`` MiB into ``folder`` (default: next to OUTPUT_FILE); report how far it got.

    ``catch=False``: a full folder is not caught, as most algorithms would not catch it.
    """
    folder = folder or os.path.dirname(_output_path())
    written, error = 0, ""
    try:
        with open(os.path.join(folder, "side-file"), "wb") as fh:
            block = b"\xa5" * (1 << 20)
            for _ in range(int(mb)):
                fh.write(block)
                fh.flush()
                written += 1
    except OSError as exc:
        if not catch:
            raise
        error = repr(exc)
    finally:
        try:
            os.unlink(os.path.join(folder, "side-file"))
        except OSError:
            pass
    vfs = os.statvfs(folder)
    return {"written_mb": written, "error": error, "size_mb": vfs.f_blocks * vfs.f_frsize >> 20}


def mountinfo():
    """The container's mount table (what it can learn about the node's folders)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        return {"mountinfo": fh.read()}
