"""API keys of upstream systems (intake's sources, feedback's crime-report feeds): issued once, stored hashed."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "qz_"
#: How much of a key is kept in clear to name it (in listings and when revoking it): not enough to use it.
KEY_PREFIX_LENGTH = 12


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: nobody can brute-force the preimage.
    return hashlib.sha256(key.encode()).hexdigest()
