"""The password policy (length, blank, common, equal to the username) and the shipped common list.

``data/common-passwords.txt`` holds the 10,000 most common passwords of the list zxcvbn ships
(Dropbox's strength estimator, MIT licence; drawn from leaked password sets), one a line, lower case.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from vantage6nb.common.errors import ValidationError

__all__ = ["MIN_LENGTH", "check_password", "common_passwords", "password_problem"]

MIN_LENGTH = 10


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped common passwords, case-folded (read once).

    Examples
    --------
    >>> "password123" in common_passwords(), len(common_passwords()) >= 1000
    (True, True)
    """
    text = resources.files("server_app").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip())


def password_problem(password: str, *, username: str | None = None) -> str | None:
    """What is wrong with ``password`` (a sentence that never repeats it), or None.

    Examples
    --------
    >>> password_problem("12345678")
    'is too short: use at least 10 characters (a few words make a good passphrase)'
    >>> password_problem("a sound passphrase", username="alice") is None
    True
    """
    if not password.strip():
        return "must not be only spaces: use at least 10 characters of a passphrase"
    if len(password) < MIN_LENGTH:
        return f"is too short: use at least {MIN_LENGTH} characters (a few words make a good passphrase)"
    folded = password.casefold()
    if username is not None and folded.strip() == username.casefold().strip():
        return "must not be the username: choose a passphrase"
    if folded in common_passwords() or folded.strip() in common_passwords():
        return "is one of the most common passwords, which attackers try first: choose another"
    return None


def check_password(password: str, *, username: str | None = None, field: str = "password") -> str:
    """``password`` when it meets the policy, else a ValidationError naming ``field``.

    Examples
    --------
    >>> check_password("qwertyuiop")
    Traceback (most recent call last):
    ...
    vantage6nb.common.errors.ValidationError: The password is one of the most common passwords, which attackers try first: choose another (password: common password)
    """
    problem = password_problem(password, username=username)
    if problem is None:
        return password
    short = {
        "must not be only": "only spaces",
        "is too short": f"at least {MIN_LENGTH} characters",
        "must not be the": "equal to the username",
        "is one of the": "common password",
    }
    label = next(v for k, v in short.items() if problem.startswith(k))
    raise ValidationError(f"The password {problem}", errors={field: label})
