"""Every table feedback owns, imported in one place for migrations."""

from services.feedback.db import INBOX, OUTBOX

__all__ = ["INBOX", "OUTBOX"]
