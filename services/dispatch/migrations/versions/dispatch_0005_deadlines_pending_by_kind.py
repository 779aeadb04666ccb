"""deadlines: pending ones by kind

An engine that fires some kinds only (the SMS senders) found its next deadline through the index on due_at, walking
every pending deadline of the other kinds: with a backlog of 100,000 due escalations, each SMS sender's claim and
look-ahead took a tenth of a second or more, on every wake-up.

Revision ID: dispatch_0005
Revises: dispatch_0004
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dispatch_0005"
down_revision: str | None = "dispatch_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_dispatch_deadlines_pending_kind",
        "deadlines",
        ["kind", "due_at"],
        unique=False,
        schema="dispatch",
        postgresql_where=sa.text("fired_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_dispatch_deadlines_pending_kind", table_name="deadlines", schema="dispatch")
