"""Feedback's metrics (contract §6). Labels are bounded enumerations, never personal data."""

from prometheus_client import Histogram

FEEDBACK_REQUEST_SECONDS = Histogram(
    "quanzu_feedback_request_seconds",
    "Feedback HTTP request duration",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
