"""`quanzu simulate`: options, and the two ways to run — against a private system of real processes started for the
run (default), or against the one `make run` keeps up (`--attach`), next to its demo district."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from services.sim.options import Options
from services.sim.policy import SpeedError, scale_policy
from shared.settings import HOME

if TYPE_CHECKING:
    from services.sim.report import Report


def _number(
    name: str, low: float, high: float, *, low_open: bool = False, integer: bool = False
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if integer else 'a number'}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            bound = f"more than {low:g}" if low_open else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: {bound} and at most {high:g}")
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


simulated_hours = _number("hours", 0, 24 * 7, low_open=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Options()
    p.add_argument(
        "--hours",
        type=_number("hours", 0, 24 * 7, low_open=True),
        default=d.hours,
        help=f"simulated hours of warnings (default {d.hours:g})",
    )
    p.add_argument(
        "--speed",
        type=_number("speed", 1, 1000),
        default=d.speed,
        help=f"simulated seconds per real second; the policy's durations are divided by it "
        f"(default {d.speed:g}: one simulated hour per real minute)",
    )
    p.add_argument(
        "--areas",
        type=_number("areas", 1, 999, integer=True),
        default=d.areas,
        help=f"police areas (default {d.areas})",
    )
    p.add_argument(
        "--streets",
        type=_number("streets", 1, 999, integer=True),
        default=d.streets,
        help=f"streets (default {d.streets})",
    )
    p.add_argument(
        "--teams-per-area",
        type=_number("teams", 1, 10, integer=True),
        default=d.teams_per_area,
        help=f"visit teams per police area (default {d.teams_per_area})",
    )
    p.add_argument(
        "--operators-per-station",
        type=_number("operators", 1, 20, integer=True),
        default=d.operators_per_station,
        help=f"96110 operators per station (default {d.operators_per_station})",
    )
    p.add_argument(
        "--warnings-per-day",
        type=_number("rate", 0, 1_000_000, low_open=True),
        default=d.warnings_per_day,
        help=f"mean warnings per simulated day, over the daily cycle (default {d.warnings_per_day:g})",
    )
    p.add_argument(
        "--answer-p",
        type=_number("probability", 0, 1),
        default=d.answer_p,
        help=f"probability that a subject answers the operator's call (default {d.answer_p:g})",
    )
    p.add_argument(
        "--dissuade-p",
        type=_number("probability", 0, 1),
        default=d.dissuade_p,
        help=f"probability that a visit dissuades the subject (default {d.dissuade_p:g})",
    )
    p.add_argument(
        "--seed",
        type=_number("seed", 0, 2**31, integer=True),
        default=d.seed,
        help=f"one seed, one district, one stream of warnings and answers (default {d.seed})",
    )
    p.add_argument(
        "--start-hour",
        type=_number("hour", 0, 23, integer=True),
        default=d.start_hour,
        help="simulated time of day at the start (default 0: midnight)",
    )
    p.add_argument(
        "--sla-target",
        type=_number("share", 0, 1, low_open=True),
        default=d.sla_target,
        help=f"share of visits on site within the SLA an area must reach (default {d.sla_target:g})",
    )
    p.add_argument(
        "--drain-hours",
        type=_number("hours", 0, 48),
        default=d.drain_hours,
        help=f"simulated hours after the last warning to finish calls and visits (default {d.drain_hours:g})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=HOME / "simulation",
        metavar="DIR",
        help="where report.md and the chart go (default .quanzu/simulation)",
    )
    p.add_argument("--attach", action="store_true",
                   help="run against the system `make run` keeps up, next to its demo district")  # fmt: skip


def options_of(args: argparse.Namespace) -> Options:
    return Options(
        hours=args.hours, speed=args.speed, areas=int(args.areas), streets=int(args.streets),
        teams_per_area=int(args.teams_per_area), operators_per_station=int(args.operators_per_station),
        warnings_per_day=args.warnings_per_day, answer_p=args.answer_p, dissuade_p=args.dissuade_p,
        seed=int(args.seed), start_hour=args.start_hour, sla_target=args.sla_target, drain_hours=args.drain_hours,
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    options = options_of(args)
    problem = _invalid(options)
    if problem:
        print(f"quanzu simulate: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="quanzu simulate: %(message)s")
    from services.cli.admin import AdminError

    def say(line: str) -> None:
        print(f"• {line}", file=sys.stderr, flush=True)

    try:
        if args.attach:
            result = asyncio.run(_attached(options, args.out, say))
        else:
            result = asyncio.run(_private(options, args.out, say))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, OSError, AdminError) as exc:
        print(f"quanzu simulate: {exc}", file=sys.stderr)
        return 1
    print(result.markdown(every_area=False))
    print(f"report: {args.out / 'report.md'}" + (f", chart: {args.out / result.chart}" if result.chart else ""))
    return 0


def _invalid(options: Options) -> str | None:
    if options.streets > options.areas:
        return f"--streets: {options.streets} streets cannot share {options.areas} police areas (at most --areas)"
    try:
        scale_policy(options.speed)
    except SpeedError as exc:
        return f"--speed: {exc}"
    return None


async def _private(options: Options, out: Path, say: Callable[[str], None]) -> Report:
    from services.cli.system import LocalSystem
    from services.sim.run import Target, simulate
    from shared.devinfra import start_postgres

    say(f"starting a private system (PostgreSQL under {HOME / 'sim-pg'}, its own broker and services)")
    server, admin_url = await asyncio.to_thread(start_postgres, HOME / "sim-pg")
    try:
        async with LocalSystem(home=(HOME / "sim").resolve(), pg_admin_url=admin_url, database="quanzu_sim") as system:
            target = Target(system.url("intake"), system.url("dispatch"), system.url("feedback"), system.settings)
            return await simulate(options, target, set_default=True, out=out, say=say)
    finally:
        await asyncio.to_thread(server.cleanup)


async def _attached(options: Options, out: Path, say: Callable[[str], None]) -> Report:
    import httpx

    from services.cli.run import service_specs
    from services.sim.run import Target, simulate
    from shared.settings import CommonSettings

    settings = CommonSettings()
    if not settings.database_url:
        raise RuntimeError("no running system to attach to: start `make run` first (or set QUANZU_DATABASE_URL)")
    urls = {spec.name: spec.url for spec in service_specs()}
    async with httpx.AsyncClient(timeout=3) as http:
        for name in ("intake", "dispatch", "feedback"):
            try:
                ready = (await http.get(f"{urls[name]}/readyz")).status_code == 200
            except httpx.HTTPError:
                ready = False
            if not ready:
                raise RuntimeError(f"{name} does not answer at {urls[name]}: is `make run` up?")
    target = Target(urls["intake"], urls["dispatch"], urls["feedback"], settings)
    say(f"attached to the running system ({urls['intake']}, {urls['dispatch']}, {urls['feedback']})")
    return await simulate(options, target, set_default=False, out=out, say=say)
