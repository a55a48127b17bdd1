"""The platform log: the reconciler's ticks do not drown what happens."""

from __future__ import annotations

import logging

from app.kernel.logs import QuietTicks


def arq_line(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("arq.worker", level, __file__, 1, message, None, None)


def test_the_reconcilers_ticks_are_left_out_and_everything_else_kept() -> None:
    quiet = QuietTicks()

    assert not quiet.filter(arq_line("  0.53s → reconcile()"))
    assert not quiet.filter(arq_line("  0.00s ← reconcile ● "))
    assert quiet.filter(arq_line("  0.53s → run_revision('rev_1')"))
    assert quiet.filter(arq_line("  2.01s ! reconcile failed, RuntimeError", logging.ERROR))
    assert quiet.filter(
        logging.LogRecord("app.replicas.reconciler", logging.INFO, "", 1, "x", None, None)
    )
