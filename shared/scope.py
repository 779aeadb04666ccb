"""The caller's scope as PostgreSQL sees it: row-level security policies read these per-transaction settings.

Every service connects as (or switches to) a role that owns no table and cannot bypass row-level
security, and every transaction that touches scoped rows first sets who is asking. A transaction that
forgets to set it sees no scoped rows at all: a forgotten WHERE fails closed.
"""

from __future__ import annotations

from shared.auth import Principal

SYSTEM = "system"  # consumers, relays, timers, the auth flow: the service acting on its own behalf


def principal_settings(principal: Principal) -> dict[str, str]:
    return {
        "quanzu.role": principal.role,
        "quanzu.member_id": str(principal.member_id),
        "quanzu.team_id": str(principal.team_id or ""),
        "quanzu.station": principal.station or "",
        "quanzu.areas": "{" + ",".join(f'"{a}"' for a in sorted(principal.areas)) + "}",
        "quanzu.source": "",
    }


def source_settings(source: str) -> dict[str, str]:
    return {"quanzu.role": "source", "quanzu.source": source, "quanzu.areas": "{}"}


def system_settings() -> dict[str, str]:
    return {"quanzu.role": SYSTEM, "quanzu.areas": "{}"}


def app_role(service: str) -> str:
    return f"quanzu_{service}_app"


def rls_sql(schema: str, table: str, using: str, *, check: str | None = None) -> list[str]:
    """DDL for migrations: enable and force row-level security on a table with one policy."""
    qualified = f"{schema}.{table}"
    statements = [
        f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY scope ON {qualified} USING ({using})" + (f" WITH CHECK ({check})" if check else ""),
    ]
    return statements


def setting(name: str) -> str:
    """SQL for a scope setting, '' when unset (so policies fail closed)."""
    return f"coalesce(current_setting('quanzu.{name}', true), '')"


IS_SYSTEM = f"{setting('role')} = 'system'"
IS_ADMIN = f"{setting('role')} = 'admin'"
IS_SCOPED = f"{setting('role')} <> ''"
#: The caller's police areas as a text[]; empty (never NULL) when unset, so `= ANY(...)` is simply false.
AREAS = "coalesce(nullif(current_setting('quanzu.areas', true), ''), '{}')::text[]"


def app_role_sql(service: str) -> list[str]:
    """DDL for migrations: the service's runtime role, with data rights and no ownership."""
    role = app_role(service)
    return [
        f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN NOBYPASSRLS;
              END IF;
            END $$""",
        f"GRANT {role} TO CURRENT_USER",
        f"GRANT USAGE ON SCHEMA {service} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {service} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {service} TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {service} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {service} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]


def task_scope(team_column: str = "team_id") -> str:
    """Who sees a task (dispatch's tasks, feedback's read model of them): officers and auxiliaries their area's
    (or their team's, once reassigned) visits and follow-ups; grid workers follow-ups only; operators their
    station's areas' calls; a supervisor the station; admins and the service itself everything."""
    role = setting("role")
    in_areas = f"area_code = ANY({AREAS})"
    own_team = f"{team_column}::text = {setting('team_id')}"
    return (
        f"{IS_SYSTEM} OR {IS_ADMIN} OR ({role} = 'supervisor' AND station = {setting('station')})"
        f" OR ({role} IN ('officer', 'auxiliary') AND tier IN ('visit', 'follow_up') AND ({in_areas} OR {own_team}))"
        f" OR ({role} = 'grid_worker' AND tier = 'follow_up' AND ({in_areas} OR {own_team}))"
        f" OR ({role} = 'operator' AND tier = 'call' AND {in_areas})"
    )
