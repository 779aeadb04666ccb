"""Logging for every process: one line per record; personal data never reaches a log (callers mask)."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if getattr(root, "_quanzu_configured", False):
        root.setLevel(level)
        return
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiokafka logs every failed reconnect at ERROR while the broker is down; our own code reports that once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    root._quanzu_configured = True  # type: ignore[attr-defined]
