"""A synthetic district shaped like the documents' (DOMAIN.md): streets (街道), police stations (派出所) and police
areas (警务区), one visit team per area by default, 96110 operators per station. Pure: the same arguments give the
same district.

Assumptions, stated because no document gives them: a station covers up to `AREAS_PER_STATION` areas of one
street; a fifth of the streets are rural, where teams travel 25-45 minutes (median) instead of 8-18; warnings
fall on areas in proportion to a log-normal "population" weight, rural areas with fewer people.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

#: Area codes are `<prefix>-<nnn>`; 370299 is not a real county code, so it never clashes with real data or the
#: demo district (370202-…).
DEFAULT_PREFIX = "370299"
DISTRICT_NAME = "模拟区"
AREAS_PER_STATION = 7
RURAL_SHARE = 0.2
TRAVEL_SIGMA = 0.35  # log-normal spread of one area's travel times around its median
STREET_NAMES = (
    "青山", "海湾", "东港", "西岭", "南湖", "北岸", "中心", "新城", "松林", "古镇", "河口",
    "石桥", "云台", "金沙", "银滩", "枫林",
)  # fmt: skip
_NUMERALS = "一二三四五六七八九十"


@dataclass(frozen=True)
class Area:
    code: str
    name: str
    station: str
    street: str
    rural: bool
    travel_median_s: float  # a team's typical drive to a subject's door in this area
    weight: float  # the area's share of the district's warnings (the weights sum to 1)

    @property
    def suffix(self) -> str:
        return self.code.rsplit("-", 1)[-1]


@dataclass(frozen=True)
class TeamSpec:
    name: str
    area_code: str
    number: int  # 1..teams_per_area
    officer: str  # the username that acts for the team (签收, arrive, outcome)
    grid_worker: str  # the username that records the follow-up reminder


@dataclass(frozen=True)
class MemberSpec:
    username: str
    name: str
    role: str
    team: str | None = None
    station: str | None = None
    district: bool = False


@dataclass(frozen=True)
class District:
    name: str
    areas: tuple[Area, ...]
    teams_per_area: int
    operators_per_station: int

    @property
    def codes(self) -> set[str]:
        return {a.code for a in self.areas}

    def area(self, code: str) -> Area:
        return next(a for a in self.areas if a.code == code)

    @property
    def stations(self) -> list[str]:
        return sorted({a.station for a in self.areas})

    @property
    def streets(self) -> list[str]:
        return sorted({a.street for a in self.areas})

    def csv(self) -> bytes:
        """The rows `quanzu areas import` takes."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["area_code", "area_name", "station", "street", "district"])
        for a in self.areas:
            writer.writerow([a.code, a.name, a.station, a.street, self.name])
        return out.getvalue().encode("utf-8")

    def teams(self) -> list[TeamSpec]:
        return [
            TeamSpec(
                name=f"{a.name}劝阻队" if n == 1 else f"{a.name}劝阻{n}队",
                area_code=a.code,
                number=n,
                officer=f"sim-officer-{a.suffix}-{n}",
                grid_worker=f"sim-gridworker-{a.suffix}-{n}",
            )
            for a in self.areas
            for n in range(1, self.teams_per_area + 1)
        ]

    def operators(self, station: str) -> list[str]:
        index = self.stations.index(station) + 1
        return [f"sim-operator-{index:02d}-{n}" for n in range(1, self.operators_per_station + 1)]

    def members(self) -> Iterator[MemberSpec]:
        """Who logs in: an officer and a grid worker per team (the auxiliary officer goes along with the officer
        but never uses the app in the simulation, so none is created), the operators of each station."""
        for team in self.teams():
            area = self.area(team.area_code)
            yield MemberSpec(team.officer, f"{area.name}民警{team.number}", "officer", team=team.name)
            yield MemberSpec(team.grid_worker, f"{area.name}网格员{team.number}", "grid_worker", team=team.name)
        for station in self.stations:
            for n, username in enumerate(self.operators(station), 1):
                yield MemberSpec(username, f"{station}96110坐席{n}", "operator", station=station)


def make_district(
    *,
    areas: int = 148,
    streets: int = 11,
    teams_per_area: int = 1,
    operators_per_station: int = 2,
    seed: int = 1,
    prefix: str = DEFAULT_PREFIX,
) -> District:
    if not 1 <= streets <= areas <= 999:
        raise ValueError("need 1 <= streets <= areas <= 999")
    rng = random.Random(f"district:{seed}")
    rural_from = streets - round(streets * RURAL_SHARE)
    built: list[Area] = []
    for s in range(streets):
        street_base = STREET_NAMES[s] if s < len(STREET_NAMES) else f"第{s + 1}"
        street = f"{street_base}街道"
        rural = s >= rural_from
        count = areas // streets + (1 if s < areas % streets else 0)
        stations = math.ceil(count / AREAS_PER_STATION)
        for k in range(count):
            station_number = k * stations // count
            station = (
                f"{street_base}派出所"
                if station_number == 0
                else f"{street_base}第{_numeral(station_number + 1)}派出所"
            )
            median_min = rng.uniform(25, 45) if rural else rng.uniform(8, 18)
            weight = rng.lognormvariate(0, 0.5) * (0.6 if rural else 1.0)
            built.append(
                Area(
                    code=f"{prefix}-{len(built) + 1:03d}",
                    name=f"{street_base}{k + 1}号警务区",
                    station=station,
                    street=street,
                    rural=rural,
                    travel_median_s=median_min * 60,
                    weight=weight,
                )
            )
    total = sum(a.weight for a in built)
    normalised = tuple(
        Area(a.code, a.name, a.station, a.street, a.rural, a.travel_median_s, a.weight / total) for a in built
    )
    return District(DISTRICT_NAME, normalised, teams_per_area, operators_per_station)


def _numeral(n: int) -> str:
    return _NUMERALS[n - 1] if n <= len(_NUMERALS) else str(n)
