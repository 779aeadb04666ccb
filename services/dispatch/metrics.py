"""Dispatch's metrics (contract §6). Labels are bounded enumerations and area codes, never personal data."""

from prometheus_client import Counter, Gauge, Histogram

DISPATCH_REQUEST_SECONDS = Histogram(
    "quanzu_dispatch_request_seconds",
    "Dispatch HTTP request duration",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CASES_OPEN = Gauge("quanzu_cases_open", "Open cases by area and state", ["area", "state"])
TASKS_CREATED = Counter("quanzu_tasks_created_total", "Tasks created, by area and tier", ["area", "tier"])
ESCALATIONS = Counter(
    "quanzu_escalations_total", "Escalations between tiers, by reason", ["area", "from_tier", "to_tier", "reason"]
)
SLA_BREACHES = Counter("quanzu_sla_breaches_total", "Missed deadlines, by area and tier", ["area", "tier"])
TIME_TO_FIRST_CONTACT = Histogram(
    "quanzu_time_to_first_contact_seconds",
    "From a case's opening to the first time a person reached the subject, by tier",
    ["tier"],
    buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
SMS_SENT = Counter("quanzu_sms_sent_total", "SMS handed to the provider, by result", ["result"])
CALLS = Counter("quanzu_calls_total", "Finished call attempts, by area and result", ["area", "call_result"])
VISITS = Counter("quanzu_visits_total", "Finished visits, by area and result", ["area", "dissuasion_result"])
