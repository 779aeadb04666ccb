"""Metrics of the shared plumbing (contract §6) and the /metrics endpoint. Service metrics live in each service."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

CONSUMER_LAG = Gauge(
    "quanzu_consumer_lag", "Messages not yet handled by a consumer group, per topic", ["topic", "group"]
)
DLQ_MESSAGES = Counter(
    "quanzu_dlq_messages_total", "Messages sent to a dead-letter topic, by original topic", ["topic"]
)
OUTBOX_PENDING = Gauge("quanzu_outbox_pending", "Outbox rows not yet acknowledged by the broker", ["service"])
OUTBOX_PUBLISHED = Counter("quanzu_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PUBLISH_SECONDS = Histogram(
    "quanzu_outbox_publish_delay_seconds",
    "Time from an outbox row's commit to the broker's acknowledgement",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
EVENTS_HANDLED = Counter(
    "quanzu_events_handled_total",
    "Kafka messages handled, by topic, group and result",
    ["topic", "group", "result"],
)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
