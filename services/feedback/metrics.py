"""Feedback's metrics (contract §6). Labels are bounded enumerations, never personal data.

The connected and dissuasion rates' counters (`quanzu_calls_total`, `quanzu_visits_total`) are dispatch's: it
counts each outcome once as it acts on it, so Grafana's ratios never double-count across services.
"""

from prometheus_client import Counter, Histogram

FEEDBACK_REQUEST_SECONDS = Histogram(
    "quanzu_feedback_request_seconds",
    "Feedback HTTP request duration",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTCOMES = Counter(
    "quanzu_outcomes_recorded_total", "Outcomes recorded by members (corrections included)", ["kind", "result"]
)
OUTCOME_CORRECTIONS = Counter("quanzu_outcome_corrections_total", "Outcomes corrected by members", ["kind"])
FRAUD_REPORTS = Counter(
    "quanzu_fraud_reports_total", "Crime reports received from the upstream feed", ["result"]
)  # result: accepted|duplicate|rejected
POST_WARNING_MATCHES = Counter(
    "quanzu_post_warning_matches_total", "Warnings matched by a later crime report within the window (预警后发案)"
)
RATES_QUERY_SECONDS = Histogram(
    "quanzu_rates_query_seconds",
    "Time to compute a rates or bulletin query",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
