"""Every table feedback owns, imported in one place for migrations."""

from services.feedback.db import ACCESS_LOG, IDEMPOTENCY, INBOX, MEMBER_SESSIONS, OUTBOX
from services.feedback.outcomes.models import Outcome
from services.feedback.tasks.models import TaskView

__all__ = ["ACCESS_LOG", "IDEMPOTENCY", "INBOX", "MEMBER_SESSIONS", "OUTBOX", "Outcome", "TaskView"]
