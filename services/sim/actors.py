"""Simulated 96110 operators, area teams and grid workers, acting through the real HTTP APIs with their own tokens.

    await setup.load(settings, district, scale_policy(60), set_default=True)  # areas, teams, members, source
    responders = Responders(district, dispatch_url=..., feedback_url=..., password=setup.SIM_PASSWORD,
                            admin=setup.SIM_ADMIN, seed=7, clock=SimClock(60))
    await responders.log_in()            # before the clock matters: logins are slow on purpose (argon2)
    await responders.run(stop_event)     # until stop_event is set
    responders.tallies.counts(cases)    # what they recorded, counted as contract §5 counts (for comparisons)

How they learn of tasks: the members' phones would be notified; here one district admin listing of open tasks,
polled every `poll_s` real seconds, stands in for those notifications (one request instead of one per team). Every
action on a task — 签收, reading the number, arriving, recording the outcome — is done by the responsible member
with their own token, and each POST carries an Idempotency-Key.

Who does what: a station's operators take its call tasks one at a time, first come first served; a visit is
acknowledged (签收) by the area's first team at once, then the area's teams go first come first served, one visit
at a time (drive, door, record); a follow-up is acknowledged by the team and recorded by its grid worker hours
later. What the subjects answer comes from `Behaviour`, keyed by the subject's number and the attempt, so the same
seed gives the same outcomes whatever the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from services.sim.behaviour import Behaviour
from services.sim.clock import SimClock
from services.sim.district import District, TeamSpec
from services.sim.members import MemberSession

log = logging.getLogger("quanzu.sim")
FEEDBACK_CATCH_UP_S = 60.0
FULL_LISTING_EVERY = 10
NEWEST = 50


@dataclass
class Tallies:
    """Outcomes the feedback service accepted (201) from the simulated responders, per case, so that they can be
    counted as contract §5 counts them over any set of cases (a run's own, in a system with older cases)."""

    calls: list[tuple[str, bool]] = field(default_factory=list)  # (case id, connected)
    visits: list[tuple[str, str, bool]] = field(default_factory=list)  # (case id, dissuasion result, app installed)
    follow_ups: int = 0
    errors: int = 0  # actions the system refused for a reason other than the task having moved on

    def counts(self, cases: set[str] | None = None) -> dict[str, tuple[int, int]]:
        """(numerator, denominator) per rate, to set beside feedback's counts."""
        calls = [(c, ok) for c, ok in self.calls if cases is None or c in cases]
        visits = [(c, r, app) for c, r, app in self.visits if cases is None or c in cases]
        met = [(c, r, app) for c, r, app in visits if r != "not_met"]  # a met visit carries the checklist
        return {
            "call_connected_rate": (len({c for c, ok in calls if ok}), len({c for c, _ in calls})),
            "call_attempt_connected_rate": (sum(ok for _, ok in calls), len(calls)),
            "visit_met_rate": (len(met), len(visits)),
            "dissuasion_rate": (sum(r == "dissuaded" for _, r, _ in visits), len(visits)),
            "antifraud_app_install_rate": (sum(app for _, _, app in met), len(met)),
        }


@dataclass
class VisitRecord:
    task_id: str
    area_code: str
    requested_at: datetime  # the task's created_at, dispatch's clock
    travel_s: float
    on_site_s: float
    state: str = "queued"  # queued → arrived → done, or cancelled (the case closed first)


@dataclass(order=True)
class _Queued:
    created_at: str
    task_id: str
    task: dict[str, Any] = field(compare=False)
    record: VisitRecord | None = field(default=None, compare=False)
    result: str = field(default="", compare=False)
    app_installed: bool = field(default=False, compare=False)
    seen_at: float = field(default=0.0, compare=False)  # time.monotonic() when the responders learnt of it


class Responders:
    def __init__(
        self,
        district: District,
        *,
        dispatch_url: str,
        feedback_url: str,
        password: str,
        admin: str,
        seed: int,
        clock: SimClock,
        behaviour: Behaviour | None = None,
        poll_s: float = 0.5,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.district = district
        self.dispatch_url = dispatch_url.rstrip("/")
        self.feedback_url = feedback_url.rstrip("/")
        self.seed = seed
        self.clock = clock
        self.behaviour = behaviour or Behaviour()
        self.poll_s = poll_s
        self.http = http or httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32))
        self._password = password
        self.admin = MemberSession(self.http, self.dispatch_url, admin, password)
        self._sessions: dict[str, MemberSession] = {}
        self.tallies = Tallies()
        self.case_warnings: dict[str, set[str]] = {}  # case id → the warnings it holds, from the task listings
        self.visits: list[VisitRecord] = []
        self.open_by_tier: dict[str, int] = {}
        self.polls = 0
        self._seen: set[str] = set()
        self._open_ids: set[str] = set()
        self._listed_at = 0.0  # when the last full listing (self._open_ids) was asked for
        self._calls: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self._visits: dict[str, asyncio.PriorityQueue[_Queued]] = defaultdict(asyncio.PriorityQueue)
        self._visits_of: dict[str, int] = defaultdict(int)  # per subject, to key each visit's draws
        self._visit_result: dict[str, str] = {}  # per case: the last visit's result, for the follow-up
        self._busy = 0
        self._teams: dict[str, list[TeamSpec]] = defaultdict(list)
        for team in district.teams():
            self._teams[team.area_code].append(team)

    # --- the people --------------------------------------------------------------------------------------------

    def member(self, username: str) -> MemberSession:
        if username not in self._sessions:
            self._sessions[username] = MemberSession(self.http, self.dispatch_url, username, self._password)
        return self._sessions[username]

    async def log_in(self, concurrency: int = 2) -> None:
        """Log in the admin, every operator and every team's officer (grid workers log in when first needed)."""
        names = [t.officer for teams in self._teams.values() for t in teams]
        names += [u for s in self.district.stations for u in self.district.operators(s)]
        gate = asyncio.Semaphore(concurrency)

        async def one(session: MemberSession) -> None:
            async with gate:
                await session.log_in()

        await asyncio.gather(one(self.admin), *(one(self.member(n)) for n in names))

    @property
    def open_tasks(self) -> int:
        return sum(self.open_by_tier.values())

    @property
    def open_work(self) -> int:
        """Calls and visits still to do (the last poll's open tasks, plus any a responder is busy with)."""
        return self.open_by_tier.get("call", 0) + self.open_by_tier.get("visit", 0) + self._busy

    async def run(self, stop: asyncio.Event) -> None:
        workers = [asyncio.create_task(self._discover(stop))]
        for station in self.district.stations:
            workers += [asyncio.create_task(self._operator(station, u)) for u in self.district.operators(station)]
        for area_code, teams in self._teams.items():
            workers += [asyncio.create_task(self._team(area_code, team)) for team in teams]
        try:
            await stop.wait()
        finally:
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- finding work ------------------------------------------------------------------------------------------

    async def _discover(self, stop: asyncio.Event) -> None:
        """Every poll the newest open tasks (what a notification would bring); every FULL_LISTING_EVERY polls all
        of them, for the counts and to see what was cancelled. Listing every open task twice a second would cost
        dispatch more than the district's work does."""
        helpers: set[asyncio.Task[None]] = set()
        listings = 0
        try:
            while not stop.is_set():
                full = listings % FULL_LISTING_EVERY == 0
                listings += 1
                listed_at = time.monotonic()
                try:
                    tasks = await self._open_tasks(full=full)
                except Exception as exc:  # tried again at the next poll, whatever went wrong
                    log.warning("listing open tasks failed: %s", type(exc).__name__)
                    tasks = None
                if tasks is not None and full:
                    self._open_ids, self._listed_at = {t["id"] for t in tasks}, listed_at
                    by_tier: dict[str, int] = defaultdict(int)
                    for task in tasks:
                        by_tier[task["tier"]] += 1
                    self.open_by_tier = dict(by_tier)
                    self.polls += 1
                if tasks is not None:
                    for task in sorted(tasks, key=lambda t: (t["created_at"], t["id"])):
                        if task["id"] in self._seen:
                            continue
                        self._seen.add(task["id"])
                        self.case_warnings.setdefault(task["case_id"], set()).update(task["warning_ids"])
                        helper = self._route(task)
                        if helper is not None:
                            job = asyncio.create_task(helper)
                            helpers.add(job)
                            job.add_done_callback(helpers.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)
        finally:
            for job in list(helpers):
                job.cancel()

    async def _open_tasks(self, *, full: bool) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"status": "open", "limit": 500 if full else NEWEST}
        while True:
            response = await self.admin.request("GET", f"{self.dispatch_url}/v1/tasks", params=params)
            if response.status_code != 200:
                raise RuntimeError(f"GET /v1/tasks: HTTP {response.status_code}")
            page = response.json()
            found += [t for t in page["items"] if t["area_code"] in self.district.codes]
            if not page["next_cursor"] or not full:
                return found
            params["cursor"] = page["next_cursor"]

    def _route(self, task: dict[str, Any]) -> Any:
        if task["tier"] == "call" and task["station"] is not None:
            self._calls[task["station"]].put_nowait(task)
        elif task["tier"] == "visit":
            return self._acknowledge_visit(task)
        elif task["tier"] == "follow_up":
            return self._follow_up(task)
        return None

    # --- 96110 operators -----------------------------------------------------------------------------------------

    async def _operator(self, station: str, username: str) -> None:
        queue = self._calls[station]
        while True:
            task = await queue.get()
            self._busy += 1
            try:
                await self._call(self.member(username), task)
            except Exception as exc:  # a responder keeps working whatever one task did to it
                self.tallies.errors += 1
                log.warning("call task %s: %s", task["id"], type(exc).__name__)
            finally:
                self._busy -= 1

    async def _call(self, me: MemberSession, task: dict[str, Any]) -> None:
        if not await self._post_action(me, task, "accept", None):
            return
        phone = await self._phone(me, task)
        if phone is None:
            return
        outcome = self.behaviour.call(self.seed, phone, int(task["attempt"]))
        await self.clock.sleep(outcome.duration_s)
        body: dict[str, Any] = {"task_id": task["id"], "kind": "call", "call_result": outcome.call_result}
        if outcome.call_result == "connected":
            body["dissuasion_result"] = outcome.dissuasion_result
        if await self._record(me, task, body):
            self.tallies.calls.append((task["case_id"], outcome.call_result == "connected"))

    # --- area teams ----------------------------------------------------------------------------------------------

    async def _acknowledge_visit(self, task: dict[str, Any]) -> None:
        """签收 at once by the area's first team; the area's teams then go first come, first served."""
        me = self.member(self._teams[task["area_code"]][0].officer)
        seen_at = time.monotonic()
        try:
            if not await self._post_action(me, task, "accept", None):
                return
            phone = await self._phone(me, task)
        except Exception as exc:  # a responder keeps working whatever one task did to it
            self.tallies.errors += 1
            log.warning("visit task %s: %s", task["id"], type(exc).__name__)
            return
        if phone is None:
            return
        self._visits_of[phone] += 1
        area = self.district.area(task["area_code"])
        plan = self.behaviour.visit(self.seed, phone, self._visits_of[phone], area.travel_median_s)
        record = VisitRecord(
            task["id"], area.code, datetime.fromisoformat(task["created_at"]), plan.travel_s, plan.on_site_s
        )
        self.visits.append(record)
        queued = _Queued(
            task["created_at"], task["id"], task, record, plan.dissuasion_result, plan.app_installed, seen_at
        )
        self._visits[area.code].put_nowait(queued)

    async def _team(self, area_code: str, team: TeamSpec) -> None:
        queue = self._visits[area_code]
        while True:
            job = await queue.get()
            self._busy += 1
            try:
                await self._visit(self.member(team.officer), job)
            except Exception as exc:  # a responder keeps working whatever one task did to it
                self.tallies.errors += 1
                log.warning("visit task %s: %s", job.task_id, type(exc).__name__)
            finally:
                self._busy -= 1

    async def _visit(self, me: MemberSession, job: _Queued) -> None:
        record, task = job.record, job.task
        assert record is not None
        if self._listed_at > job.seen_at and task["id"] not in self._open_ids:
            record.state = "cancelled"  # closed while it waited for a team: the app says so, nobody drives out
            return
        await self.clock.sleep(record.travel_s)
        area = self.district.area(record.area_code)
        position = _position(area.code)
        if not await self._post_action(me, task, "arrive", position):
            record.state = "cancelled"
            return
        record.state = "arrived"
        await self.clock.sleep(record.on_site_s)
        body: dict[str, Any] = {"task_id": task["id"], "kind": "visit", "dissuasion_result": job.result}
        met = job.result != "not_met"
        if met:
            body["position"] = position
            body["checklist"] = {
                "checked_call_log": True, "checked_sms": True, "checked_apps": True, "checked_transfers": True,
                "asked_stranger_contact": True, "asked_money_sent": True, "asked_codes_shared": True,
                "antifraud_app_installed": job.app_installed,
            }  # fmt: skip
        if await self._record(me, task, body):
            record.state = "done"
            self._visit_result[task["case_id"]] = job.result
            self.tallies.visits.append((task["case_id"], job.result, job.app_installed))

    # --- grid workers --------------------------------------------------------------------------------------------

    async def _follow_up(self, task: dict[str, Any]) -> None:
        team = self._team_of(task)
        try:
            if not await self._post_action(self.member(team.officer), task, "accept", None):
                return
            await self.clock.sleep(self.behaviour.follow_up_delay(self.seed, task["case_id"]))
            result = self._visit_result.get(task["case_id"], "dissuaded")
            body = {"task_id": task["id"], "kind": "follow_up", "dissuasion_result": result}
            if await self._record(self.member(team.grid_worker), task, body):
                self.tallies.follow_ups += 1
        except Exception as exc:  # a responder keeps working whatever one task did to it
            self.tallies.errors += 1
            log.warning("follow-up task %s: %s", task["id"], type(exc).__name__)

    def _team_of(self, task: dict[str, Any]) -> TeamSpec:
        # dispatch gives follow-ups to the area's first team (by name), as it does visits
        return self._teams[task["area_code"]][0]

    # --- the API calls -------------------------------------------------------------------------------------------

    async def _post_action(self, me: MemberSession, task: dict[str, Any], action: str, body: Any) -> bool:
        """accept / arrive; False when the task has moved on (cancelled, reassigned: 404/409)."""
        response = await me.request(
            "POST",
            f"{self.dispatch_url}/v1/tasks/{task['id']}/{action}",
            json=body,
            headers={"Idempotency-Key": f"sim-{action}-{task['id']}"},
        )
        if response.status_code == 200:
            return True
        if response.status_code not in (404, 409):
            self.tallies.errors += 1
            log.warning("%s task %s: HTTP %s", action, task["id"], response.status_code)
        return False

    async def _phone(self, me: MemberSession, task: dict[str, Any]) -> str | None:
        """The full number, as the member who must call or visit reads it (access-logged by dispatch)."""
        response = await me.request("GET", f"{self.dispatch_url}/v1/tasks/{task['id']}")
        if response.status_code != 200:
            return None
        phone = response.json()["subject"]["phone"]
        return str(phone) if phone else None

    async def _record(self, me: MemberSession, task: dict[str, Any], body: dict[str, Any]) -> bool:
        """POST the outcome at feedback. Feedback learns of tasks from dispatch.events, a moment after dispatch made
        them: a 404 is retried until it has (bounded by FEEDBACK_CATCH_UP_S real seconds)."""
        deadline = time.monotonic() + FEEDBACK_CATCH_UP_S
        while True:
            response = await me.request(
                "POST",
                f"{self.feedback_url}/v1/outcomes",
                json=body,
                headers={"Idempotency-Key": f"sim-outcome-{task['id']}"},
            )
            if response.status_code != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if response.status_code == 201:
            return True
        if response.status_code != 409:
            self.tallies.errors += 1
            log.warning("outcome of task %s: HTTP %s", task["id"], response.status_code)
        return False


def _position(area_code: str) -> dict[str, float]:
    # a made-up point per area: the arrival's position must be a real coordinate, no more is checked
    n = uuid.uuid5(uuid.NAMESPACE_URL, area_code).int % 1000
    return {"lat": 36.0 + n / 10_000, "lon": 120.3 + n / 10_000}
