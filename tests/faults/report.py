"""The fault run's figures: printed after every run; the full run also rewrites the fault suite's section of
docs/RELIABILITY.md (between its markers), keeping a line per recent full run."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.faults.run import Outcome

DOC = Path(__file__).resolve().parents[2] / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
HISTORY_HEADER = "| finished (UTC) | seed | acknowledged | lost | duplicated actions | max recovery | result |"
HISTORY_ROWS = 5
RATE_NAMES = {
    "call_connected_rate": "call connected",
    "call_attempt_connected_rate": "call attempts connected",
    "visit_met_rate": "visits met",
    "dissuasion_rate": "dissuaded at the door",
    "overall_dissuasion_rate": "dissuaded overall",
    "antifraud_app_install_rate": "anti-fraud app installed",
}


def summary(outcome: Outcome) -> str:
    """The figures as lines of text (what every run prints)."""
    lines = [
        f"fault run ({outcome.plan.mode}, seed {outcome.seed}): {outcome.wall_s:.0f}s",
        f"  warnings acknowledged {outcome.acknowledged} (fault-free run {outcome.acknowledged_fault_free}), "
        f"lost {outcome.lost}, duplicated actions {outcome.duplicated}, "
        f"max recovery {outcome.max_recovery}",
        f"  intake answers {dict(sorted(outcome.answers.items()))}, connections refused or cut "
        f"{outcome.connection_failures}",
        f"  delivered twice {outcome.redelivered}, poison {outcome.poison}, SMS {outcome.sms_messages}, "
        f"deadlines fired {outcome.deadlines_fired}, cases {outcome.cases}",
        f"  responders {dict(sorted(outcome.responses.items()))}",
    ]
    lines += [f"  {f.name}: held {f.held_s:.1f}s, recovered in {f.recovery} {f.detail}" for f in outcome.faults]
    lines += [f"  PROBLEM: {p}" for p in outcome.problems]
    return "\n".join(lines)


def _ratio(counts: tuple[int, int] | None) -> str:
    if not counts or not counts[1]:
        return "–"
    return f"{counts[0]}/{counts[1]} ({counts[0] / counts[1]:.1%})"


def _detail(detail: str) -> str:
    """Details such as "(185 poison messages) (250 of 250 dead letters)", joined with semicolons."""
    parts = [p.strip(" ()") for p in detail.strip().split(") (")]
    return "; ".join(p for p in parts if p) or "–"


def history_row(outcome: Outcome, finished: str) -> str:
    slowest = outcome.slowest
    recovery = f"{slowest.recovery} ({slowest.name})" if slowest else "–"
    result = "passed" if not outcome.problems else f"FAILED ({len(outcome.problems)} problems)"
    return (
        f"| {finished} | {outcome.seed} | {outcome.acknowledged} | {outcome.lost} | {outcome.duplicated} "
        f"| {recovery} | {result} |"
    )


def previous_rows(doc: str) -> list[str]:
    section = re.search(re.escape(BEGIN) + r"(.*?)" + re.escape(END), doc, re.DOTALL)
    if not section or HISTORY_HEADER not in section.group(1):
        return []
    table = section.group(1).split(HISTORY_HEADER, 1)[1]
    return [line for line in table.splitlines() if re.match(r"^\| \d{4}-\d\d-\d\d", line)]


def section(outcome: Outcome, finished: str, previous: list[str], load: str) -> str:
    plan = outcome.plan
    answers = ", ".join(f"{code} × {count}" for code, count in sorted(outcome.answers.items()))
    fired = ", ".join(f"{kind} {count}" for kind, count in outcome.deadlines_fired.items())
    rates = "; ".join(f"{label} {_ratio(outcome.rates.get(name))}" for name, label in RATE_NAMES.items())
    faults = [f"| {f.name} | {f.held_s:.1f} s | {f.recovery} | {_detail(f.detail)} |" for f in outcome.faults]
    rows = [history_row(outcome, finished), *previous][:HISTORY_ROWS]
    problems = [f"- {p}" for p in outcome.problems[:20]] or ["- none"]
    return "\n".join(
        [
            BEGIN,
            "## The fault suite",
            "",
            "`tests/faults` runs a whole Quanzu as real processes (`services/cli/system.py`: intake, two dispatch "
            "replicas, feedback, the development SMS gateway, a tansu broker) on a PostgreSQL server of its own. An "
            "open-loop generator posts warnings (single posts and batches of five) and retries whatever was refused "
            "for now with the same `external_id`; operators and teams answer every task through the HTTP APIs, "
            "their answers drawn from the warning's number and the seed. Meanwhile it injects, one after the other "
            "at random moments: SIGKILL of intake, of each dispatch replica and of feedback (then a restart); the "
            "broker paused (SIGSTOP, then SIGCONT); the broker lost and restarted empty, then "
            "`quanzu outbox replay --since` a moment before; PostgreSQL crashed (`pg_ctl stop -m immediate`) and "
            "started again; the SMS gateway slow (5 s) and failing half its requests, then only failing; every "
            "Kafka message delivered a second time, shuffled across partitions; and poison on every partition of "
            "every topic (bytes that are not JSON, JSON that is not an envelope, data that does not validate, a "
            "schema version no consumer knows, and an event type no consumer handles).",
            "",
            "Then it posts the same warnings again from another source with no fault on, and checks from the "
            "databases and the gateway's record: every acknowledged warning is stored and is exactly one case; each "
            "warning's case got the same tasks and the same closure as without faults; no SMS went twice (per task "
            "and per subject) and none recorded as sent is missing; no task has two outcomes; task creations, "
            "closures, SMS and SLA breaches were each committed once; no deadline is overdue and unfired, and every "
            "case is closed; the outcome-based rates (`/v1/stats/rates` by source) are equal with and without "
            "faults; every poison message went to `<topic>.dlq` from every consumer group, each group committed past "
            "it, and none left a trace (no case, warning or area from the phantom events). A fault's recovery time "
            "runs from its end (the restarted process ready, the broker or the database back, the replay done) until "
            "every warning acknowledged by then is a case in dispatch, every deadline due by then has fired, feedback "
            "has every task created by then and dispatch has applied every outcome recorded by then; `> N s` means "
            "the system was still behind after N s (on a busy machine it may be: that alone fails nothing, the checks "
            "at the end do).",
            "",
            "Run it: `make test-faults` (the full run below, about ten minutes; it rewrites this section). `make "
            "test` runs the short form (every fault once, a 5 s broker pause and database outage, 10 s of SMS "
            "faults). `QUANZU_FAULTS_SEED=<seed>` repeats a run's fault moments, warnings and answers.",
            "",
            "### Latest full run",
            "",
            f"_Finished {finished} UTC, seed {outcome.seed}, {outcome.wall_s:.0f} s in all, on "
            f"{platform.system()} with {os.cpu_count()} CPUs (load average at the end {load}); rate "
            f"{plan.rate:g} posts/s, each service killed {plan.kill_rounds}×, broker paused {plan.broker_pause_s:g} "
            f"s, PostgreSQL down {plan.postgres_down_s:g} s, SMS faults {plan.sms_faults_s:g} s._",
            "",
            "| figure | value |",
            "|---|---|",
            f"| warnings acknowledged (with faults / fault-free run) | {outcome.acknowledged} / "
            f"{outcome.acknowledged_fault_free} |",
            f"| warnings lost | {outcome.lost} |",
            f"| duplicated actions | {outcome.duplicated} |",
            f"| max recovery time | {outcome.max_recovery} |",
            f"| intake's answers to the faulty run (a batch is one 200) | {answers}; connections refused or cut: "
            f"{outcome.connection_failures} |",
            f"| messages delivered twice / poison messages | {outcome.redelivered} / {outcome.poison} |",
            f"| cases / SMS sent / deadlines fired | {outcome.cases} / {outcome.sms_messages} / {fired} |",
            f"| outcome rates with faults (equal without) | {rates} |",
            "",
            "| fault | held | recovery | detail |",
            "|---|---|---|---|",
            *faults,
            "",
            "Problems found:",
            "",
            *problems,
            "",
            "### Recent full runs",
            "",
            HISTORY_HEADER,
            "|---|---|---|---|---|---|---|",
            *rows,
            END,
        ]
    )


def rewrite(doc: str, new_section: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(doc):
        raise ValueError("docs/RELIABILITY.md has no fault suite markers")
    return pattern.sub(lambda _: new_section, doc)


def record(outcome: Outcome, finished: str) -> None:
    """Rewrite the fault suite's section of docs/RELIABILITY.md (re-read just before: others edit the file)."""
    try:
        one, five, fifteen = os.getloadavg()
        load = f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
    except OSError:
        load = "unknown"
    doc = DOC.read_text()
    DOC.write_text(rewrite(doc, section(outcome, finished, previous_rows(doc), load)))
