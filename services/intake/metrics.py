"""Intake's metrics (contract §6). Labels are bounded enumerations, never personal data."""

from prometheus_client import Counter, Histogram

WARNINGS_RECEIVED = Counter(
    "quanzu_warnings_received_total",
    "Warning records received, by source, fraud type, risk level and result",
    ["source", "fraud_type", "risk_level", "result"],
)
INTAKE_REQUEST_SECONDS = Histogram(
    "quanzu_intake_request_seconds",
    "Intake HTTP request duration",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
