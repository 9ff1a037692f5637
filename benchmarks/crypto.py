"""Encrypt+decrypt throughput and peak memory: vantage6nb sealed payloads vs vantage6 4.x RSACryptor.

Run: ``python benchmarks/crypto.py [--sizes 1KB,1MB,100MB] [--markdown]``.

Each of our rows says where that form is what payloads use on the wire (column "on the wire"):
inputs above ``client.task.binary_input_kb`` (64 KiB) and results above the node's
``binary_result_kb`` travel as bytes (the ``stream`` row: the sealed binary form, measured in memory
as vantage6's rows are; the ``files`` row is the same form file to file, with the four passes through
the page cache a node makes), smaller ones as ``v6nb1:`` text inside JSON (the ``text`` row). After the table, one line per size gives the ratio
to vantage6's base64 form for the form inputs and results actually use, measured in this run.

vantage6's side runs in a throwaway venv (``/tmp/v6bench-venv``) with ``vantage6-common`` 4.x from
PyPI, in a subprocess, so nothing of it touches the project's environment. If that install fails,
a faithful reimplementation of its scheme (RSA-4096 PKCS#1 v1.5 key wrap + AES-256-CTR + base64,
``$``-joined) with ``cryptography`` is used instead and the output says so.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

VENV = Path("/tmp/v6bench-venv")
SIZES = {"1KB": 1024, "1MB": 1024 * 1024, "100MB": 100 * 1024 * 1024}
REPEATS = {1024: 200, 1024 * 1024: 15, 100 * 1024 * 1024: 3}


def _json_payload(n: int) -> bytes:
    """A JSON document of exactly n bytes (vantage6 json-parses every decrypted payload)."""
    body = os.urandom(n // 2).hex().encode()[: max(n - 2, 0)]
    return (b'"' + body + b'"')[:n] if n >= 2 else b"0" * n


def _ours(mode: str, n: int, workdir: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    """(prepare, run once) for our scheme; ``run`` encrypts then decrypts and checks."""
    from vantage6nb.common import crypto
    from vantage6nb.common.keys import OrgKey

    a, b = OrgKey.generate(), OrgKey.generate()
    bind = crypto.Binding("result", "bench-task", sender_org_id=1, recipient_org_id=2, run_id=1)
    data = _json_payload(n)

    if mode == "bytes":

        def run() -> None:
            sealed = crypto.seal(data, bind, a, b.public_key)
            assert len(crypto.open(sealed, bind, b, a.public_key)) == n

    elif mode == "text":

        def run() -> None:
            text = crypto.seal_text(data, bind, a, b.public_key)
            assert len(crypto.open_text(text, bind, b, a.public_key)) == n

    elif mode == "stream":  # the binary wire form, in memory like vantage6's rows

        def run() -> None:
            sealed = io.BytesIO()
            crypto.seal_stream(io.BytesIO(data), sealed, bind, a, b.public_key)
            sealed.seek(0)
            back = io.BytesIO()
            assert crypto.open_stream(sealed, back, bind, b, a.public_key) == n

    else:  # "files": file -> file, what a node does with an algorithm's output file
        src, mid, dst = workdir / "plain", workdir / "sealed", workdir / "back"
        src.write_bytes(data)
        del data

        def run() -> None:
            with src.open("rb") as f, mid.open("wb") as g:
                crypto.seal_stream(f, g, bind, a, b.public_key)
            with mid.open("rb") as f, dst.open("wb") as g:
                assert crypto.open_stream(f, g, bind, b, a.public_key) == n

    return (lambda: None), run


def _vantage6(
    n: int, workdir: Path, binary: bool = False
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(prepare, run once) for vantage6-common's RSACryptor (inside its venv)."""
    from vantage6.common.encryption import RSACryptor  # type: ignore[import-not-found]

    key_file = VENV / "bench-rsa-4096.pem"
    if not key_file.exists():
        RSACryptor.create_new_rsa_key(key_file)
    cryptor = RSACryptor(key_file)
    pub = cryptor.public_key_str
    data = _json_payload(n)

    def run() -> None:
        if binary:  # 4.x "blob storage" mode: the message part is not base64-encoded
            blob = cryptor.encrypt_bytes_to_str(data, pub, skip_base64_encoding_of_msg=True)
            assert len(cryptor.decrypt(blob)) == n
        else:
            text = cryptor.encrypt_bytes_to_str(data, pub)
            assert len(cryptor.decrypt_str_to_bytes(text)) == n

    return (lambda: None), run


def _reimplemented(n: int, workdir: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    """vantage6 4.x RSACryptor's scheme rebuilt with ``cryptography`` (fallback only)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    private = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    pub_b64 = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    data = _json_payload(n)

    def enc(payload: bytes) -> str:
        key, iv = os.urandom(32), os.urandom(16)
        e = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
        body = e.update(payload) + e.finalize()
        pub = serialization.load_pem_public_key(base64.b64decode(pub_b64))
        wrapped = pub.encrypt(key, padding.PKCS1v15())  # type: ignore[union-attr]
        return "$".join(base64.b64encode(x).decode("utf-8") for x in (wrapped, iv, body))

    def dec(text: str) -> bytes:
        wrapped, iv, body = (base64.b64decode(x.encode("utf-8")) for x in text.split("$"))
        key = private.decrypt(wrapped, padding.PKCS1v15())
        d = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
        return d.update(body) + d.finalize()

    def run() -> None:
        assert len(dec(enc(data))) == n

    return (lambda: None), run


def _thresholds() -> tuple[int, int]:
    """Bytes above which inputs and results travel as bytes (client and node defaults)."""
    try:
        from vantage6nb.client._task_api import BINARY_INPUT_KB
    except ImportError:  # an older tree: every input was text
        BINARY_INPUT_KB = 2**40
    try:
        from node_app.config import NodeConfig

        field = NodeConfig.__dataclass_fields__["binary_result_kb"]
        result_kb = int(field.default)  # type: ignore[arg-type]
    except (ImportError, KeyError, TypeError, ValueError):
        result_kb = 1024
    return BINARY_INPUT_KB * 1024, result_kb * 1024


def wire_forms(n: int) -> dict[str, str]:
    """The form an input and a result of ``n`` bytes use on the wire: ``stream`` or ``text``.

    Examples
    --------
    >>> wire_forms(1024)
    {'input': 'text', 'result': 'text'}
    """
    inputs, results = _thresholds()
    return {
        "input": "stream" if n > inputs else "text",
        "result": "stream" if n > results else "text",
    }


def _base64_impl() -> str:
    """Which base64 the text form uses here: pybase64 (SIMD) when installed, else binascii."""
    from vantage6nb.common import textform

    fast = getattr(textform, "_fast", None)
    return f"pybase64 {fast.__version__}" if fast is not None else "binascii"


def child(scheme: str, n: int) -> dict:
    """Measure one (scheme, size) in this process: median seconds and tracemalloc peak."""
    with tempfile.TemporaryDirectory() as tmp:
        if scheme.startswith("ours-"):
            _, run = _ours(scheme[5:], n, Path(tmp))
        elif scheme.startswith("vantage6"):
            _, run = _vantage6(n, Path(tmp), binary=scheme.endswith("-binary"))
        else:
            _, run = _reimplemented(n, Path(tmp))
        run()  # warm up
        times = []
        for _ in range(REPEATS.get(n, 5)):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"scheme": scheme, "size": n, "seconds": statistics.median(times), "peak": peak - base}


def ensure_venv() -> Path | None:
    """Create the throwaway venv with vantage6-common 4.x; return its python or None."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import vantage6.common.encryption"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "vantage6-common>=4,<5"], check=True
        )
        subprocess.run(probe, check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"# vantage6-common could not be installed ({exc}); using the reimplementation")
        return None
    return python


def _run_child(python: str, scheme: str, n: int) -> dict:
    out = subprocess.run(
        [python, __file__, "--child", scheme, str(n)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _version(python: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('vantage6-common'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1KB,1MB,100MB")
    parser.add_argument("--child", nargs=2, metavar=("SCHEME", "BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    v6_python = ensure_venv()
    theirs = "vantage6" if v6_python else "reimplemented"
    label = f"vantage6-common {_version(v6_python)}" if v6_python else "vantage6 scheme (reimpl.)"
    print(
        f"# machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, {datetime.date.today().isoformat()}"
    )
    print(
        "| payload | scheme | enc+dec time | throughput | peak memory (tracemalloc) "
        "| vs vantage6 (base64) | vs vantage6 binary | on the wire |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for name in args.sizes.split(","):
        n = SIZES[name]
        forms = wire_forms(n)
        ref = _run_child(str(v6_python or sys.executable), theirs, n)
        rows = [(label + " (base64)", ref, "")]
        ref_bin = ref
        if v6_python:
            ref_bin = _run_child(str(v6_python), "vantage6-binary", n)
            rows.append((label + " (binary)", ref_bin, ""))
        ours: dict[str, dict] = {}
        for mode in ("bytes", "text", "stream", "files"):
            who = {
                "text": f"vantage6nb text (base64: {_base64_impl()})",  # small payloads, in JSON
                "stream": "vantage6nb stream (the binary wire form, in memory)",
                "files": "vantage6nb stream (file to file, as a node does)",
            }.get(mode, f"vantage6nb {mode}")
            ours[mode] = r = _run_child(sys.executable, f"ours-{mode}", n)
            used = [kind + "s" for kind, form in forms.items() if form == mode]
            rows.append((who, r, " and ".join(used) or "-"))
        for who, r, wire in rows:
            mbps = n / r["seconds"] / 1e6
            ratio = ref["seconds"] / r["seconds"]
            ratio_bin = ref_bin["seconds"] / r["seconds"]
            print(
                f"| {name} | {who} | {r['seconds'] * 1e3:.2f} ms | {mbps:,.1f} MB/s | "
                f"{r['peak'] / 2**20:,.2f} MiB | {ratio:.1f}x | {ratio_bin:.1f}x | {wire} |",
                flush=True,
            )
        parts = [
            f"{kind}s as {form} {ref['seconds'] / ours[form]['seconds']:.1f}x"
            for kind, form in forms.items()
        ]
        if "stream" in forms.values():
            parts.append(f"file to file {ref['seconds'] / ours['files']['seconds']:.1f}x")
        summary.append(f"# {name} on the wire vs {label} (base64), same run: " + "; ".join(parts))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
