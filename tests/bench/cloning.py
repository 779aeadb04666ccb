"""Cloning a case: the rows the services wrote for a reference case, copied server-side for many new cases.

Each clone `g` gets its own ids (for the ids the template owns: its case, tasks, timeline entries, ...: the md5 of
the template's id and `g`), its own phone number and keyed subject hash (in every text, JSON and bytea column that
names them), and its timestamps moved by one interval. The rows are copied with `INSERT ... SELECT` over `unnest`
of the clones' numbers, phones and keys: one statement per table and template. `differences` reads one clone
back and compares it with what `expected_rows` computes in Python, independently of the SQL.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

TEXTS = ("text", "character varying", "jsonb", "bytea")  # the column types whose contents may name ids and phones


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # PostgreSQL's data_type


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]  # without identity columns: a clone's row gets its own

    @property
    def qualified(self) -> str:
        return f'{self.schema}."{self.name}"'

    @property
    def owns(self) -> str:
        """SQL: row `t` names one of the ids in $1."""
        return " OR ".join(f't."{c.name}" = ANY($1::uuid[])' for c in self.columns if c.type == "uuid")


@dataclass
class Template:
    owned: list[uuid.UUID]  # the ids of the case's own rows: each clone gets new ones
    phone: str
    subject_key: str
    anchor: datetime  # the moment a clone's shift is measured from
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by table, as fetched


async def tables(conn: asyncpg.Connection, schemas: Sequence[str], skip: Sequence[str]) -> list[Table]:
    """The tables of `schemas` that could hold a case's rows (those with a uuid column), parents first."""
    rows = await conn.fetch(
        """SELECT table_schema, table_name, column_name, data_type, is_identity
             FROM information_schema.columns
            WHERE table_schema = ANY($1::text[]) AND table_name <> 'alembic_version'
            ORDER BY table_schema, table_name, ordinal_position""",
        list(schemas),
    )
    found: dict[tuple[str, str], list[Column]] = {}
    for r in rows:
        cols = found.setdefault((r["table_schema"], r["table_name"]), [])
        if r["is_identity"] != "YES":
            cols.append(Column(r["column_name"], r["data_type"]))
    out = [Table(schema, name, tuple(cols)) for (schema, name), cols in found.items()]
    out = [t for t in out if t.owns and f"{t.schema}.{t.name}" not in skip]
    return sorted(out, key=lambda t: (t.name != "cases", t.schema, t.name))


async def template(
    conn: asyncpg.Connection,
    tables: list[Table],
    owned: list[uuid.UUID],
    phone: str,
    subject_key: str,
    anchor: datetime,
) -> Template:
    found = Template(owned, phone, subject_key, anchor)
    for t in tables:
        rows = await conn.fetch(f"SELECT * FROM {t.qualified} t WHERE {t.owns}", owned)
        if rows:
            found.rows[t.qualified] = [dict(r) for r in rows]
    return found


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _replacements(template: Template) -> list[tuple[str, str]]:
    """(the template's text, SQL of the clone's): ids first, then the subject's key, then the phone number."""
    pairs = [(str(u), f"md5({_literal(str(u) + ':')} || c.g)::uuid::text") for u in template.owned]
    return [*pairs, (template.subject_key, "c.skey"), (template.phone, "c.phone")]


def _as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def column_sql(column: Column, present: Sequence[tuple[str, str]]) -> str:
    """The clone's value of `column`: owned ids mapped, times shifted, and in texts the `present` replacements
    (those whose template text occurs in this column of the template's rows)."""
    col = f't."{column.name}"'
    if column.type == "uuid":
        return f"CASE WHEN {col} = ANY($1::uuid[]) THEN md5({col}::text || ':' || c.g)::uuid ELSE {col} END"
    if column.type == "timestamp with time zone":
        return f"{col} + $2::interval"
    if not present or column.type not in TEXTS:
        return col

    def chain(expr: str) -> str:
        for old, new in present:
            expr = f"replace({expr}, {_literal(old)}, {new})"
        return expr

    if column.type == "jsonb":
        return f"({chain(col + '::text')})::jsonb"
    if column.type == "bytea":
        return "convert_to(" + chain(f"convert_from({col}, 'UTF8')") + ", 'UTF8')"
    return chain(col)


def clone_sql(t: Table, template: Template) -> str:
    """INSERT the clones of the template's rows of `t`. Parameters: $1 the owned ids, $2 the time shift, $3 the
    clones' numbers, $4 their phones, $5 their subject keys."""
    rows = template.rows[t.qualified]
    exprs = []
    for column in t.columns:
        values = [_as_text(r[column.name]) for r in rows if r[column.name] is not None]
        present = [(old, new) for old, new in _replacements(template) if any(old in v for v in values)]
        exprs.append(column_sql(column, present))
    names = ", ".join(f'"{c.name}"' for c in t.columns)
    return (
        f"INSERT INTO {t.qualified} ({names}) SELECT {', '.join(exprs)} FROM {t.qualified} t, "
        f"unnest($3::bigint[], $4::text[], $5::text[]) AS c(g, phone, skey) WHERE {t.owns}"
    )


async def clone(
    conn: asyncpg.Connection,
    tables: list[Table],
    template: Template,
    shift: timedelta,
    numbers: list[int],
    phones: list[str],
    keys: list[str],
) -> int:
    """Clone the template once per number; returns the rows written."""
    written = 0
    for t in tables:
        if t.qualified in template.rows:
            status = await conn.execute(clone_sql(t, template), template.owned, shift, numbers, phones, keys)
            written += int(status.split()[-1])
    return written


def clone_id(template_id: uuid.UUID, g: int) -> uuid.UUID:
    """What the clone SQL's md5(id || ':' || g)::uuid gives."""
    return uuid.UUID(hashlib.md5(f"{template_id}:{g}".encode()).hexdigest())  # noqa: S324 (an id, not a secret)


def expected_rows(template: Template, t: Table, g: int, shift: timedelta, phone: str, key: str) -> list[dict[str, Any]]:
    """The template's rows of `t` as clone `g` must have them."""
    mapping = {u: clone_id(u, g) for u in template.owned}
    texts = [*((str(u), str(v)) for u, v in mapping.items()), (template.subject_key, key), (template.phone, phone)]

    def text(value: str) -> str:
        for old, new in texts:
            value = value.replace(old, new)
        return value

    out = []
    for row in template.rows[t.qualified]:
        copy: dict[str, Any] = {}
        for column in t.columns:
            value = row[column.name]
            if value is None:
                pass
            elif column.type == "uuid":
                value = mapping.get(value, value)
            elif column.type == "timestamp with time zone":
                value = value + shift
            elif column.type == "jsonb":
                value = json.loads(text(value))
            elif column.type == "bytea":
                value = text(value.decode()).encode()
            elif column.type in TEXTS:
                value = text(value)
            copy[column.name] = value
        out.append(copy)
    return out


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


async def differences(
    conn: asyncpg.Connection, tables: list[Table], template: Template, g: int, shift: timedelta, phone: str, key: str
) -> list[str]:
    """The tables in which clone `g`'s rows differ from what the mapping says they must be (none: every column of
    every row is as expected)."""
    ids = [clone_id(u, g) for u in template.owned]
    problems = []
    for t in tables:
        if t.qualified not in template.rows:
            continue
        names = ", ".join(f'"{c.name}"' for c in t.columns)
        got = [dict(r) for r in await conn.fetch(f"SELECT {names} FROM {t.qualified} t WHERE {t.owns}", ids)]
        for row in got:
            for c in t.columns:
                if c.type == "jsonb" and row[c.name] is not None:
                    row[c.name] = json.loads(row[c.name])
        if _canonical(got) != _canonical(expected_rows(template, t, g, shift, phone, key)):
            problems.append(f"{t.qualified} of clone {g}")
    return problems
