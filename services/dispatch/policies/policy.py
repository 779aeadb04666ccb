"""Dissuasion policy (contract §3): per-area SLAs, validated, with per-risk overrides. Pure.

A policy file names only what differs from the district default; `resolve` gives the effective
durations for one case (area policy over district default, then the case's risk-level override).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.events import Residency, RiskLevel

DAY = 86_400
#: No deadline may be further than this: a longer one is a typo (seconds taken for minutes).
MAX_DURATION_S = 7 * DAY

Duration = int
CallRisk = Literal["medium", "high", "critical"]


def _default_call_first() -> dict[CallRisk, int]:
    return {"medium": 1800, "high": 300, "critical": 0}


def _default_sms_only() -> list[RiskLevel]:
    return ["low"]


def _duration(default: int, *, minimum: int = 0, maximum: int = MAX_DURATION_S) -> Any:
    return Field(default=default, ge=minimum, le=maximum)


class PolicyValues(BaseModel):
    """Every setting of a policy, with the contract's defaults."""

    model_config = ConfigDict(extra="forbid")

    sms_within_s: Duration = _duration(60)
    call_first_within_s: dict[CallRisk, Duration] = Field(default_factory=_default_call_first)
    call_attempts: int = Field(default=3, ge=1, le=10)
    call_retry_interval_s: Duration = _duration(300, minimum=1)
    visit_arrive_within_s: Duration = _duration(3600, minimum=1)
    follow_up_within_s: Duration = _duration(DAY, minimum=1)
    visit_for_residency: list[Residency] = Field(default_factory=list)
    sms_only_risk: list[RiskLevel] = Field(default_factory=_default_sms_only)
    ack_within_s: Duration = _duration(120, minimum=1, maximum=DAY)
    escalate_on_busy: bool = True
    rewarn_window_s: Duration = _duration(7 * DAY, maximum=90 * DAY)
    # Not in the contract's table: how long a case may wait in the district's unassigned queue, and the
    # window in which a further warning for the same subject joins the open case.
    unassigned_within_s: Duration = _duration(600, minimum=1)
    join_window_s: Duration = _duration(3 * DAY, minimum=1, maximum=30 * DAY)

    @model_validator(mode="after")
    def _consistent(self) -> PolicyValues:
        if "critical" in self.sms_only_risk:
            raise ValueError("sms_only_risk: a critical warning can never be SMS only")
        for risk, seconds in self.call_first_within_s.items():
            if not 0 <= seconds <= MAX_DURATION_S:
                raise ValueError(f"call_first_within_s.{risk}: must be between 0 and {MAX_DURATION_S}")
        return self


class PolicyFile(BaseModel):
    """What `quanzu policy set` and the admin REST accept: any subset of the settings, plus per-risk
    overrides (`"by_risk": {"critical": {"visit_arrive_within_s": 1800}}`)."""

    model_config = ConfigDict(extra="forbid")

    sms_within_s: Duration | None = _duration(None)  # type: ignore[arg-type]
    call_first_within_s: dict[CallRisk, Duration] | None = None
    call_attempts: int | None = Field(default=None, ge=1, le=10)
    call_retry_interval_s: Duration | None = _duration(None, minimum=1)  # type: ignore[arg-type]
    visit_arrive_within_s: Duration | None = _duration(None, minimum=1)  # type: ignore[arg-type]
    follow_up_within_s: Duration | None = _duration(None, minimum=1)  # type: ignore[arg-type]
    visit_for_residency: list[Residency] | None = None
    sms_only_risk: list[RiskLevel] | None = None
    ack_within_s: Duration | None = _duration(None, minimum=1, maximum=DAY)  # type: ignore[arg-type]
    escalate_on_busy: bool | None = None
    rewarn_window_s: Duration | None = _duration(None, maximum=90 * DAY)  # type: ignore[arg-type]
    unassigned_within_s: Duration | None = _duration(None, minimum=1)  # type: ignore[arg-type]
    join_window_s: Duration | None = _duration(None, minimum=1, maximum=30 * DAY)  # type: ignore[arg-type]
    by_risk: dict[RiskLevel, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _overrides_are_settings(self) -> PolicyFile:
        for risk, override in self.by_risk.items():
            unknown = set(override) - set(PolicyValues.model_fields)
            if unknown:
                raise ValueError(f"by_risk.{risk}: unknown setting(s) {', '.join(sorted(unknown))}")
        # the whole file must make a valid policy on top of the defaults, at every risk level
        risks: tuple[RiskLevel, ...] = ("low", "medium", "high", "critical")
        for risk in risks:
            try:
                resolve(PolicyValues(), self, risk)
            except ValidationError as exc:
                raise ValueError(_named_in_file(exc, risk, self.by_risk.get(risk, {}))) from None
        return self

    def settings(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"by_risk"})


def _named_in_file(exc: ValidationError, risk: RiskLevel, override: dict[str, Any]) -> str:
    """The first error as "field: message", the field named where the file sets it: a setting of the risk's
    override is `by_risk.<risk>.<setting>`, not the top-level setting of the same name."""
    first = exc.errors(include_input=False)[0]
    field = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if not field and ": " in message:  # a rule across settings names its setting in the message
        field, message = message.split(": ", 1)
    if field.split(".", 1)[0] in override:
        field = f"by_risk.{risk}.{field}"
    return f"{field}: {message}"


def resolve(default: PolicyValues, area: PolicyFile | None, risk: RiskLevel) -> PolicyValues:
    """The effective values for a case: district default, then the area's file, then its risk override."""
    merged = default.model_dump()
    if area is not None:
        merged.update(area.settings())
        merged.update(area.by_risk.get(risk, {}))
    return PolicyValues.model_validate(merged)
