"""Every table dispatch owns, imported in one place for migrations."""

from services.dispatch.areas.models import Area
from services.dispatch.auth.models import LoginThrottle, RefreshToken
from services.dispatch.db import ACCESS_LOG, INBOX, OUTBOX
from services.dispatch.members.models import Member
from services.dispatch.teams.models import Team

__all__ = ["ACCESS_LOG", "INBOX", "OUTBOX", "Area", "LoginThrottle", "Member", "RefreshToken", "Team"]
