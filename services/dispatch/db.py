"""Dispatch's schema and its plumbing tables."""

from sqlmodel import SQLModel

from shared.access_log import access_log_table
from shared.idempotency import idempotency_table
from shared.inbox import inbox_table
from shared.outbox import outbox_table
from shared.timers import deadlines_table

SCHEMA = "dispatch"
OUTBOX = outbox_table(SQLModel.metadata, SCHEMA)
INBOX = inbox_table(SQLModel.metadata, SCHEMA)
ACCESS_LOG = access_log_table(SQLModel.metadata, SCHEMA)
DEADLINES = deadlines_table(SQLModel.metadata, SCHEMA)
IDEMPOTENCY = idempotency_table(SQLModel.metadata, SCHEMA)
