"""`make bench`: run the benchmarks, print their tables, and record them in BENCHMARKS.md.

Each benchmark is a module of this package with an adapter below returning a `Section`; a run rewrites the
sections it produced (between their markers) and leaves the others as they were. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.bench import deadlines, intake, rates

BENCHMARKS_MD = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"
HEADER = """# Benchmarks

Figures measured by `make bench` (`tests/bench/run.py`): scripts that measure and print, never tests that assert
a time. Each section is rewritten by the run that measured it, with the machine and the date; figures from
another machine are not comparable.
"""


@dataclass
class Section:
    name: str
    title: str
    markdown: str  # the body recorded in BENCHMARKS.md
    console: str  # what is printed at the end of the run
    postgres: str | None = None


def _rates(args: argparse.Namespace) -> Section:
    result = rates.run(cases=args.cases, runs=args.runs, budget=args.budget, with_explain=args.explain)
    return Section(rates.NAME, rates.TITLE, rates.markdown(result), rates.console(result), result.postgres)


def _intake(args: argparse.Namespace) -> Section:
    result = intake.run(seconds=args.intake_seconds, latency_seconds=args.intake_latency_seconds)
    return Section(intake.NAME, intake.TITLE, intake.markdown(result), intake.console(result), result.postgres)


def _deadlines(args: argparse.Namespace) -> Section:
    result = deadlines.run(deadlines=args.deadlines, replicas=args.deadline_replicas, wait_s=args.deadline_wait)
    return Section(
        deadlines.NAME, deadlines.TITLE, deadlines.markdown(result), deadlines.console(result), result.postgres
    )


def _replica_counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(n) for n in text.split(","))
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive numbers")
    return counts


BENCHMARKS: dict[str, Callable[[argparse.Namespace], Section]] = {rates.NAME: _rates}
BENCHMARKS[intake.NAME] = _intake
BENCHMARKS[deadlines.NAME] = _deadlines


def machine(postgres: str | None) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    cpus = len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE)) or os.cpu_count() or 0
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    parts = [
        f"{models[0].strip() if models else platform.processor() or 'unknown CPU'} × {cpus} CPUs",
        f"{int(mem_kb.group(1)) / 2**20:.0f} GiB RAM" if mem_kb else "RAM unknown",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
    ]
    if postgres:
        parts.append(f"PostgreSQL {postgres}")
    return ", ".join(parts)


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


PROBE_LOOPS = 2_000_000


def cpu_probe_ms() -> float:
    """A fixed pure-Python loop on one core, best of three, in ms: a speed reading to compare runs by. The same
    machine label has run the same code 20-30% slower from one session to another."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(PROBE_LOOPS):
            total += i * i % 7
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def command(argv: Sequence[str]) -> str:
    return "make bench" if not argv else "python -m tests.bench.run " + shlex.join(argv)


def record(text: str, section: Section, when: str, cmd: str, load: tuple[str, str], probe: tuple[float, float]) -> str:
    begin, end = f"<!-- bench:{section.name}:begin -->", f"<!-- bench:{section.name}:end -->"
    body = "\n\n".join(
        [
            begin,
            f"## {section.title}",
            f"_Measured {when} with `{cmd}` on {machine(section.postgres)}; load average (1/5/15 min) "
            f"{load[0]} before the run, {load[1]} at its end (counting the run itself); other work on the machine "
            "slows the figures. CPU probe (a fixed pure-Python loop on one core, best of 3; lower is faster: compare "
            f"runs by it): {probe[0]:,.0f} ms before the run, {probe[1]:,.0f} ms at its end._",
            section.markdown,
            end,
        ]
    )
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: body, text)
    return text.rstrip("\n") + "\n\n" + body + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument(
        "--cases", type=int, default=rates.DEFAULT_CASES, help="cases to generate (default %(default)s)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per query, after one warm-up (default 5)")
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds of timed runs per query before stopping early (default 20)"
    )
    parser.add_argument("--explain", action="store_true", help="also print EXPLAIN ANALYZE of the main query")
    parser.add_argument(
        "--intake-seconds", type=float, default=8.0, help="intake: seconds per throughput step (default %(default)s)"
    )
    parser.add_argument(
        "--intake-latency-seconds",
        type=float,
        default=25.0,
        help="intake: seconds of the fixed-rate latency run (default %(default)s)",
    )
    parser.add_argument(
        "--deadlines",
        type=int,
        default=deadlines.DEFAULT_DEADLINES,
        help="deadlines: open cases whose deadlines fall due at once (default %(default)s)",
    )
    parser.add_argument(
        "--deadline-replicas",
        type=_replica_counts,
        default=deadlines.DEFAULT_REPLICAS,
        help="deadlines: dispatch replica counts to run, e.g. 1,2 (the default)",
    )
    parser.add_argument(
        "--deadline-wait",
        type=float,
        default=deadlines.DEFAULT_WAIT_S,
        help="deadlines: seconds after T the deadlines get to fire, per replica count (default %(default)s)",
    )
    parser.add_argument("--no-write", action="store_true", help=f"do not update {BENCHMARKS_MD.name}")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these benchmarks")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.runs < 1:
        parser.error("--cases and --runs must be positive")

    load_before, probe_before = load_average(), cpu_probe_ms()
    print(f"machine: {machine(None)}; load average {load_before}; CPU probe {probe_before:,.0f} ms", flush=True)
    sections = [BENCHMARKS[name](args) for name in (args.only or BENCHMARKS)]
    for section in sections:
        print(f"\n## {section.title}\n\n{section.console}\n", flush=True)
    load_after, probe_after = load_average(), cpu_probe_ms()
    print(
        f"load average {load_before} before, {load_after} after; "
        f"CPU probe {probe_before:,.0f} ms before, {probe_after:,.0f} ms after"
    )
    if not args.no_write:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
        for section in sections:
            text = record(text, section, when, command(argv), (load_before, load_after), (probe_before, probe_after))
        BENCHMARKS_MD.write_text(text)
        print(f"recorded in {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
