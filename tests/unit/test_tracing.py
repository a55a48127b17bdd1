"""Tracing: a project per deployment on LangSmith (the local stand-in), the variables replicas get,
the user's own values winning, and the key in no output."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langsmith import Client, traceable

from app.access.tokens import Caller
from app.adapters.langsmith import LangSmithProjects
from app.deployments.environment import EnvChange
from app.kernel.errors import TracingError
from app.kernel.models import RevisionState
from manifests.tracing import LangSmith, OpenTelemetry, TracedAs, Tracing, tracing_env
from tests.support.fake_langsmith import TENANT_ID, FakeLangSmith
from tests.unit.world import Platform

KEY = "lsv2_pt_platform-key-5f4e3d2c1b"
TRACED = TracedAs(deployment="web", revision="rev_1", repository="octo/web")
ALICE = Caller(name="alice", read_only=False)


@pytest.fixture
def langsmith() -> Iterator[FakeLangSmith]:
    with FakeLangSmith(KEY) as fake:
        yield fake


def settings_for(fake: FakeLangSmith, key: str = KEY) -> LangSmith:
    return LangSmith(endpoint=fake.url, api_key=key)


# -- the variables ---------------------------------------------------------------------------
def test_a_replica_is_told_to_trace_to_the_project_named_as_its_deployment() -> None:
    tracing = Tracing(langsmith=LangSmith(endpoint="https://ls.example/api/v1", api_key=KEY))
    env = tracing_env(tracing, TRACED, {})
    assert env == {
        "LANGSMITH_TRACING": "true",
        "LANGCHAIN_TRACING_V2": "true",
        "LANGSMITH_API_KEY": KEY,
        "LANGCHAIN_API_KEY": KEY,
        "LANGSMITH_PROJECT": "web",
        "LANGCHAIN_PROJECT": "web",
        "LANGSMITH_ENDPOINT": "https://ls.example/api/v1",
        "LANGCHAIN_ENDPOINT": "https://ls.example/api/v1",
    }


def test_a_users_own_switch_key_or_project_wins_as_a_whole_group() -> None:
    tracing = Tracing(langsmith=LangSmith(endpoint="https://ls.example", api_key=KEY))
    off = tracing_env(tracing, TRACED, {"LANGSMITH_TRACING": "false"})
    # None of the switch's names is set: LANGCHAIN_TRACING_V2=true would win over the user's.
    assert not {"LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"} & set(off)
    own_key = tracing_env(tracing, TRACED, {"LANGCHAIN_API_KEY": "theirs"})
    assert "LANGSMITH_API_KEY" not in own_key and "LANGCHAIN_API_KEY" not in own_key
    own_project = tracing_env(tracing, TRACED, {"LANGCHAIN_PROJECT": "mine"})
    assert "LANGSMITH_PROJECT" not in own_project
    # Their own LangSmith: the platform's key never travels to an address the tenant chose.
    assert tracing_env(tracing, TRACED, {"LANGSMITH_ENDPOINT": "https://evil.example"}) == {}


def test_opentelemetry_names_the_deployment_revision_and_repository() -> None:
    tracing = Tracing(otel=OpenTelemetry(endpoint="http://otel:4318", headers="x-token=abc"))
    env = tracing_env(tracing, TRACED, {})
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-token=abc"
    assert env["OTEL_SERVICE_NAME"] == "web"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "service.name=web,slipway.deployment=web,slipway.revision=rev_1,"
        "slipway.repository=octo%2Fweb"
    )
    assert tracing.secrets == ("x-token=abc",)
    assert tracing_env(tracing, TRACED, {"OTEL_SERVICE_NAME": "mine"}) == {}


# -- LangSmith's API -------------------------------------------------------------------------
def test_a_project_is_made_once_and_found_again(langsmith: FakeLangSmith) -> None:
    projects = LangSmithProjects(settings_for(langsmith))
    first = projects.ensure_project("web", "Traces of web")
    again = projects.ensure_project("web", "Traces of web")
    assert first == again
    assert [p.name for p in langsmith.projects.values()] == ["web"]
    assert langsmith.projects[first.id].created_by_api
    assert first.url == f"{langsmith.url}/o/{TENANT_ID}/projects/p/{first.id}"
    langsmith.assert_no_errors()


def test_a_workspace_is_named_in_every_call() -> None:
    workspace = "11111111-2222-4333-8444-555555555555"
    with FakeLangSmith(KEY, workspace_id=workspace) as fake:
        named = LangSmith(endpoint=fake.url, api_key=KEY, workspace_id=workspace)
        project = LangSmithProjects(named).ensure_project("web", "")
        assert LangSmithProjects(named).last_runs([project.id]) == {project.id: None}
        fake.assert_no_errors()
        with pytest.raises(TracingError, match="HTTP 403"):
            LangSmithProjects(settings_for(fake)).ensure_project("api", "")


def test_a_refusal_is_a_tracing_error_that_never_shows_the_key(langsmith: FakeLangSmith) -> None:
    with pytest.raises(TracingError) as refused:
        LangSmithProjects(settings_for(langsmith, key="wrong-key-123")).ensure_project("web", "")
    assert "HTTP 401" in str(refused.value) and "wrong-key-123" not in str(refused.value)
    langsmith.errors.clear()
    langsmith.refuse_projects = "down for maintenance"
    with pytest.raises(TracingError, match="HTTP 503"):
        LangSmithProjects(settings_for(langsmith)).ensure_project("web", "")


def test_a_run_the_langsmith_client_sends_is_a_trace_of_the_project(
    langsmith: FakeLangSmith,
) -> None:
    """The installed client's own ingest path (its /info, then /runs/multipart or /runs/batch)
    against the stand-in: the stand-in speaks what the client sends."""
    projects = LangSmithProjects(settings_for(langsmith))
    project = projects.ensure_project("web", "")
    assert projects.last_runs([project.id]) == {project.id: None}
    client = Client(api_url=langsmith.url, api_key=KEY)

    @traceable(client=client, project_name="web", run_type="chain")
    def answer(question: str) -> str:
        return f"echo: {question}"

    with pytest.MonkeyPatch.context() as env:
        env.setenv("LANGSMITH_TRACING", "true")
        assert answer("hi") == "echo: hi"
        client.flush()
    [trace] = langsmith.traces_in("web")
    assert trace["name"] == "answer" and trace["outputs"] == {"output": "echo: hi"}
    assert projects.last_runs([project.id])[project.id] is not None
    langsmith.assert_no_errors()


# -- a deployment's replicas and project -----------------------------------------------------
def traced(platform: Platform, fake: FakeLangSmith) -> Platform:
    platform.tracing_service = LangSmithProjects(settings_for(fake))
    platform.reconfigure(tracing=Tracing(langsmith=settings_for(fake)))
    return platform


def test_a_deployment_gets_its_project_and_its_replicas_the_variables(
    platform: Platform, langsmith: FakeLangSmith
) -> None:
    traced(platform, langsmith)
    revision = platform.push()
    assert platform.pipeline.run(revision) is RevisionState.live
    deployment = platform.deployment()
    [container] = platform.runtime.of_revision(revision)
    assert container.spec.env["LANGSMITH_PROJECT"] == deployment.slug
    assert container.spec.env["LANGSMITH_API_KEY"] == KEY
    assert container.spec.env["LANGCHAIN_TRACING_V2"] == "true"

    assert platform.tracing_projects.ensure_missing() == 1
    assert platform.tracing_projects.ensure_missing() == 0  # made once
    deployment = platform.deployment()
    [project] = langsmith.projects.values()
    assert project.name == deployment.slug and deployment.tracing_project_id == project.id
    assert KEY not in platform.everything_shown()
    langsmith.assert_no_errors()


def test_a_users_tracing_false_wins(platform: Platform, langsmith: FakeLangSmith) -> None:
    traced(platform, langsmith)
    assert platform.pipeline.run(platform.push()) is RevisionState.live
    done = platform.operations.change_env(
        platform.deployment().id, EnvChange(set={"LANGSMITH_TRACING": "false"}), ALICE
    )
    platform.carry_out(done.outcome)
    [revision] = done.outcome.start_revisions
    assert platform.pipeline.run(revision) is RevisionState.live
    [container] = platform.runtime.of_revision(revision)
    assert container.spec.env["LANGSMITH_TRACING"] == "false"
    assert "LANGCHAIN_TRACING_V2" not in container.spec.env


def test_langsmith_down_never_blocks_a_deploy_and_the_project_is_made_later(
    platform: Platform, langsmith: FakeLangSmith
) -> None:
    traced(platform, langsmith)
    langsmith.refuse_projects = "down for maintenance"
    assert platform.pipeline.run(platform.push()) is RevisionState.live
    assert platform.tracing_projects.ensure_missing() == 0
    error = platform.deployment().tracing_error
    assert error is not None and "down for maintenance" in error and KEY not in error

    langsmith.refuse_projects = None
    assert platform.tracing_projects.ensure_missing() == 1
    assert platform.deployment().tracing_error is None
    assert platform.deployment().tracing_project_url is not None
