"""Every table feedback owns, imported in one place for migrations."""

from services.feedback.db import ACCESS_LOG, INBOX, MEMBER_SESSIONS, OUTBOX

__all__ = ["ACCESS_LOG", "INBOX", "MEMBER_SESSIONS", "OUTBOX"]
