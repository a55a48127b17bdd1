"""Structured log lines: the event, then the ids and fields it carries, as key=value.

Fields come from `extra=`; callers pass ids and reasons, never a secret.
"""

from __future__ import annotations

import logging
import sys

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if not fields:
            return base
        pairs = " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        return f"{base} {pairs}"


def _quote(value: object) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


QUIET_JOBS = ("reconcile", "sample_metrics")
"""Crons that tick every few seconds: arq's start and end lines for them would be most of the
log. What they do is logged by the services themselves (a replica died, replicas desired)."""


class QuietTicks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "arq.worker" or record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(f"→ {job}(" in message or f"← {job} ●" in message for job in QUIET_JOBS)


def configure_logging(component: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        KeyValueFormatter(f"%(asctime)s {component} %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(QuietTicks())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # python-on-whales logs whole docker command lines at DEBUG; keep it quiet.
    logging.getLogger("python_on_whales").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
