"""What the Docker tiers need from outside, made before they start (`make test` runs it).

On a new machine (CI's clean clone) the first integration and e2e tests would otherwise wait for
debootstrap, image builds and a `pip download` of the LangGraph server's wheels, a minute or two
of mostly network, on the longest module's critical path. `make test` runs this in the
background while lint and the unit tier, which need none of it, keep the cores busy. Each part
is the same idempotent `ensure_*` the tests call: the debootstrap and the wheelhouse are made
under a lock, so a test that gets there first waits for them; the two small images built by
`docker build` may be built twice at once, to the same tag.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.support.images import ensure_busybox_image, ensure_python_image, ensure_python_pip_image
from tests.support.wheelhouse import ensure_wheelhouse


def _images() -> str:
    return ", ".join((ensure_busybox_image(), ensure_python_image(), ensure_python_pip_image()))


PARTS: dict[str, Callable[[], Any]] = {"images": _images, "wheelhouse": ensure_wheelhouse}


def _timed(name: str, make: Callable[[], Any]) -> str:
    started = time.monotonic()
    try:
        made = make()
    except Exception as error:  # the tests that need it will make it again and say why
        return f"prefetch: {name} failed after {time.monotonic() - started:.0f} s: {error!r:.300}"
    return f"prefetch: {name} ready in {time.monotonic() - started:.0f} s ({made})"


def main() -> int:
    with ThreadPoolExecutor(max_workers=len(PARTS)) as pool:
        reports = list(pool.map(lambda part: _timed(*part), PARTS.items()))
    for report in reports:
        print(report, flush=True)
    return 1 if any(" failed " in report for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
