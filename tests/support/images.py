"""Local base images for test apps: no registry can be reached, so the tests make their own.

- busybox: `FROM scratch` + a static busybox, a 2 MB image with an HTTP server (`httpd`).
- python: a debootstrap'ed Debian 12 with python3 and psycopg2 from Debian, for apps that use
  their database. debootstrap fetches from the Debian archive this machine's apt uses
  (tests/apt_sources.py; SLIPWAY_TEST_DEBIAN_MIRROR overrides it) and takes about a minute, so
  its root filesystem is cached as a tar under ~/.cache/slipway-tests and only `docker import`ed
  on later runs.
- python-pip: what the official `python:3.11-slim-bookworm` offers a LangGraph build and no
  more: `python` and `pip` on PATH (a venv over Debian's python3, so pip may install into it).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.apt_sources import debian_archive

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
BUSYBOX_IMAGE = "slipway-test/busybox:1"
PYTHON_IMAGE = "slipway-test/python:3.11"
DEBIAN_RELEASE = "bookworm"
PYTHON_PACKAGES = "python3,python3-psycopg2,ca-certificates"
PYTHON_PIP_IMAGE = "slipway-test/python-pip:3.11"
PYTHON_PIP_PACKAGES = "python3,python3-venv,ca-certificates"
PYTHON_PIP_DOCKERFILE = """FROM slipway-test/python-venv-rootfs:3.11
RUN python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["python"]
"""
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "slipway-tests"


def docker(*args: str, input: bytes | None = None) -> str:
    result = subprocess.run(
        [DOCKER, *args], input=input, capture_output=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.decode()[-2000:]}")
    return result.stdout.decode()


def network_of(container: str) -> str:
    """The network the container is on: its holder's, for a replica's app (which joins it).

    Read from the networks it is attached to, not its network mode: a holder taken from the
    host's reserve keeps the reserve's as its mode, though it left it for its deployment's."""
    mode = docker("inspect", "--format", "{{.HostConfig.NetworkMode}}", container).strip()
    if mode.startswith("container:"):
        return network_of(mode.removeprefix("container:"))
    attached = docker(
        "inspect",
        "--format",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
        container,
    ).split()
    return " ".join(sorted(attached))


def image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            [DOCKER, "image", "inspect", tag], capture_output=True, check=False
        ).returncode
        == 0
    )


def ensure_busybox_image() -> str:
    if image_exists(BUSYBOX_IMAGE):
        return BUSYBOX_IMAGE
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise RuntimeError("/bin/busybox is missing: run scripts/ensure-test-tools.sh")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy2(busybox, Path(tmp) / "busybox")
        (Path(tmp) / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'CMD ["/bin/sh"]\n'
        )
        subprocess.run(
            [DOCKER, "build", "-q", "-t", BUSYBOX_IMAGE, tmp],
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
            check=True,
            capture_output=True,
            timeout=300,
        )
    return BUSYBOX_IMAGE


def ensure_python_image() -> str:
    return _imported(PYTHON_IMAGE, CACHE_DIR / "bookworm-python-psycopg2.tar", PYTHON_PACKAGES)


def ensure_python_pip_image() -> str:
    """The base LangGraph tests build on (SLIPWAY_LANGGRAPH_BASE_IMAGE)."""
    if image_exists(PYTHON_PIP_IMAGE):
        return PYTHON_PIP_IMAGE
    rootfs = _imported(
        "slipway-test/python-venv-rootfs:3.11",
        CACHE_DIR / "bookworm-python-venv.tar",
        PYTHON_PIP_PACKAGES,
    )
    assert rootfs in PYTHON_PIP_DOCKERFILE
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Dockerfile").write_text(PYTHON_PIP_DOCKERFILE)
        subprocess.run(
            [DOCKER, "build", "-q", "-t", PYTHON_PIP_IMAGE, tmp],
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
            check=True,
            capture_output=True,
            timeout=300,
        )
    return PYTHON_PIP_IMAGE


def _imported(tag: str, rootfs_tar: Path, packages: str) -> str:
    if image_exists(tag):
        return tag
    # One maker at a time (two pytest-xdist workers on a new machine need the same base):
    # the other waits, then finds the tar or the image, instead of a second debootstrap
    # writing the same .partial file.
    rootfs_tar.parent.mkdir(parents=True, exist_ok=True)
    with rootfs_tar.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if image_exists(tag):
            return tag
        if not rootfs_tar.exists():
            _debootstrap(rootfs_tar, packages)
        with rootfs_tar.open("rb") as tar:
            subprocess.run(
                [DOCKER, "import", "--change", 'CMD ["python3"]', "-", tag],
                stdin=tar,
                check=True,
                capture_output=True,
                timeout=600,
            )
    return tag


def debian_mirror() -> str:
    """SLIPWAY_TEST_DEBIAN_MIRROR, or the archive this machine's apt installs from."""
    return os.environ.get("SLIPWAY_TEST_DEBIAN_MIRROR") or debian_archive(DEBIAN_RELEASE)


def _debootstrap(rootfs_tar: Path, packages: str) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    rootfs_tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=rootfs_tar.parent) as tmp:
        root = Path(tmp) / "rootfs"
        result = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={packages}",
                DEBIAN_RELEASE,
                str(root),
                debian_mirror(),
            ],
            capture_output=True,
            check=False,
            timeout=900,
        )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {result.stderr.decode()[-2000:]}")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        partial = rootfs_tar.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(rootfs_tar)
