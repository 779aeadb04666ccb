"""Operators and teams answering their tasks through the real HTTP APIs, with answers drawn per warning.

One admin session watches the open tasks (as a command desk's screen would); each task is acted on by the
member whose job it is: the station's operator takes and records a call, the assigned team's officer arrives
and records a visit, its grid worker records the follow-up. Every POST carries an Idempotency-Key, so a
request cut by a crash is simply sent again. A task whose deadline should pass first (`draws.late`) is left
alone until then.

Services that are down, restarting or waiting for their database answer errors; the responders try again on
their next round, against the other dispatch replica when one does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from tests.faults import draws

POLL_S = 1.0
CONCURRENCY = 8


@dataclass(frozen=True)
class Crew:
    """Who acts on what. Usernames by station (operators) and by team id (officers, grid workers)."""

    admin: str
    operators: dict[str, str]
    officers: dict[str, str]
    grid_workers: dict[str, str]
    password: str


@dataclass
class ResponderStats:
    actions: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    strangers: set[str] = field(default_factory=set)  # tasks of warnings no generator posted
    violations: list[str] = field(default_factory=list)


class NotYet(Exception):
    """The step could not be done now (a service down or behind); the next round tries again."""


class Responders:
    def __init__(
        self,
        dispatch_urls: list[str],
        feedback_url: str,
        crew: Crew,
        *,
        seed: int,
        warning_n: Callable[[str], int | None],
        late_after_s: float,
    ) -> None:
        self.dispatch_urls = dispatch_urls
        self.feedback_url = feedback_url.rstrip("/")
        self.crew = crew
        self.seed = seed
        self.warning_n = warning_n
        self.late_after_s = late_after_s
        self.stats = ResponderStats()
        self._tokens: dict[str, str] = {}
        self._finished: set[str] = set()
        self._steps: dict[str, set[str]] = {}
        self._visits: dict[str, list[str]] = {}  # case id -> its visit task ids in the order they appeared
        self._busy: set[str] = set()
        self._replica = 0
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(15, connect=2))

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            await self._rounds(stop, running)
        finally:
            for job in list(running):
                job.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _rounds(self, stop: asyncio.Event, running: set[asyncio.Task[None]]) -> None:
        while not stop.is_set():
            try:
                tasks = await self._open_tasks()
            except NotYet:
                tasks = []
            for task in tasks:
                if task["id"] in self._finished or task["id"] in self._busy or task["tier"] == "sms":
                    continue
                self._busy.add(task["id"])
                job = asyncio.create_task(self._act(task))
                running.add(job)
                job.add_done_callback(running.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)

    # --- one task -------------------------------------------------------------------------------------------

    async def _act(self, task: dict[str, Any]) -> None:
        try:
            async with self._slots:
                await self._steps_of(task)
        except NotYet:
            self.stats.retries += 1
        finally:
            self._busy.discard(task["id"])

    async def _steps_of(self, task: dict[str, Any]) -> None:
        task_id, tier = str(task["id"]), str(task["tier"])
        n = self.warning_n(str(task["warning_ids"][0])) if task["warning_ids"] else None
        if n is None:
            self.stats.strangers.add(task_id)
            self._finished.add(task_id)
            return
        ordinal = self._ordinal(task)
        if draws.late(self.seed, n, tier, ordinal):
            created = datetime.fromisoformat(str(task["created_at"])).timestamp()
            if time.time() < created + self.late_after_s:
                return  # left alone until its deadline has passed
        done = self._steps.setdefault(task_id, set())
        member = self._member(task)
        step, body = ("arrive", {"lat": 36.06, "lon": 120.38}) if tier == "visit" else ("accept", None)
        if step not in done:
            if not await self._dispatch_post(member, f"/v1/tasks/{task_id}/{step}", body, step):
                self.stats.actions["moved on"] += 1
                self._finished.add(task_id)  # done or cancelled meanwhile: there is nothing to record
                return
            done.add(step)
        await self._record(member, task_id, self._outcome(task, n, ordinal))
        self._finished.add(task_id)

    def _ordinal(self, task: dict[str, Any]) -> int:
        """A call's attempt; a visit's place among its case's visits (0, 1, ...); 1 for a follow-up."""
        if task["tier"] == "call":
            return int(task["attempt"])
        if task["tier"] == "visit":
            seen = self._visits.setdefault(str(task["case_id"]), [])
            if task["id"] not in seen:
                seen.append(str(task["id"]))
            return seen.index(str(task["id"]))
        return 1

    def _member(self, task: dict[str, Any]) -> str:
        if task["tier"] == "call":
            return self.crew.operators[str(task["station"])]
        team = str(task["team_id"])
        return (self.crew.officers if task["tier"] == "visit" else self.crew.grid_workers)[team]

    def _outcome(self, task: dict[str, Any], n: int, ordinal: int) -> dict[str, Any]:
        body: dict[str, Any] = {"task_id": str(task["id"]), "kind": task["tier"]}
        if task["tier"] == "call":
            call = draws.call_answer(self.seed, n, ordinal)
            body["call_result"] = call.call_result
            if call.dissuasion_result is not None:
                body["dissuasion_result"] = call.dissuasion_result
        elif task["tier"] == "visit":
            visit = draws.visit_answer(self.seed, n, ordinal)
            body |= {
                "dissuasion_result": visit.dissuasion_result,
                "position": {"lat": 36.06, "lon": 120.38},
                "checklist": {"checked_call_log": True, "asked_money_sent": True,
                              "antifraud_app_installed": visit.app_installed},
            }  # fmt: skip
        else:
            body["dissuasion_result"] = "dissuaded"
        return body

    # --- HTTP ---------------------------------------------------------------------------------------------------

    async def _open_tasks(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"status": "open", "limit": "500"} | ({"cursor": cursor} if cursor else {})
            response = await self._dispatch("GET", self.crew.admin, "/v1/tasks", params=params)
            if response.status_code != 200:
                raise NotYet(f"task list: {response.status_code}")
            page = response.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    async def _dispatch_post(self, member: str, path: str, body: Any, step: str) -> bool:
        """True when done; False when the flow moved on (the task was done or cancelled meanwhile)."""
        key = f"{step}-{path.split('/')[3]}"
        response = await self._dispatch("POST", member, path, json=body, headers={"Idempotency-Key": key})
        if response.status_code == 200:
            self.stats.actions[step] += 1
            return True
        if response.status_code == 409:
            return False
        raise NotYet(f"{step}: {response.status_code}")

    async def _record(self, member: str, task_id: str, body: dict[str, Any]) -> None:
        headers = {"Idempotency-Key": f"outcome-{task_id}"}
        response = await self._call("POST", self.feedback_url, member, "/v1/outcomes", json=body, headers=headers)
        if response.status_code in (201, 409):
            self.stats.actions[f"outcome:{body['kind']}"] += 1
            return
        if response.status_code == 422:
            self.stats.violations.append(f"outcome for task {task_id}: 422 {response.text[:200]}")
            return
        raise NotYet(f"outcome: {response.status_code}")  # 404: feedback has not seen the task yet

    async def _dispatch(self, method: str, member: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in self.dispatch_urls:
            url = self.dispatch_urls[self._replica % len(self.dispatch_urls)]
            try:
                return await self._call(method, url, member, path, **kwargs)
            except NotYet:
                self._replica += 1  # that replica is down: the other one, as a load balancer would
        raise NotYet(f"no dispatch replica answers {method} {path}")

    async def _call(self, method: str, base: str, member: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(2):
            token = await self._token(member)
            headers = kwargs.pop("headers", {}) | {"Authorization": f"Bearer {token}"}
            try:
                response = await self._client.request(method, base + path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                raise NotYet(f"{method} {path}: {type(exc).__name__}") from None
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response.status_code != 401:
                if response.status_code >= 500 and response.status_code != 503:
                    self.stats.violations.append(f"{method} {path.split('/')[2]}: {response.status_code}")
                return response
            self._tokens.pop(member, None)  # expired or the session ended: log in again
        return response

    async def _token(self, member: str) -> str:
        if member not in self._tokens:
            form = {"grant_type": "password", "username": member, "password": self.crew.password}
            for url in self.dispatch_urls:
                try:
                    response = await self._client.post(f"{url}/v1/auth/token", data=form)
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    self._tokens[member] = str(response.json()["access_token"])
                    break
            else:
                raise NotYet(f"cannot log {member} in now")
        return self._tokens[member]
