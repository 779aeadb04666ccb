"""Every table dispatch owns, imported in one place for migrations."""

from services.dispatch.areas.models import Area
from services.dispatch.auth.models import LoginThrottle, RefreshToken
from services.dispatch.cases.models import Case, CaseTransition, CaseWarning
from services.dispatch.db import ACCESS_LOG, DEADLINES, IDEMPOTENCY, INBOX, OUTBOX
from services.dispatch.members.models import Member
from services.dispatch.notify.models import Notification
from services.dispatch.policies.models import PolicyVersion
from services.dispatch.tasks.models import Task
from services.dispatch.teams.models import Team

__all__ = [
    "ACCESS_LOG",
    "DEADLINES",
    "IDEMPOTENCY",
    "INBOX",
    "OUTBOX",
    "Area",
    "Case",
    "CaseTransition",
    "CaseWarning",
    "LoginThrottle",
    "Member",
    "Notification",
    "PolicyVersion",
    "RefreshToken",
    "Task",
    "Team",
]
