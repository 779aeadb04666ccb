"""Every table dispatch owns, imported in one place for migrations."""

from services.dispatch.areas.models import Area
from services.dispatch.db import INBOX, OUTBOX

__all__ = ["INBOX", "OUTBOX", "Area"]
