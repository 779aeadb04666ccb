"""Who a member is attached to, by role, and what part of the district that lets them see. Pure rules."""

from __future__ import annotations

import secrets

from shared.auth import FIELD_ROLES

MIN_PASSWORD_LENGTH = 10


def affiliation_error(role: str, *, team: bool, station: bool, district: bool) -> str | None:
    """Field members belong to a team, operators and supervisors to a station, admins to the district."""
    given = [name for name, flag in (("--team", team), ("--station", station), ("--district", district)) if flag]
    if len(given) != 1:
        return "give exactly one of --team, --station, --district"
    wanted = "--team" if role in FIELD_ROLES else "--station" if role in ("operator", "supervisor") else "--district"
    if given[0] != wanted:
        return (
            f"a member with role {role!r} belongs to a {wanted.removeprefix('--')}, not a {given[0].removeprefix('--')}"
        )
    return None


def password_error(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > 256:
        return "must be at most 256 characters"
    return None


def one_time_password() -> str:
    return secrets.token_urlsafe(12)
