"""Job timings, each with its reason (the job names and ids are app/kernel/orders.py's)."""

from __future__ import annotations

JOB_TIMEOUT_SECONDS = 45 * 60
"""Longer than the build timeout plus the health deadline: the task enforces its own limits."""
TEARDOWN_TIMEOUT_SECONDS = 10 * 60
"""Stopping replicas (10 s grace each), dropping a database, removing images."""
TEARDOWN_RETRY_SECONDS = 10
"""A teardown the engine or the cluster refused is tried again after 10 s, 20 s, ..."""
ENQUEUE_TIMEOUT_SECONDS = 10
MAX_TRIES = 3
"""A worker that died mid-job gets the job again; after this many tries the job is dropped."""
KEEP_RESULT_SECONDS = 3600
COMMENT_RETRY_SECONDS = 5
"""A comment GitHub refused is written again after 5 s, 10 s, ... (MAX_TRIES in all)."""
POLL_DELAY_SECONDS = 0.02
"""How often an idle worker looks for jobs. arq's 0.5 s default was a third of a push's path
(two jobs per push, see docs/benchmarks/push-to-live.md); 50 cheap Redis calls a second per
idle worker is the price."""
