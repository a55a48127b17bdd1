"""A real ACME CA on this machine: Debian's Pebble, with pebble-challtestsrv as its DNS.

Pebble is Let's Encrypt's test CA: it speaks the whole ACME protocol and validates every
challenge for real (it connects to the router's HTTP and HTTPS ports). Its DNS server answers
every name with 127.0.0.1, so `<slug>.<BASE_DOMAIN>` reaches the platform's router; a name can
be pointed elsewhere (`point`). What Pebble was asked is read from its log (its orders) and its
management API (the names of each certificate it issued).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.server.embedded import free_port

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
START_TIMEOUT_SECONDS = 20.0
ADDED_ORDER = re.compile(r"Added order \"[^\"]+\" to the db")
ISSUED = re.compile(r"Issued certificate serial ([0-9a-f]+) for order")


def available() -> bool:
    return shutil.which(PEBBLE) is not None and shutil.which(CHALLTESTSRV) is not None


@dataclass
class Pebble:
    """Pebble and its DNS, started by `start` in `work_dir`; `http_port` and `https_port` are
    where its validation authority connects for HTTP-01 and TLS-ALPN-01 (the router's)."""

    work_dir: Path
    http_port: int
    https_port: int
    acme_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    dns_management_port: int = field(default_factory=free_port)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def tls_root(self) -> Path:
        """The root of Pebble's own HTTPS certificate: what SLIPWAY_ACME_CA_ROOT trusts."""
        return self.work_dir / "tls-root.pem"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "pebble.log"

    def start(self) -> Pebble:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._write_tls_certificate()
        config = self.work_dir / "pebble.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{self.acme_port}",
                        "managementListenAddress": f"127.0.0.1:{self.management_port}",
                        "certificate": str(self.work_dir / "tls-cert.pem"),
                        "privateKey": str(self.work_dir / "tls-key.pem"),
                        "httpPort": self.http_port,
                        "tlsPort": self.https_port,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        dns_log = (self.work_dir / "challtestsrv.log").open("ab")
        self._processes.append(
            subprocess.Popen(
                [
                    CHALLTESTSRV,
                    "-dns01",
                    f"127.0.0.1:{self.dns_port}",
                    "-management",
                    f"127.0.0.1:{self.dns_management_port}",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-defaultIPv4",
                    "127.0.0.1",
                    "-defaultIPv6",
                    "",
                ],
                stdout=dns_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        pebble_log = self.log_path.open("ab")
        self._processes.append(
            subprocess.Popen(
                [PEBBLE, "-config", str(config), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=pebble_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.work_dir,
                env={
                    "PATH": "/usr/bin:/bin",
                    # Validate at once (Pebble waits up to 15 s per challenge otherwise), and
                    # never reject a good nonce (its default rejects 5%, to test clients).
                    "PEBBLE_VA_NOSLEEP": "1",
                    "PEBBLE_WFE_NONCEREJECT": "0",
                    # Each order validates afresh: a reused authorization proves nothing.
                    "PEBBLE_AUTHZREUSE": "0",
                },
            )
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in self._processes):
                raise AssertionError(f"pebble exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                self._management("/roots/0")
                self._dns("/set-default-ipv4", {"ip": "127.0.0.1"})
                return self
            except (httpx.HTTPError, OSError):
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"pebble did not answer:\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        self._processes.clear()

    # -- what Pebble issues and saw -------------------------------------------------------
    def issuing_chain(self) -> str:
        """Pebble's root and intermediate, which it generates at every start: what a client
        trusts to verify the certificates it issued."""
        return self._management("/roots/0") + self._management("/intermediates/0")

    def order_count(self) -> int:
        """Orders Pebble created since it started (its log names no identifiers)."""
        return len(ADDED_ORDER.findall(self.log_path.read_text(errors="replace")))

    def issued_names(self) -> list[list[str]]:
        """The names of every certificate Pebble issued, in order."""
        serials = ISSUED.findall(self.log_path.read_text(errors="replace"))
        names = []
        for serial in serials:
            status = json.loads(self._management(f"/cert-status-by-serial/{serial}"))
            certificate = x509.load_pem_x509_certificate(status["Certificate"].encode())
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names.append(san.value.get_values_for_type(x509.DNSName))
        return names

    # -- DNS ------------------------------------------------------------------------------
    def point(self, name: str, address: str) -> None:
        """An A record for `name` (Pebble's DNS answers 127.0.0.1 for every other name)."""
        self._dns("/add-a", {"host": name, "addresses": [address]})

    def unpoint(self, name: str) -> None:
        """`name` back to the default answer (127.0.0.1: this machine)."""
        self._dns("/clear-a", {"host": name})

    def _management(self, path: str) -> str:
        context = ssl.create_default_context(cafile=str(self.tls_root))
        response = httpx.get(
            f"https://127.0.0.1:{self.management_port}{path}",
            verify=context,
            trust_env=False,
            timeout=5,
        )
        response.raise_for_status()
        return response.text

    def _dns(self, path: str, body: dict[str, object]) -> None:
        response = httpx.post(
            f"http://127.0.0.1:{self.dns_management_port}{path}",
            json=body,
            trust_env=False,
            timeout=5,
        )
        response.raise_for_status()

    def _write_tls_certificate(self) -> None:
        """Pebble serves ACME over HTTPS only: a root of this run's own and a certificate for
        127.0.0.1 signed by it."""
        now = datetime.datetime.now(datetime.UTC)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "slipway test ACME TLS")])
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(root_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        self.tls_root.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        (self.work_dir / "tls-cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (self.work_dir / "tls-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@dataclass(frozen=True)
class TlsAnswer:
    status: int
    headers: dict[str, str]
    body: str
    certificate: Mapping[str, Any]
    """The server's certificate as Python's ssl module verified it (subject, SAN, issuer)."""


def get_over_tls(host: str, port: int, chain_pem: str, path: str = "/") -> TlsAnswer:
    """GET https://host:port/path from 127.0.0.1, with `host` as SNI and Host, verifying the
    certificate against `chain_pem` and the name: what a browser would accept."""
    context = ssl.create_default_context(cadata=chain_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        certificate = tls.getpeercert()
        shown = "" if port == 443 else f":{port}"
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}{shown}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert certificate is not None
    return TlsAnswer(
        int(status_line.split()[1]), headers, body.decode(errors="replace"), certificate
    )


def handshake_fails(host: str, port: int, chain_pem: str) -> str | None:
    """The error a TLS handshake for `host` ends with, or None when it succeeds."""
    context = ssl.create_default_context(cadata=chain_pem)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except (ssl.SSLError, OSError) as exc:
        return str(exc) or type(exc).__name__
