"""The contract's policy on an accelerated clock: every duration divided by the speed-up, as a `quanzu policy set`
file. Pure.

At speed 60 one simulated hour is one real minute: a 60-minute visit deadline becomes 60 s, a 2-minute
acknowledgement 2 s. Durations are whole seconds, so a speed that rounds a nonzero duration to 0, or makes two
durations that differ equal (their order is what the flow relies on: acknowledge before the call is due, retry
before the visit is due…), is refused with the setting named.
"""

from __future__ import annotations

from typing import Any

from services.dispatch.policies.policy import PolicyFile, PolicyValues


class SpeedError(ValueError):
    """The speed cannot be applied to the policy; the message names the setting."""


def durations(values: PolicyValues) -> dict[str, int]:
    """Every duration of a policy by a dotted name (call_first_within_s.high…)."""
    found: dict[str, int] = {}
    for name, value in values.model_dump().items():
        if not name.endswith("_s"):
            continue
        if isinstance(value, dict):
            found.update({f"{name}.{risk}": int(v) for risk, v in value.items()})
        else:
            found[name] = int(value)
    return found


def _scaled(seconds: int, speed: float) -> int:
    return int(seconds / speed + 0.5)  # half up: 0.5 s must not vanish by banker's rounding


def scale_policy(speed: float, values: PolicyValues | None = None) -> dict[str, Any]:
    """The policy file for `speed`: every setting of `values` (default: the contract's), durations scaled."""
    if not speed >= 1:
        raise SpeedError(f"speed must be at least 1 (got {speed})")
    values = values or PolicyValues()
    original = durations(values)
    scaled = {name: _scaled(seconds, speed) for name, seconds in original.items()}
    for name, seconds in original.items():
        if seconds > 0 and scaled[name] == 0:
            raise SpeedError(f"speed {speed:g}: {name} ({seconds} s) would become 0 s; use a lower speed")
    by_value: dict[int, str] = {}
    for name, seconds in sorted(original.items(), key=lambda item: item[1]):
        other = by_value.setdefault(scaled[name], name)
        if original[other] != seconds:
            raise SpeedError(
                f"speed {speed:g}: {other} ({original[other]} s) and {name} ({seconds} s) would both become "
                f"{scaled[name]} s; use a lower speed"
            )
    policy = values.model_dump(mode="json")
    for name, seconds in scaled.items():
        if "." in name:
            field, risk = name.split(".")
            policy[field][risk] = seconds
        else:
            policy[name] = seconds
    PolicyFile.model_validate(policy)  # what `quanzu policy set` will check
    return policy
