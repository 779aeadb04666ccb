"""One simulation against a running system: load the district, post the warnings at their simulated times, let the
responders work, wait for the pipeline to drain, then read back what happened and write the report."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx

from services.sim import arrivals, observe, setup
from services.sim import report as reports
from services.sim.actors import Responders
from services.sim.arrivals import SimWarning
from services.sim.clock import SimClock
from services.sim.district import District
from services.sim.members import send
from services.sim.options import Options
from services.sim.policy import scale_policy
from services.sim.staffing import VisitJob, compliance, teams_needed, travel_bound
from shared.settings import CommonSettings

CHART = "sla-compliance.png"
BATCH = 500


@dataclass(frozen=True)
class Target:
    """The system to simulate against."""

    intake_url: str
    dispatch_url: str
    feedback_url: str
    settings: CommonSettings


@dataclass
class Poster:
    """The upstream system: posts each warning when its simulated time comes, in batches of what is due."""

    http: httpx.AsyncClient
    intake_url: str
    planned: list[SimWarning]
    clock: SimClock
    run_tag: str
    posted: int = 0
    accepted: int = 0
    ids: list[str] = field(default_factory=list)

    async def run(self) -> None:
        i = 0
        while i < len(self.planned):
            now = self.clock.now_s()
            j = i
            while j < len(self.planned) and self.planned[j].at_s <= now and j - i < BATCH:
                j += 1
            if j == i:
                # the next warning's simulated time has not come: a schedule, not a wait for the system
                await asyncio.sleep(min((self.planned[i].at_s - now) / self.clock.speed, 0.25))
                continue
            await self._post(self.planned[i:j])
            i = j

    async def _post(self, batch: list[SimWarning]) -> None:
        issued = datetime.now(UTC).isoformat()
        response = await send(
            self.http,
            "POST",
            f"{self.intake_url}/v1/warnings/batch",
            json={"warnings": [w.record(self.run_tag, issued) for w in batch]},
            headers={"Authorization": f"Bearer {setup.SIM_SOURCE_KEY}"},
        )
        self.posted += len(batch)
        if response.status_code != 200:
            raise RuntimeError(f"intake refused a batch: HTTP {response.status_code}")
        for result in response.json()["results"]:
            if result["code"] == 202:
                self.accepted += 1
                self.ids.append(result["id"])


class Progress:
    """`[#####.....] 12.0/24.0 h simulated, 1,234 warnings, 56 open tasks` on a terminal; a line per simulated hour
    otherwise (a log file should not fill with carriage returns)."""

    def __init__(self, stream: IO[str], hours: float) -> None:
        self.stream = stream
        self.hours = hours
        self.tty = stream.isatty()
        self._last_hour = -1

    def show(self, sim_h: float, posted: int, open_tasks: int, phase: str) -> None:
        done = min(sim_h / self.hours, 1.0) if self.hours else 1.0
        bar = "#" * int(done * 20) + "." * (20 - int(done * 20))
        text = f"[{bar}] {min(sim_h, self.hours):.1f}/{self.hours:g} h simulated, {posted:,} warnings, "
        text += f"{open_tasks:,} open tasks{' — ' + phase if phase else ''}"
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
        elif int(sim_h) != self._last_hour:
            self._last_hour = int(sim_h)
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def simulate(
    options: Options,
    target: Target,
    *,
    set_default: bool,
    out: Path | None,
    say: Callable[[str], None] = lambda _: None,
    progress_stream: IO[str] = sys.stderr,
) -> reports.Report:
    district = options.district()
    policy = scale_policy(options.speed)
    planned = arrivals.warnings(
        district,
        seed=options.seed,
        per_day=options.warnings_per_day,
        hours=options.hours,
        start_hour=options.start_hour,
    )
    say(
        f"district: {len(district.areas)} police areas, {len(district.streets)} streets, {len(district.stations)} "
        f"stations; {len(planned):,} warnings over {options.hours:g} simulated hours at speed {options.speed:g}"
    )
    await setup.load(target.settings, district, policy, set_default=set_default, say=say)
    clock = SimClock(options.speed, options.start_hour)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as http:
        responders = Responders(
            district,
            dispatch_url=target.dispatch_url,
            feedback_url=target.feedback_url,
            password=setup.SIM_PASSWORD,
            admin=setup.SIM_ADMIN,
            seed=options.seed,
            clock=clock,
            behaviour=options.responder_behaviour(),
            http=http,
        )
        say("logging the simulated responders in")
        await responders.log_in()
        clock.restart()
        wall = time.monotonic()
        poster = Poster(http, target.intake_url, planned, clock, f"{options.seed}-{int(time.time())}")
        stop = asyncio.Event()
        actors = asyncio.create_task(responders.run(stop))
        progress = Progress(progress_stream, options.hours)
        phase = ["posting"]

        async def tick() -> None:
            while True:
                progress.show(clock.now_s() / 3600, poster.accepted, responders.open_tasks, phase[0])
                await asyncio.sleep(0.5)

        ticker = asyncio.create_task(tick())
        try:
            await poster.run()
            # the simulated day goes on after its last warning
            await clock.sleep(options.hours * 3600 - clock.now_s())
            phase[0] = "draining"
            drained = await _drain(options, target.settings, poster, responders, clock)
        finally:
            stop.set()
            await actors
            ticker.cancel()
            progress.end()
        end = datetime.now(UTC)
        since = clock.started_at - timedelta(seconds=5)
        tasks = await observe.task_times(target.settings, district.codes, since)
        rates = await observe.rates_by_area(responders.admin, target.feedback_url, since, end + timedelta(seconds=1))
        cases = await observe.cases_of(target.settings, poster.ids)
    result = _report(options, district, planned, poster, responders, clock, tasks, rates, cases, end)
    result.wall_s = time.monotonic() - wall
    if not drained:
        result.notes.append(
            f"the drain limit ({options.drain_hours:g} simulated hours after the simulated day) passed with "
            f"{responders.open_work} call or visit tasks still open"
        )
    if out is not None:
        _write(result, out, planned, tasks, clock, options, end)
    return result


async def _drain(
    options: Options, settings: CommonSettings, poster: Poster, responders: Responders, clock: SimClock
) -> bool:
    """Until every accepted warning is in a case and, on two later listings, no call or visit is left to do."""
    limit = (options.hours + options.drain_hours) * 3600
    mark: int | None = None
    while clock.now_s() < limit:
        if mark is None:
            if await observe.cases_of(settings, poster.ids) >= len(set(poster.ids)):
                mark = responders.polls
        elif responders.polls >= mark + 2 and responders.open_work == 0:
            return True
        await asyncio.sleep(0.25)
    return False


def _cases_of_run(responders: Responders, poster: Poster) -> set[str]:
    # attached to a system that has run before, the responders also finish older cases' tasks: not this run's
    posted = set(poster.ids)
    return {case for case, warnings in responders.case_warnings.items() if warnings & posted}


def _report(
    options: Options,
    district: District,
    planned: list[SimWarning],
    poster: Poster,
    responders: Responders,
    clock: SimClock,
    tasks: list[observe.TaskTimes],
    rates: dict[str, object],
    cases: int,
    end: datetime,
) -> reports.Report:
    per_area = reports.compliance(tasks, end)
    behaviour = options.responder_behaviour()
    visit_sla_s = 3600.0  # the contract's default visit_arrive_within_s, in simulated seconds
    staffing = []
    for area in district.areas:
        tally = per_area.get((area.code, "visit"))
        if tally is None or not tally.due or (tally.rate or 0) >= options.sla_target:
            continue
        jobs = [
            VisitJob(clock.at(v.requested_at), v.travel_s, v.on_site_s)
            for v in responders.visits
            if v.area_code == area.code and v.state != "cancelled"
        ]
        staffing.append(
            reports.Staffing(
                area_code=area.code,
                area_name=area.name,
                visits=tally.due,
                on_time=tally.met,
                teams=options.teams_per_area,
                replayed=compliance(jobs, options.teams_per_area, visit_sla_s),
                needed=teams_needed(jobs, visit_sla_s, options.sla_target),
                travel_bound=travel_bound(jobs, visit_sla_s, options.sla_target),
            )
        )
    settings = [
        (
            "district",
            f"{len(district.areas)} police areas in {len(district.streets)} streets and {len(district.stations)} "
            f"stations; teams per area: {options.teams_per_area}; {options.operators_per_station} operators per "
            "station",
        ),
        (
            "simulated",
            f"{options.hours:g} h from {options.start_hour:02g}:00 at speed {options.speed:g} ({options.speed:g} "
            f"simulated seconds per real second); policy: the contract's defaults, every duration divided by "
            f"{options.speed:g}",
        ),
        (
            "warnings per day",
            f"{options.warnings_per_day:g} (daily cycle, contract fraud types; planned {len(planned)})",
        ),
        ("answer probability (per subject)", f"{behaviour.answer_p:g}"),
        ("dissuasion probability at a visit", f"{behaviour.dissuade_p:g}"),
        ("seed", str(options.seed)),
    ]
    result = reports.Report(
        settings=settings,
        posted=poster.posted,
        accepted=poster.accepted,
        cases=cases,
        tiers=reports.per_tier(per_area),
        areas=per_area,
        area_names={a.code: a.name for a in district.areas},
        feedback=reports.feedback_counts(rates, district.codes),
        responders=responders.tallies.counts(_cases_of_run(responders, poster)),
        expected=behaviour.expected(),
        staffing=staffing,
        sla_target=options.sla_target,
        visit_sla_min=visit_sla_s / 60,
        wall_s=0.0,
    )
    result.notes.append(
        f"the system's own latency counts {options.speed:g} times over in simulated time: at speed {options.speed:g} "
        f"half a real second of pipeline is {options.speed / 2:g} simulated seconds (the SMS deadline, 60 s, is "
        f"{60 / options.speed:g} real seconds)"
    )
    if responders.tallies.errors:
        result.notes.append(f"{responders.tallies.errors} responder actions were refused (see the log)")
    return result


def _write(
    result: reports.Report,
    out: Path,
    planned: list[SimWarning],
    tasks: list[observe.TaskTimes],
    clock: SimClock,
    options: Options,
    end: datetime,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    per_hour = Counter(int(options.start_hour + w.at_s / 3600) for w in planned)
    for hour in range(int(options.start_hour), int(options.start_hour + options.hours + 0.999)):
        per_hour.setdefault(hour, 0)
    try:
        from services.sim import chart

        chart.draw(
            out / CHART,
            arrivals_per_hour=per_hour,
            hourly=reports.hourly(tasks, end, clock.hour_of),
            target=options.sla_target,
            title=f"{len(options.district().areas)} police areas, {options.warnings_per_day:g} warnings/day, "
            f"seed {options.seed}",
        )
        result.chart = CHART
    except ImportError:
        result.notes.append("no chart: matplotlib is not installed (it comes with the `local` extra)")
    (out / "report.md").write_text(result.markdown(every_area=True), encoding="utf-8")
