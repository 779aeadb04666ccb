"""store_warnings: store records and their events in one round trip

Revision ID: intake_0003
Revises: intake_0002
Create Date: 2026-11-28 14:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "intake_0003"
down_revision: str | None = "intake_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Why a function: a post is one statement, so one round trip and one implicit transaction, where a transaction of
# its own (BEGIN, the caller's scope, the insert, COMMIT) cost four, and most of a single post's time went to them.
# The scope is set first, inside, so row-level security holds the insert and the read-back to the caller's source.
# SECURITY INVOKER (the default): it runs as the service's role, under the same policies as any other statement.
STORE_WARNINGS = """
CREATE FUNCTION intake.store_warnings(
    scope_names text[], scope_values text[], p_source text,
    ids uuid[], external_ids text[], content_hashes text[], received_ats timestamptz[], issued_ats timestamptz[],
    area_codes text[], assigneds boolean[], fraud_types text[], risk_levels text[], in_progresses boolean[],
    amounts float8[], subject_keys text[], subjects jsonb[], evidences jsonb[],
    event_ids uuid[], event_type text, event_topic text, event_keys bytea[], event_values bytea[]
) RETURNS TABLE (stored_id uuid, stored_external_id text, stored_hash text, stored_assigned boolean, inserted boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_ids uuid[];
BEGIN
    PERFORM set_config(n, v, true) FROM unnest(scope_names, scope_values) AS s(n, v);
    -- The events of the rows this statement inserts only (a replayed record's is dropped), in the records' order.
    WITH new AS (
        INSERT INTO intake.warnings (id, source, external_id, content_hash, received_at, issued_at, area_code,
                                     assigned, fraud_type, risk_level, in_progress, amount_at_risk, subject_key,
                                     subject, evidence)
        SELECT r.id, p_source, r.external_id, r.content_hash, r.received_at, r.issued_at, r.area_code, r.assigned,
               r.fraud_type, r.risk_level, r.in_progress, r.amount_at_risk, r.subject_key, r.subject, r.evidence
        FROM unnest(ids, external_ids, content_hashes, received_ats, issued_ats, area_codes, assigneds, fraud_types,
                    risk_levels, in_progresses, amounts, subject_keys, subjects, evidences)
             AS r(id, external_id, content_hash, received_at, issued_at, area_code, assigned, fraud_type, risk_level,
                  in_progress, amount_at_risk, subject_key, subject, evidence)
        ON CONFLICT (source, external_id) DO NOTHING
        RETURNING id
    ), queued AS (
        INSERT INTO intake.outbox (event_id, event_type, topic, key, value)
        SELECT e.event_id, event_type, event_topic, e.key, e.value
        FROM unnest(event_ids, ids, event_keys, event_values) WITH ORDINALITY
             AS e(event_id, warning_id, key, value, n)
        WHERE e.warning_id IN (SELECT id FROM new)
        ORDER BY e.n
    )
    SELECT coalesce(array_agg(id), '{}') INTO new_ids FROM new;
    RETURN QUERY SELECT u, NULL::text, NULL::text, NULL::boolean, true FROM unnest(new_ids) AS u;
    IF cardinality(new_ids) < cardinality(ids) THEN
        -- Already stored by this source: what a replay is judged against (duplicate or conflict).
        RETURN QUERY SELECT w.id, w.external_id::text, w.content_hash::text, w.assigned, false FROM intake.warnings w
            WHERE w.source = p_source AND w.external_id = ANY(external_ids) AND w.id <> ALL(new_ids);
    END IF;
END $$
"""


def upgrade() -> None:
    op.execute(STORE_WARNINGS)


def downgrade() -> None:
    op.execute("DROP FUNCTION intake.store_warnings")
