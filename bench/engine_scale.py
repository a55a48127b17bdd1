"""Does the Docker engine itself slow down with 100 idle deployments beside it? (issue 22)

Run with `python -m bench.engine_scale [--beside 100] [--rounds 9]`: with no platform at all,
a one-line change built (`docker build` of a two-line Dockerfile on the local busybox image,
BuildKit) and a container of it started, `--rounds` times with nothing of ours beside, then
again with `--beside` idle containers each on a network of its own (made from 10.250.0.0/16,
as the platform's pool makes them) and as many images. Median and p99 of each step, and the
ratio. It separates what the engine and BuildKit add at scale from what the platform adds in
`bench.scale`'s one-line push; everything it made is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.push_to_live import describe_machine
from tests.support.images import DOCKER, docker, ensure_busybox_image

PREFIX = "slipway-bench-engine"
MAX_BESIDE = 250
"""Networks are /24s of 10.250.0.0/16: at most 256, a few left for whatever else uses it."""


@dataclass
class Steps:
    build: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def build(context: Path, tag: str, content: str) -> float:
    (context / "page.txt").write_text(content)
    started = time.perf_counter()
    subprocess.run(
        [DOCKER, "build", "-q", "-t", tag, str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "1"},  # BuildKit, as the platform builds
        check=True,
        capture_output=True,
        timeout=300,
    )
    return time.perf_counter() - started


def one_push(context: Path, steps: Steps, made: list[str]) -> None:
    """A one-line change built, then a container of it started (and removed)."""
    tag = f"{PREFIX}:{uuid.uuid4().hex[:10]}"
    made.append(tag)
    steps.build.append(build(context, tag, uuid.uuid4().hex))
    started = time.perf_counter()
    container = docker("run", "-d", "--network", "none", tag).strip()
    steps.start.append(time.perf_counter() - started)
    docker("rm", "-f", container)


@contextmanager
def beside(context: Path, count: int, images: list[str]) -> Iterator[None]:
    """`count` idle containers, each on a network and from an image of its own."""
    containers: list[str] = []
    networks: list[str] = []
    try:
        for index in range(count):
            network = f"{PREFIX}-{index}"
            docker("network", "create", "--subnet", f"10.250.{index}.0/24", network)
            networks.append(network)
            tag = f"{PREFIX}:beside-{index}"
            images.append(tag)
            build(context, tag, f"idle {index}")
            containers.append(docker("run", "-d", "--network", network, tag).strip())
        yield
    finally:
        if containers:
            subprocess.run([DOCKER, "rm", "-f", *containers], capture_output=True, check=False)
        if networks:
            subprocess.run([DOCKER, "network", "rm", *networks], capture_output=True, check=False)


def row(name: str, alone: list[float], crowded: list[float]) -> str:
    a, c = statistics.median(alone), statistics.median(crowded)
    return (
        f"| {name:<16} | {1000 * a:6.0f} / {1000 * p99(alone):6.0f} ms "
        f"| {1000 * c:6.0f} / {1000 * p99(crowded):6.0f} ms | {c / a:4.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beside", type=int, default=100, help="idle containers beside")
    parser.add_argument("--rounds", type=int, default=9, help="one-line pushes per side")
    options = parser.parse_args()
    if not 0 < options.beside <= MAX_BESIDE or not 0 < options.rounds <= 100:
        parser.error(f"--beside in 1..{MAX_BESIDE}, --rounds in 1..100")
    machine = describe_machine()
    base = ensure_busybox_image()
    alone, crowded = Steps(), Steps()
    images: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(
            f'FROM {base}\nCOPY page.txt /www/index.html\nCMD ["httpd", "-f", "-p", "8000"]\n'
        )
        try:
            for _ in range(options.rounds):
                one_push(context, alone, images)
            with beside(context, options.beside, images):
                for _ in range(options.rounds):
                    one_push(context, crowded, images)
        finally:
            subprocess.run([DOCKER, "rmi", "-f", *images], capture_output=True, check=False)
    print("\n".join(machine))
    print(f"command: python -m bench.engine_scale --beside {options.beside}")
    print(f"\n| step (median / p99) | alone | {options.beside} beside | ratio |")
    print("|---|---|---|---|")
    print(row("build", alone.build, crowded.build))
    print(row("container start", alone.start, crowded.start))


if __name__ == "__main__":
    main()
