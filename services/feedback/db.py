"""Feedback's schema and its plumbing tables."""

from sqlmodel import SQLModel

from shared.access_log import access_log_table
from shared.idempotency import idempotency_table
from shared.inbox import inbox_table
from shared.member_sessions import member_sessions_table
from shared.outbox import outbox_table

SCHEMA = "feedback"
OUTBOX = outbox_table(SQLModel.metadata, SCHEMA)
INBOX = inbox_table(SQLModel.metadata, SCHEMA)
ACCESS_LOG = access_log_table(SQLModel.metadata, SCHEMA)
MEMBER_SESSIONS = member_sessions_table(SQLModel.metadata, SCHEMA)
IDEMPOTENCY = idempotency_table(SQLModel.metadata, SCHEMA)
