"""Container tokens are JWTs: what a forger can change about one, and that each change is refused."""

from __future__ import annotations

import base64
import json

import pytest

from server_app.tokens import TokenService
from vantage6nb.common.errors import AuthenticationError

CLAIMS = {
    "sub": 7,
    "type": "container",
    "org": 3,
    "run_id": 11,
    "task_id": 5,
    "node_id": 7,
    "collaboration_id": 2,
    "job_id": 5,
    "image": "v6test/avg",
    "databases": [{"label": "default"}],
}


def _b64(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict, str]:
    head, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
        sig,
    )


@pytest.fixture
def tokens() -> TokenService:
    return TokenService("s" * 40, access_minutes=5, refresh_hours=1)


def test_a_container_token_verifies_as_issued(tokens: TokenService):
    verified = tokens.verify(tokens.issue(CLAIMS, kind="access"))
    assert {k: verified[k] for k in CLAIMS} == CLAIMS


@pytest.mark.parametrize(
    "forge",
    [
        # "alg": "none" with no signature: the classic JWT forgery
        lambda h, b, s: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(b)}.",
        # another run's id under the genuine signature
        lambda h, b, s: f"{_b64(h)}.{_b64({**b, 'run_id': 12})}.{s}",
        # another collaboration in the vantage6 subject under the genuine signature
        lambda h, b, s: f"{_b64(h)}.{_b64({**b, 'sub': {**b['sub'], 'collaboration_id': 9}})}.{s}",
        # a header vantage6nb never issues (HS512), same signature
        lambda h, b, s: f"{_b64({**h, 'alg': 'HS512'})}.{_b64(b)}.{s}",
        # the token's time stretched under the genuine signature
        lambda h, b, s: f"{_b64(h)}.{_b64({**b, 'exp': b['exp'] + 86400})}.{s}",
        # not a token at all, in the JWT's shape
        lambda h, b, s: "a.b.c",
    ],
    ids=["alg-none", "run-id", "collaboration", "header", "expiry", "garbage"],
)
def test_a_changed_container_token_is_refused(tokens: TokenService, forge):
    head, body, sig = _parts(tokens.issue(CLAIMS, kind="access"))
    with pytest.raises(AuthenticationError, match="Invalid token"):
        tokens.verify(forge(head, body, sig))


def test_a_container_token_signed_by_another_server_is_refused(tokens: TokenService):
    other = TokenService("t" * 40, access_minutes=5, refresh_hours=1)
    with pytest.raises(AuthenticationError, match="Invalid token"):
        tokens.verify(other.issue(CLAIMS, kind="access"))


def test_a_user_token_cannot_pass_for_a_container_one(tokens: TokenService):
    user = tokens.issue({"sub": 7, "type": "user", "org": 3}, kind="access")
    assert user.count(".") != 2 or user.startswith(".")  # not in the JWT's shape
    assert tokens.verify(user)["type"] == "user"
