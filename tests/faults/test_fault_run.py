"""The fault suite (docs/RELIABILITY.md): a warning that got a 202 reaches a person, no subject gets the same SMS
twice, an outage delays work but never loses it. `make test` runs the short form; `make test-faults` the full
run (`QUANZU_FAULTS=full`), which rewrites its section of docs/RELIABILITY.md."""

from __future__ import annotations

import os
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.faults import report
from tests.faults.plan import plan_from_env
from tests.faults.run import fault_run

HOME = Path(".quanzu") / "faults"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("QUANZU_FAULTS") == "off", reason="QUANZU_FAULTS=off")
async def test_faults_delay_work_but_lose_none_and_do_none_twice() -> None:
    plan = plan_from_env()
    seed = int(os.environ.get("QUANZU_FAULTS_SEED") or random.SystemRandom().randrange(1_000_000))
    home = (HOME / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}").resolve()
    home.mkdir(parents=True)
    print(f"fault run {plan.mode}, seed {seed}, logs under {home}")
    outcome = await fault_run(plan, seed, home)
    print(report.summary(outcome))
    if plan.mode == "full":
        report.record(outcome, f"{datetime.now(UTC):%Y-%m-%d %H:%M}")
    assert not outcome.problems, report.summary(outcome)
    assert (outcome.lost, outcome.duplicated) == (0, 0)
    assert outcome.acknowledged > 0 and outcome.acknowledged == outcome.acknowledged_fault_free
    shutil.rmtree(home, ignore_errors=True)  # kept when the run failed: the logs and the database are there
