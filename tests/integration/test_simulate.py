"""`quanzu simulate` end to end, small: a private system of real processes, three police areas, a fifth of a
simulated hour at speed 60 with quick simulated responders. What the report counts must be what was posted and
what the responders recorded."""

import os
from pathlib import Path

from services.cli.system import LocalSystem
from services.sim.arrivals import warnings
from services.sim.behaviour import Behaviour
from services.sim.options import Options
from services.sim.run import Target, simulate

# quick calls and visits, so the calls, escalations and visits of a few cases finish within seconds
QUICK = Behaviour(
    talk_s=(20.0, 40.0), ring_s=10.0, on_site_median_s=60.0, travel_scale=0.05, follow_up_delay_s=(30.0, 60.0)
)


async def test_a_short_simulation_reports_what_was_posted_and_recorded(pg_admin_url: str, tmp_path: Path) -> None:
    options = Options(
        hours=0.2, speed=60, areas=3, streets=1, operators_per_station=2, warnings_per_day=1300, start_hour=10,
        seed=3, drain_hours=3, behaviour=QUICK,
    )  # fmt: skip
    home = tmp_path / "system"
    async with LocalSystem(home=home, pg_admin_url=pg_admin_url, database=f"quanzu_sim_{os.getpid()}") as system:
        target = Target(system.url("intake"), system.url("dispatch"), system.url("feedback"), system.settings)
        report = await simulate(options, target, set_default=True, out=tmp_path / "out")

    # every planned warning was posted and accepted and became a case at dispatch, and every case got its SMS
    planned = warnings(options.district(), seed=3, per_day=1300, hours=0.2, start_hour=10)
    assert len(planned) >= 10
    assert report.posted == len(planned)
    assert report.accepted == report.posted
    assert report.cases == report.accepted
    assert report.tiers["sms"].due == report.accepted
    # feedback's counts are exactly what the simulated responders recorded
    assert report.responders["call_connected_rate"][1] > 0
    assert report.responders["dissuasion_rate"][1] > 0
    for rate, counts in report.responders.items():
        assert report.feedback[rate] == counts, rate
    assert not any("refused" in note for note in report.notes), report.notes
    assert not any("drain limit" in note for note in report.notes), report.notes
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"warnings posted: {report.posted}" in text
    assert (tmp_path / "out" / "sla-compliance.png").read_bytes().startswith(b"\x89PNG")
