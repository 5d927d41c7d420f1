"""Passwords: argon2id hashes (argon2-cffi defaults), never stored or logged in clear.

Session handling, lockout and roles build on these in ``surveillance.access``.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
MIN_PASSWORD_LENGTH = 10

#: A valid hash of a random secret, verified against when the user does not exist
#: so an unknown username takes as long as a wrong password.
DUMMY_HASH = _HASHER.hash("not-a-real-password-dummy-value")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)
