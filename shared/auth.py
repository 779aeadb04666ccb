"""Member identity shared by the services: who is calling, what they may see, and their signed tokens.

Dispatch signs access tokens with an Ed25519 private key; intake and feedback verify them with the public
key alone, so no service but dispatch can mint a token and none needs to call dispatch to check one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

Role = Literal["officer", "auxiliary", "grid_worker", "operator", "supervisor", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
FIELD_ROLES = frozenset({"officer", "auxiliary", "grid_worker"})
ISSUER = "quanzu"
AUDIENCE = "quanzu-api"
ALGORITHM = "EdDSA"


class TokenError(Exception):
    """The token is missing, malformed, expired, forged or meant for someone else."""


@dataclass(frozen=True)
class Principal:
    """A logged-in member and the part of the district they may see."""

    member_id: uuid.UUID
    username: str
    role: str
    epoch: int
    team_id: uuid.UUID | None = None
    station: str | None = None
    areas: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def claims(self) -> dict[str, Any]:
        return {
            "sub": str(self.member_id),
            "name": self.username,
            "role": self.role,
            "ep": self.epoch,
            "team": str(self.team_id) if self.team_id else None,
            "station": self.station,
            "areas": sorted(self.areas),
        }

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        try:
            role = claims["role"]
            if role not in ROLES:
                raise TokenError("unknown role")
            return cls(
                member_id=uuid.UUID(claims["sub"]),
                username=str(claims["name"]),
                role=role,
                epoch=int(claims["ep"]),
                team_id=uuid.UUID(claims["team"]) if claims.get("team") else None,
                station=claims.get("station"),
                areas=frozenset(str(a) for a in claims.get("areas") or ()),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise TokenError(f"malformed claims: {exc}") from None


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


class TokenSigner:
    def __init__(self, private_key_pem: str, ttl: timedelta) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the token signing key must be an Ed25519 private key")
        self._key = key
        self.ttl = ttl

    def issue(self, principal: Principal, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        payload = {
            **principal.claims(),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)


class TokenVerifier:
    def __init__(self, public_key_pem: str, *, leeway_s: int = 5) -> None:
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the token public key must be an Ed25519 public key")
        self._key = key
        self.leeway_s = leeway_s

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from None
        return Principal.from_claims(claims)


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2
