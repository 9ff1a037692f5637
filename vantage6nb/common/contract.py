"""The algorithm contract (vantage6 4.x compatible): environment names and their value encoding.

vantage6 encodes every environment value it hands an algorithm as base32 with ``=`` written as ``!``
(``vantage6.algorithm.tools.util.get_env_var`` decodes it). We do the same, so algorithms built on
``vantage6-algorithm-tools`` run unmodified.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = [
    "API_PATH",
    "CONTRACT_VARIABLES",
    "DATABASE_TYPES",
    "ENCODED_MARKER",
    "HOST",
    "INPUT_FILE",
    "OUTPUT_FILE",
    "PORT",
    "TEMPORARY_FOLDER",
    "TOKEN_FILE",
    "USER_REQUESTED_DATABASE_LABELS",
    "build_environment",
    "database_env_names",
    "decode_env_value",
    "decode_environment",
    "encode_env_value",
    "make_input",
    "parse_input",
    "read_environment",
]

INPUT_FILE = "INPUT_FILE"
OUTPUT_FILE = "OUTPUT_FILE"
TOKEN_FILE = "TOKEN_FILE"
TEMPORARY_FOLDER = "TEMPORARY_FOLDER"
HOST = "HOST"
PORT = "PORT"
API_PATH = "API_PATH"
USER_REQUESTED_DATABASE_LABELS = "USER_REQUESTED_DATABASE_LABELS"
#: The variables the node sets for every run (besides the per-database ones).
CONTRACT_VARIABLES = frozenset(
    {
        INPUT_FILE,
        OUTPUT_FILE,
        TOKEN_FILE,
        TEMPORARY_FOLDER,
        HOST,
        PORT,
        API_PATH,
        USER_REQUESTED_DATABASE_LABELS,
    }
)
# Set (unencoded) to "1" when the values are encoded, so a reader can tell either way; "0" once
# decode_environment decoded them in place.
ENCODED_MARKER = "V6NB_ENV_ENCODED"

DATABASE_TYPES = ("csv", "parquet", "excel", "sql")
_EQUALS_REPLACEMENT = "!"


def encode_env_value(value: str) -> str:
    """Encode a value the way vantage6 nodes do: base32, ``=`` replaced by ``!``.

    Examples
    --------
    >>> encode_env_value("a")
    'ME!!!!!!'
    >>> decode_env_value(encode_env_value("/data/x.csv"))
    '/data/x.csv'
    """
    return base64.b32encode(value.encode("utf-8")).decode("ascii").replace("=", _EQUALS_REPLACEMENT)


def decode_env_value(value: str) -> str:
    """Inverse of :func:`encode_env_value`."""
    return base64.b32decode(value.replace(_EQUALS_REPLACEMENT, "=").encode("ascii")).decode("utf-8")


def _decoded_or_none(value: str) -> str | None:
    """``value`` decoded when it is an encoded value (decoding and re-encoding give it back)."""
    try:
        plain = decode_env_value(value)
    except (binascii.Error, ValueError, UnicodeError):  # not base32, or not UTF-8 inside
        return None
    return plain if encode_env_value(plain) == value else None


def decode_environment(environ: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Decode, in place, every value a node encoded, as vantage6's wrapper does before dispatching.

    vantage6's decorators (``@data``, ``@algorithm_client``, ``@metadata``) read ``os.environ``
    directly and expect plain values there. A value that is not an encoded one (``PATH``,
    ``HOME``, the image's ``PKG_NAME``) is left as it is. Afterwards :data:`ENCODED_MARKER` is
    ``"0"``, so :func:`read_environment` takes the values as they are. Returns ``environ``.

    Examples
    --------
    >>> env = build_environment(input_file="/in", output_file="/out", token_file="/t",
    ...     temporary_folder="/tmp", host="http://127.0.0.1", port=80, api_path="",
    ...     databases={"default": ("/d.csv", "csv")})
    >>> env["PATH"] = "/usr/bin"
    >>> _ = decode_environment(env)
    >>> env["DEFAULT_DATABASE_URI"], env["PATH"], read_environment(env, "INPUT_FILE")
    ('/d.csv', '/usr/bin', '/in')
    """
    if environ.get(ENCODED_MARKER) == "0":
        return environ  # done already
    for name, value in list(environ.items()):
        if name == ENCODED_MARKER:
            continue
        plain = _decoded_or_none(value)
        if plain is not None:
            environ[name] = plain
    environ[ENCODED_MARKER] = "0"
    return environ


def database_env_names(label: str) -> tuple[str, str]:
    """The ``<LABEL>_DATABASE_URI`` and ``<LABEL>_DATABASE_TYPE`` names for a database label."""
    up = label.upper()
    return f"{up}_DATABASE_URI", f"{up}_DATABASE_TYPE"


def build_environment(
    *,
    input_file: str,
    output_file: str,
    token_file: str,
    temporary_folder: str,
    host: str,
    port: int,
    api_path: str,
    databases: Mapping[str, tuple[str, str]],
    extra: Mapping[str, str] | None = None,
    encode: bool = True,
) -> dict[str, str]:
    """Environment for one run; ``databases`` maps label -> (uri, type) in requested order."""
    env: dict[str, str] = {
        INPUT_FILE: input_file,
        OUTPUT_FILE: output_file,
        TOKEN_FILE: token_file,
        TEMPORARY_FOLDER: temporary_folder,
        HOST: host,
        PORT: str(port),
        API_PATH: api_path,
        USER_REQUESTED_DATABASE_LABELS: ",".join(databases),
    }
    for label, (uri, typ) in databases.items():
        uri_name, type_name = database_env_names(label)
        env[uri_name] = uri
        env[type_name] = typ
    env.update(extra or {})
    if encode:
        env = {k: encode_env_value(v) for k, v in env.items()}
        env[ENCODED_MARKER] = "1"
    return env


def read_environment(
    environ: Mapping[str, str], name: str, default: str | None = None
) -> str | None:
    """Read one contract variable, decoding it when the node encoded the environment."""
    if name not in environ:
        return default
    raw = environ[name]
    marker = environ.get(ENCODED_MARKER)
    if marker == "0":  # decoded in place already (decode_environment)
        return raw
    if marker == "1":
        return decode_env_value(raw)
    try:  # a vantage6 node sets no marker: values are encoded
        return decode_env_value(raw)
    except (ValueError, UnicodeDecodeError):
        return raw


def make_input(
    method: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The input object every algorithm receives: ``{"method", "args", "kwargs"}``."""
    return {"method": method, "args": list(args or []), "kwargs": dict(kwargs or {})}


def parse_input(data: bytes | str) -> dict[str, Any]:
    """Parse and check an algorithm input document."""
    obj = json.loads(data)
    if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
        raise ValueError('algorithm input must be a JSON object with a string "method"')
    args = obj.get("args")
    kwargs = obj.get("kwargs")
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError('"args" must be a list and "kwargs" an object')
    return {"method": obj["method"], "args": args, "kwargs": kwargs}
