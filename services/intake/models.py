"""Every table intake owns, imported in one place for migrations."""

from services.intake.areas.models import KnownArea
from services.intake.db import INBOX, OUTBOX
from services.intake.sources.models import Source, SourceKey
from services.intake.warnings.models import Warning

__all__ = ["INBOX", "OUTBOX", "KnownArea", "Source", "SourceKey", "Warning"]
