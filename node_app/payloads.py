"""The node's side of the envelope: its peer-key lookup, replay memory, key loading and codec choice.

The codecs themselves are :mod:`vantage6nb.common.envelope`'s, shared with the researcher's client.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vantage6nb.common import envelope
from vantage6nb.common.envelope import SealedCodec
from vantage6nb.common.errors import (
    ConfigurationError,
    CryptoError,
    DecryptionError,
    KeyMismatch,
    MissingKey,
    ServerUnavailable,
    V6Error,
)
from vantage6nb.common.keys import KeyRing, OrgKey
from vantage6nb.common.keys import load_private_key as read_private_key

if TYPE_CHECKING:  # pragma: no cover
    from .config import NodeConfig
    from .server_client import ServerClient

__all__ = [
    "PayloadCodec",
    "PeerKeys",
    "PlainJsonCodec",
    "SealedCodec",
    "TaskMemory",
    "decode_algorithm_input",
    "load_private_key",
    "read_run_input",
    "select_codec",
]

log = logging.getLogger(__name__)

PayloadCodec = envelope.Codec  # every codec, plain or sealed, has the file methods too


class PlainJsonCodec(envelope.PlainCodec):
    """The unencrypted codec, whose errors say what to check on a node.

    Examples
    --------
    >>> codec = PlainJsonCodec()
    >>> s = codec.encode_input(2, {"method": "m"}, {})
    >>> codec.decode_result(2, s, {})
    {'method': 'm'}
    """

    hint = "is the collaboration encrypted while this node runs without `encryption`?"


def decode_algorithm_input(value: Any) -> tuple[Any, bool]:
    """An input as an algorithm sent it to the proxy: a JSON object, JSON text, or (vantage6
    ``AlgorithmClient``) base64 of JSON bytes. Returns ``(object, was_base64)``.

    Examples
    --------
    >>> decode_algorithm_input({"method": "m"})
    ({'method': 'm'}, False)
    >>> decode_algorithm_input("eyJtZXRob2QiOiAibSJ9")
    ({'method': 'm'}, True)
    """
    if not isinstance(value, str):
        return value, False
    try:
        return json.loads(value), False
    except ValueError:
        pass
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
        return json.loads(raw.decode("utf-8")), True
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise ValueError("input must be a JSON object, JSON text, or base64 of JSON") from exc


class PeerKeys:
    """The node's :class:`~vantage6nb.common.envelope.KeyLookup`: peer organizations' public keys
    as the server gives them, pinned by fingerprint.

    The pins (``{org_id: fingerprint}``) live in a JSON file, so a key that changes on the server
    raises :class:`KeyMismatch` naming the organization, also after a node restart. Accepting a
    new key is explicit: check it with that organization, then remove its line from the file.

    Examples
    --------
    >>> key = OrgKey.generate()
    >>> peers = PeerKeys(lambda i: {"name": "Leiden", "public_key": key.public_key_b64})
    >>> peers.peer_key(1) == key.public_key
    True
    """

    def __init__(
        self, fetch: Callable[[int], Mapping[str, Any]], pins_file: Path | None = None
    ) -> None:
        self._fetch = fetch
        self._file = pins_file
        pins: dict[str, str] = {}
        if pins_file is not None and pins_file.is_file():
            try:
                pins = json.loads(pins_file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigurationError(
                    f"{pins_file} (pinned peer key fingerprints) is not valid JSON: {exc}; "
                    "repair or remove it"
                ) from None
        self.ring = KeyRing(pins)
        self._lock = threading.Lock()

    def trust_own(self, org_id: int, key: OrgKey) -> None:
        """Pin this node's own organization to its local key (after the start-up check)."""
        with self._lock:
            self.ring.repin(org_id, key.public_key)
            self._save()

    def refresh(self, org_id: int) -> bytes:
        """Fetch the organization's key from the server; :class:`KeyMismatch` when the pin differs."""
        org = self._fetch(org_id)
        name = str(org.get("name") or "") or None
        if not org.get("public_key"):
            label = f"organization '{name}' (id {org_id})" if name else f"organization {org_id}"
            raise MissingKey(
                f"{label} has no public key on the server; it must create one "
                "(`v6nb node create-private-key --config node.yaml`) before encrypted tasks "
                "can involve it"
            )
        with self._lock:
            before = dict(self.ring.pins())
            try:
                self.ring.add(org_id, org["public_key"], name=name)
            except KeyMismatch as exc:
                where = f" from {self._file}" if self._file else ""
                raise exc.with_hint(
                    "Nothing is accepted from or sent to it until you confirm the new fingerprint "
                    f"with that organization and remove its pin{where}"
                ) from None
            if self.ring.pins() != before:
                self._save()
            return self.ring.public_key(org_id)

    def peer_key(
        self,
        org_id: int,
        binding: Mapping[str, Any] | None = None,
        *,
        fresh: bool = False,
        key_id: bytes | None = None,
    ) -> bytes:
        """The key of ``org_id``: cached, unless ``fresh`` or it is not the key ``key_id`` names.

        The node asks the server whenever ``fresh`` (each run's input: a rotated key shows up).
        """
        with self._lock:
            if not fresh and self.ring.has(org_id, key_id=key_id):
                return self.ring.public_key(org_id)
        return self.refresh(org_id)

    def _save(self) -> None:
        if self._file is None:
            return
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.ring.pins(), indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._file)


class TaskMemory:
    """The task uids this node ran (one line ``<uid> <run id>`` each), to refuse a replayed task.

    Examples
    --------
    >>> import tempfile
    >>> memory = TaskMemory(Path(tempfile.mkdtemp()) / "task_uids.txt")
    >>> memory.claim("7f3a", 4); memory.claim("7f3a", 4)  # the same run again is fine
    >>> try:
    ...     memory.claim("7f3a", 9)
    ... except CryptoError as exc:
    ...     print("replay" in str(exc))
    True
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                uid, _, run = line.partition(" ")
                if uid and run.isdigit():
                    self._seen.setdefault(uid, int(run))

    def claim(self, uid: str, run_id: int) -> None:
        """Record that run ``run_id`` executes task ``uid``; refuse a second run of the same uid."""
        with self._lock:
            previous = self._seen.get(uid)
            if previous is None:
                self._seen[uid] = run_id
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(f"{uid} {run_id}\n")
            elif previous != run_id:
                raise CryptoError(
                    f"refusing a replayed task: this node already ran task uid {uid!r} as run "
                    f"{previous}; a genuine task always has a new uid"
                )


def load_private_key(path: Path | None, passphrase_env: str = "") -> OrgKey:
    """Read the organization's private key file; the passphrase (if any) from ``$passphrase_env``.

    Examples
    --------
    >>> load_private_key(Path("/nonexistent.key"))  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigurationError: no private key at /nonexistent.key ...
    """
    if path is None or not path.is_file():
        raise ConfigurationError(
            f"no private key at {path}; create one with `v6nb node create-private-key "
            "--config node.yaml` (or set `private_key` in node.yaml)",
            errors={"private_key": "missing file"},
        )
    if path.stat().st_mode & 0o077:
        log.warning("private key %s is readable by others; run `chmod 600 %s`", path, path)
    passphrase = None
    if passphrase_env:
        passphrase = os.environ.get(passphrase_env)
        if passphrase is None:
            raise ConfigurationError(
                f"`private_key_passphrase_env` names {passphrase_env}, which is not set; "
                "export the passphrase in that variable before starting the node",
                errors={"private_key_passphrase_env": "unset variable"},
            )
    return read_private_key(
        path,
        passphrase,
        passphrase_hint="set `private_key_passphrase_env` to the name of an environment variable "
        "holding it",
    )


def select_codec(
    config: NodeConfig,
    client: ServerClient,
    node: Mapping[str, Any],
    *,
    replace_key: bool = False,
) -> PayloadCodec:
    """The codec for this node's collaboration, after the start-up checks of docs/security.md.

    Refuses (ConfigurationError) when `encryption` disagrees with the collaboration; with
    encryption, loads the private key and checks the server's public key of the organization:
    missing -> uploaded; different -> :class:`KeyMismatch` unless ``replace_key`` (logged).
    """
    cid = node.get("collaboration_id")
    collab = client.until_ok(
        lambda: client.request("GET", f"/collaboration/{cid}"), "reading the collaboration"
    )
    name, encrypted = collab.get("name"), bool(collab.get("encrypted"))
    if encrypted != config.encryption:
        raise ConfigurationError(
            f"collaboration '{name}' is {'' if encrypted else 'not '}encrypted but this node has "
            f"`encryption: {str(config.encryption).lower()}`: set `encryption: "
            f"{str(encrypted).lower()}` in node.yaml (or V6NB_NODE_ENCRYPTION)"
            + (" and create a key with `v6nb node create-private-key`" if encrypted else ""),
            errors={"encryption": f"must be {str(encrypted).lower()}"},
        )
    if not encrypted:
        return PlainJsonCodec()
    key = load_private_key(config.private_key, config.private_key_passphrase_env)
    org_id = int(node["organization_id"])
    org = client.until_ok(
        lambda: client.request("GET", f"/organization/{org_id}"), "reading the organization"
    )
    label = f"'{org.get('name')}' (id {org_id})"
    try:
        key.check_public_key(org.get("public_key"), organization=label)
    except MissingKey:
        client.request("PATCH", f"/organization/{org_id}", json={"public_key": key.public_key_b64})
        log.info("uploaded the public key %s of organization %s", key.fingerprint, label)
    except KeyMismatch as exc:
        if not replace_key:
            raise KeyMismatch(
                f"the server holds public key {org.get('key_fingerprint')} for organization "
                f"{label}, but this node's private key {config.private_key} is {key.fingerprint}. "
                "If you replaced the key on purpose, start once with `v6nb node start "
                "--replace-key` (logged on the server); otherwise configure the right "
                "`private_key`",
                errors=exc.errors,
            ) from None
        body = {"public_key": key.public_key_b64, "replace_key": True}
        client.request("PATCH", f"/organization/{org_id}", json=body)
        log.warning(
            "REPLACED the public key of organization %s on the server: %s -> %s (--replace-key)",
            label,
            org.get("key_fingerprint"),
            key.fingerprint,
        )

    def fetch(other: int) -> Mapping[str, Any]:
        return client.request("GET", f"/organization/{other}", retries=None)

    config.data_dir.mkdir(parents=True, exist_ok=True)
    peers = PeerKeys(fetch, config.data_dir / "peer_keys.json")
    peers.trust_own(org_id, key)
    log.info("end-to-end encryption on: organization %s, key %s", label, key.fingerprint)
    return SealedCodec(key, org_id, peers, TaskMemory(config.data_dir / "task_uids.txt"))


def read_run_input(
    client: ServerClient,
    codec: PayloadCodec,
    run: Mapping[str, Any],
    binding: Mapping[str, Any],
    dst: Path,
) -> bytes:
    """The JSON bytes of a run's input (for ``dst``, the run's ``INPUT_FILE``).

    An input sent as text is in ``run["input"]``; one sent as bytes (``run["input_ref"]``) is
    streamed from the server into a file beside ``dst`` and opened from there into ``dst``, chunk
    by chunk (:meth:`~vantage6nb.common.envelope.Codec.decode_input_file`): no base64, no
    ciphertext in memory. A refusal to hand it over is a :class:`DecryptionError` (the run fails with it); an
    outage of the server is waited out (until the node stops).

    Examples
    --------
    >>> import tempfile
    >>> dst = Path(tempfile.mkdtemp()) / "input.json"
    >>> read_run_input(None, PlainJsonCodec(), {"input": '{"method": "m"}'}, {}, dst)
    b'{"method": "m"}'
    """
    ref = run.get("input_ref")
    if not ref:  # the caller writes ``dst`` (after its own checks), as for every small input
        return codec.decode_input(run.get("input"), binding)  # type: ignore[arg-type]
    path = str(ref).removeprefix("/api")
    wire = dst.with_name(dst.name + ".wire")

    def fetch() -> int:
        with wire.open("wb") as fh:  # again from the start after an outage
            return client.download(path, fh)

    try:
        try:
            client.until_ok(fetch, f"fetching the input of run {run.get('id')}")
        except ServerUnavailable:
            raise
        except V6Error as exc:
            raise DecryptionError(f"could not fetch it from {ref}: {exc.msg}") from None
        codec.decode_input_file(wire, dst, binding)
    finally:
        wire.unlink(missing_ok=True)
    return dst.read_bytes()
