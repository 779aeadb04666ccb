"""The knobs of one simulation, with their defaults (`quanzu simulate --help` shows them)."""

from __future__ import annotations

from dataclasses import dataclass

from services.sim.behaviour import Behaviour
from services.sim.district import District, make_district


@dataclass(frozen=True)
class Options:
    hours: float = 24.0
    speed: float = 60.0
    areas: int = 148
    streets: int = 11
    teams_per_area: int = 1
    operators_per_station: int = 2
    warnings_per_day: float = 1200.0
    answer_p: float = Behaviour.answer_p  # one default, the subjects' own
    dissuade_p: float = Behaviour.dissuade_p
    seed: int = 7
    start_hour: float = 0.0
    sla_target: float = 0.9
    drain_hours: float = 3.0
    behaviour: Behaviour | None = None  # None: the defaults with answer_p and dissuade_p

    def district(self) -> District:
        return make_district(
            areas=self.areas,
            streets=self.streets,
            teams_per_area=self.teams_per_area,
            operators_per_station=self.operators_per_station,
            seed=self.seed,
        )

    def responder_behaviour(self) -> Behaviour:
        return self.behaviour or Behaviour(answer_p=self.answer_p, dissuade_p=self.dissuade_p)
