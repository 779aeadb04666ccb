"""Warnings arriving at a district: a non-homogeneous Poisson process with a daily cycle, each warning a contract §1
record for a distinct, made-up subject (a valid mobile number and an ID number with a correct check digit). Pure:
one seed, one sequence.

Assumptions (no document gives these figures; change them here):
- Daily cycle `DAILY_SHAPE`: quiet at night, rising from 07:00, a daytime plateau while banks and shops are open
  (fund-flow warnings), the highest peak in the evening when people are online (rebate, romance, game scams).
- Fraud-type mix `FRAUD_MIX`: in the order DOMAIN.md lists the types the documents name, 刷单返利 first (it is the
  most reported type nationally), falling off from there.
- Risk, residency and in-progress mixes below: most warnings are low or medium risk; 1 in 10 is critical; a
  third of critical warnings are in progress (正在被骗), 1 in 20 of the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from services.sim.district import District
from shared.personal import id_check_digit

#: Relative warning intensity at each hour of the day, linearly interpolated in between; mean 1 over a day.
_SHAPE_POINTS = (
    0.25, 0.15, 0.1, 0.1, 0.1, 0.2, 0.45, 0.8, 1.2, 1.45, 1.55, 1.5,
    1.3, 1.3, 1.45, 1.5, 1.45, 1.35, 1.35, 1.55, 1.7, 1.6, 1.1, 0.55,
)  # fmt: skip
DAILY_SHAPE = tuple(v * len(_SHAPE_POINTS) / sum(_SHAPE_POINTS) for v in _SHAPE_POINTS)
FRAUD_MIX: tuple[tuple[str, float], ...] = (
    ("task_rebate", 0.30),
    ("investment", 0.18),
    ("loan", 0.12),
    ("customer_service", 0.12),
    ("impersonate_officials", 0.08),
    ("impersonate_acquaintance", 0.07),
    ("romance", 0.06),
    ("game_trade", 0.04),
    ("other", 0.03),
)
RISK_MIX: tuple[tuple[str, float], ...] = (("low", 0.30), ("medium", 0.35), ("high", 0.25), ("critical", 0.10))
RESIDENCY_MIX: tuple[tuple[str, float], ...] = (
    ("resident", 0.65),
    ("worker", 0.20),
    ("transit", 0.05),
    ("unknown", 0.10),
)
IN_PROGRESS_P = {"critical": 1 / 3}
IN_PROGRESS_P_OTHERS = 0.05
_REGIONS = ("370202", "370203", "370211", "370212", "370213", "370214", "370215", "370281", "370283")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"


def intensity(hour: float) -> float:
    """The daily cycle at `hour` (any real number; the cycle repeats every 24 h)."""
    h = hour % 24
    i = int(h)
    frac = h - i
    return DAILY_SHAPE[i] * (1 - frac) + DAILY_SHAPE[(i + 1) % 24] * frac


def arrival_times(rng: random.Random, per_day: float, hours: float, start_hour: float = 0.0) -> list[float]:
    """Seconds after the start at which warnings arrive, by thinning a homogeneous process at the peak rate."""
    peak_per_s = per_day / 86_400 * max(DAILY_SHAPE)
    times: list[float] = []
    t = 0.0
    end = hours * 3600
    while True:
        t += rng.expovariate(peak_per_s)
        if t >= end:
            return times
        if rng.random() * max(DAILY_SHAPE) < intensity(start_hour + t / 3600):
            times.append(t)


@dataclass(frozen=True)
class SimWarning:
    """One warning to post `at_s` simulated seconds after the start."""

    seq: int
    at_s: float
    area_code: str
    phone: str
    name: str
    id_number: str
    address: str
    residency: str
    fraud_type: str
    risk_level: str
    in_progress: bool
    amount_at_risk: float

    def record(self, run_tag: str, issued_at: str) -> dict[str, Any]:
        """The contract §1 record; `run_tag` keeps external ids unique across runs on one system."""
        return {
            "external_id": f"SIM-{run_tag}-{self.seq:07d}",
            "issued_at": issued_at,
            "subject": {
                "phone": self.phone,
                "name": self.name,
                "id_number": self.id_number,
                "address": self.address,
                "residency": self.residency,
            },
            "area_code": self.area_code,
            "fraud_type": self.fraud_type,
            "risk_level": self.risk_level,
            "in_progress": self.in_progress,
            "amount_at_risk": self.amount_at_risk,
            "evidence": {"suspect_numbers": [], "accounts": [], "urls": [], "apps": []},
        }


def warnings(
    district: District, *, seed: int, per_day: float, hours: float, start_hour: float = 0.0
) -> list[SimWarning]:
    rng = random.Random(f"arrivals:{seed}")
    areas = [a for a in district.areas]
    weights = [a.weight for a in areas]
    phones: set[str] = set()
    made: list[SimWarning] = []
    for seq, at in enumerate(arrival_times(rng, per_day, hours, start_hour), 1):
        area = rng.choices(areas, weights)[0]
        risk = _pick(rng, RISK_MIX)
        phone = _new_phone(rng, phones)
        made.append(
            SimWarning(
                seq=seq,
                at_s=at,
                area_code=area.code,
                phone=phone,
                name=rng.choice(_SURNAMES) + "".join(rng.choices(_GIVEN, k=rng.choice((1, 2)))),
                id_number=id_number(rng),
                address=f"{area.street}{rng.randint(1, 300)}号",
                residency=_pick(rng, RESIDENCY_MIX),
                fraud_type=_pick(rng, FRAUD_MIX),
                risk_level=risk,
                in_progress=rng.random() < IN_PROGRESS_P.get(risk, IN_PROGRESS_P_OTHERS),
                amount_at_risk=float(round(rng.lognormvariate(9.6, 1.0), -2)),  # median about 15,000 yuan
            )
        )
    return made


def _pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in mix], [w for _, w in mix])[0]


def _new_phone(rng: random.Random, taken: set[str]) -> str:
    # distinct subjects: every warning opens its own case
    while True:
        phone = f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"
        if phone not in taken:
            taken.add(phone)
            return phone


def id_number(rng: random.Random) -> str:
    first17 = (
        f"{rng.choice(_REGIONS)}{rng.randint(1940, 2008)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        f"{rng.randint(0, 999):03d}"
    )
    return first17 + id_check_digit(first17)
