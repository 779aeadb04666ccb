"""Every table dispatch owns, imported in one place for migrations."""

from services.dispatch.areas.models import Area
from services.dispatch.auth.models import LoginThrottle, RefreshToken
from services.dispatch.db import ACCESS_LOG, DEADLINES, INBOX, OUTBOX
from services.dispatch.members.models import Member
from services.dispatch.policies.models import PolicyVersion
from services.dispatch.teams.models import Team

__all__ = [
    "ACCESS_LOG",
    "DEADLINES",
    "INBOX",
    "OUTBOX",
    "Area",
    "LoginThrottle",
    "Member",
    "PolicyVersion",
    "RefreshToken",
    "Team",
]
