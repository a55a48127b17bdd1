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
IDLE_POLL_SECONDS = 1.0
"""How long a worker with nothing to do waits before looking at the queue anyway. It is woken
at once by a job announced on the queue's wake channel (jobs/wake.py), so this is only the
safety net for a wake-up lost while the subscription was made again, or a job enqueued by a
client that does not announce it. (It polled every 20 ms before: 50 Redis calls a second.)"""
