"""argon2id hashing and the password policy."""

from __future__ import annotations

import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.errors import IdpError

# OWASP's argon2id baseline (19 MiB, t=2, p=1): memory-hard, and cheap enough that a
# 2-core instance serves dozens of logins a second. Older hashes are upgraded on login.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MIN_MIXED_LENGTH = 10
MIN_PLAIN_LENGTH = 17
MAX_LENGTH = 512


class WeakPasswordError(IdpError):
    pass


def check_policy(password: str) -> None:
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(f"password must be at most {MAX_LENGTH} characters")
    if len(password) >= MIN_PLAIN_LENGTH:
        return
    classes = [
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() and c not in string.whitespace for c in password),
    ]
    if len(password) < MIN_MIXED_LENGTH or not all(classes):
        raise WeakPasswordError(
            "password must be longer than 16 characters, or at least 10 characters "
            "mixing upper case, lower case, a digit and a special character"
        )


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)
