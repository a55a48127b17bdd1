"""What a replica is given to trace its runs: LangSmith's variables, or OpenTelemetry's.

Pure: the platform's tracing settings and the deployment's names in, env out. The user's own
values win, group by group, because the langsmith client reads several names for one thing
(LANGSMITH_TRACING_V2, LANGCHAIN_TRACING_V2, LANGSMITH_TRACING, LANGCHAIN_TRACING, in that
order): a user's LANGSMITH_TRACING=false must not lose to a LANGCHAIN_TRACING_V2=true of ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_LANGSMITH_ENDPOINT = "https://api.smith.langchain.com"

SWITCH = ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2")
"""Turn tracing on: the current name and the one older LangChain releases read."""
SWITCH_GROUP = frozenset({*SWITCH, "LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING"})
KEY = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")
PROJECT = ("LANGSMITH_PROJECT", "LANGCHAIN_PROJECT")
PROJECT_GROUP = frozenset({*PROJECT, "LANGCHAIN_SESSION"})
ENDPOINT = ("LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT")
WORKSPACE = ("LANGSMITH_WORKSPACE_ID",)
OTEL_NAMES = frozenset(
    {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    }
)


@dataclass(frozen=True)
class LangSmith:
    endpoint: str
    api_key: str = field(repr=False)
    workspace_id: str | None = None

    @property
    def web_url(self) -> str:
        """LangSmith's web app for its API, as the langsmith client derives it
        (`langsmith.utils.get_host_url`): smith.langchain.com for the SaaS regions, the
        API's own origin without `/api[/v1]` for a self-hosted one."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        if host.endswith("api.smith.langchain.com"):
            region = host.removesuffix("api.smith.langchain.com")
            return f"https://{region}smith.langchain.com"
        path = parts.path.rstrip("/")
        for suffix in ("/api/v1", "/api"):
            if path.endswith(suffix):
                path = path.removesuffix(suffix)
                break
        return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


@dataclass(frozen=True)
class OpenTelemetry:
    endpoint: str
    headers: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Tracing:
    """The platform's tracing, as the settings give it; both parts optional."""

    langsmith: LangSmith | None = None
    otel: OpenTelemetry | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values every output hides (build logs, check runs, the API)."""
        hidden = []
        if self.langsmith is not None:
            hidden.append(self.langsmith.api_key)
        if self.otel is not None and self.otel.headers:
            hidden.append(self.otel.headers)
        return tuple(hidden)


@dataclass(frozen=True)
class TracedAs:
    """Whom a replica's traces are of."""

    deployment: str
    revision: str
    repository: str


def project_name(deployment_slug: str) -> str:
    """A deployment's tracing project has its name: what the user sees in both places."""
    return deployment_slug


def tracing_env(tracing: Tracing, traced: TracedAs, user_env: dict[str, str]) -> dict[str, str]:
    """The variables the platform adds for tracing; each group the user set is left out
    (the user's values are merged over these by the caller)."""
    env: dict[str, str] = {}
    given = set(user_env)
    langsmith = tracing.langsmith
    # A user's own LangSmith (their endpoint) gets none of the platform's: its key must not
    # travel to an address the tenant chose.
    if langsmith is not None and not given & set(ENDPOINT):
        if not given & SWITCH_GROUP:
            env.update(dict.fromkeys(SWITCH, "true"))
        if not given & set(KEY):
            env.update(dict.fromkeys(KEY, langsmith.api_key))
        if not given & PROJECT_GROUP:
            env.update(dict.fromkeys(PROJECT, project_name(traced.deployment)))
        env.update(dict.fromkeys(ENDPOINT, langsmith.endpoint))
        if langsmith.workspace_id and not given & set(WORKSPACE):
            env[WORKSPACE[0]] = langsmith.workspace_id
    otel = tracing.otel
    if otel is not None and not given & OTEL_NAMES:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otel.endpoint
        if otel.headers:
            env["OTEL_EXPORTER_OTLP_HEADERS"] = otel.headers
        env["OTEL_SERVICE_NAME"] = traced.deployment
        env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
            f"{key}={quote(value, safe='')}"
            for key, value in (
                ("service.name", traced.deployment),
                ("slipway.deployment", traced.deployment),
                ("slipway.revision", traced.revision),
                ("slipway.repository", traced.repository),
            )
        )
    return env


def project_url(langsmith: LangSmith, tenant_id: str, project_id: str) -> str:
    """The project's page, as the langsmith client links it (`TracerSession.url`)."""
    return f"{langsmith.web_url}/o/{tenant_id}/projects/p/{project_id}"


def studio_url(langsmith: LangSmith | None, deployment_url: str) -> str:
    """LangGraph Studio on the deployment (as `langgraph dev` prints it)."""
    web = langsmith.web_url if langsmith is not None else "https://smith.langchain.com"
    return f"{web}/studio/?baseUrl={quote(deployment_url, safe=':/')}"
