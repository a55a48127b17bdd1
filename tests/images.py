"""Local base images for test apps: no registry can be reached, so the tests make their own.

- busybox: `FROM scratch` + a static busybox, a 2 MB image with an HTTP server (`httpd`).
- python: a debootstrap'ed Debian 12 with python3 and psycopg2 from Debian, for apps that use
  their database. debootstrap takes about a minute, so its root filesystem is cached as a tar
  under ~/.cache/slipway-tests and only `docker import`ed on later runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
BUSYBOX_IMAGE = "slipway-test/busybox:1"
PYTHON_IMAGE = "slipway-test/python:3.11"
DEBIAN_MIRROR = os.environ.get("SLIPWAY_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PYTHON_PACKAGES = "python3,python3-psycopg2,ca-certificates"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "slipway-tests"


def docker(*args: str, input: bytes | None = None) -> str:
    result = subprocess.run(
        [DOCKER, *args], input=input, capture_output=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.decode()[-2000:]}")
    return result.stdout.decode()


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
    if image_exists(PYTHON_IMAGE):
        return PYTHON_IMAGE
    rootfs_tar = CACHE_DIR / "bookworm-python-psycopg2.tar"
    if not rootfs_tar.exists():
        _debootstrap(rootfs_tar)
    with rootfs_tar.open("rb") as tar:
        subprocess.run(
            [DOCKER, "import", "--change", 'CMD ["python3"]', "-", PYTHON_IMAGE],
            stdin=tar,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return PYTHON_IMAGE


def _debootstrap(rootfs_tar: Path) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    rootfs_tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=rootfs_tar.parent) as tmp:
        root = Path(tmp) / "rootfs"
        result = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={PYTHON_PACKAGES}",
                "bookworm",
                str(root),
                DEBIAN_MIRROR,
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
