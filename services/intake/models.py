"""Every table intake owns, imported in one place for migrations."""

from services.intake.areas.models import KnownArea
from services.intake.db import ACCESS_LOG, INBOX, MEMBER_SESSIONS, OUTBOX
from services.intake.sources.models import Source, SourceKey
from services.intake.warnings.models import Warning

__all__ = ["ACCESS_LOG", "INBOX", "MEMBER_SESSIONS", "OUTBOX", "KnownArea", "Source", "SourceKey", "Warning"]
