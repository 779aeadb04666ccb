"""Every table feedback owns, imported in one place for migrations."""

from services.feedback.areas.models import AreaView
from services.feedback.cases.models import CaseView, WarningView
from services.feedback.db import ACCESS_LOG, IDEMPOTENCY, INBOX, MEMBER_SESSIONS, OUTBOX
from services.feedback.fraud_reports.models import FraudReport, PostWarningMatch, ReportFeed
from services.feedback.outcomes.models import Outcome
from services.feedback.tasks.models import TaskView

__all__ = [
    "ACCESS_LOG", "IDEMPOTENCY", "INBOX", "MEMBER_SESSIONS", "OUTBOX", "AreaView", "CaseView", "FraudReport",
    "Outcome", "PostWarningMatch", "ReportFeed", "TaskView", "WarningView",
]  # fmt: skip
