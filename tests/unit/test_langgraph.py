"""langgraph.json: a LangGraph repository is checked before any build, and each mistake is
pointed at on the line of the file it is about; a good one becomes a LangGraph Server image."""

from __future__ import annotations

import importlib
import json
import re
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

import pytest

from manifests.config import load_repository_config
from manifests.errors import Annotation, ConfigError
from manifests.langgraph import load_langgraph_project
from manifests.langgraph_image import (
    CONSTRAINTS_TARGET,
    PIP_SECRET_ID,
    RUNTIMES,
    SERVER_RELEASES,
    LangGraphBuild,
    PipIndex,
    ServerRelease,
    UnsupportedApiVersion,
    server_release,
)
from manifests.recipes import BuildPlan, BuildTarget, default_recipes, plan_build, state_dir_of

AGENT = """from typing import TypedDict

from langgraph.graph import StateGraph


class State(TypedDict):
    text: str


def shout(state: State) -> State:
    return {"text": state["text"].upper()}


builder = StateGraph(State)
builder.add_node("shout", shout)
builder.set_entry_point("shout")
graph = builder.compile()
"""
CONFIG = """{
  "dependencies": ["."],
  "graphs": {
    "agent": "./agent.py:graph"
  },
  "env": ".env"
}
"""


def repository(root: Path, files: dict[str, str]) -> Path:
    source = root / "src"
    for name, content in files.items():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return source


def problems(source: Path, config_path: str = "langgraph.json") -> tuple[Annotation, ...]:
    with pytest.raises(ConfigError) as caught:
        load_langgraph_project(source, config_path)
    assert caught.value.annotations, str(caught.value)
    return caught.value.annotations


def test_a_langgraph_repository_without_a_dockerfile_builds_a_langgraph_server(
    tmp_path: Path,
) -> None:
    source = repository(
        tmp_path, {"langgraph.json": CONFIG, "agent.py": AGENT, "requirements.txt": "langgraph\n"}
    )
    build = LangGraphBuild(
        base_image="python:{python_version}-slim-bookworm",
        pip=PipIndex(index_url="http://user:token@mirror.example/simple/"),
        gateway=lambda pip: PipIndex(index_url="http://172.17.0.1:3141/i0/simple/"),
    )
    plan = plan_build(
        source,
        load_repository_config(source),
        BuildTarget(work_dir=tmp_path, production=True),
        default_recipes(build),
    )

    assert plan.recipe == "langgraph"
    assert plan.deploy is not None and (plan.deploy.port, plan.deploy.health_path) == (8000, "/ok")
    dockerfile = plan.dockerfile.read_text()
    assert plan.dockerfile.parent == tmp_path  # outside the build context
    assert dockerfile.splitlines()[1] == "FROM python:3.11-slim-bookworm"
    assert "langgraph-api==0.11.1 langgraph-runtime-pg==0.11.1.post1" in dockerfile
    graphs = {"agent": "/deps/app/agent.py:graph"}
    assert f"ENV LANGSERVE_GRAPHS={json.dumps(json.dumps(graphs))}" in dockerfile
    assert 'ENV LANGGRAPH_RUNTIME_EDITION="pg"' in dockerfile
    # The index is mounted for pip only, never in the Dockerfile; and the build (which runs
    # the tenant's code) sees the pass-through's URL, never the operator's credentials.
    assert "mirror.example" not in dockerfile
    assert f"--mount=type=secret,id={PIP_SECRET_ID},target=/etc/pip.conf" in dockerfile
    secret = plan.secrets[PIP_SECRET_ID]
    assert "index-url = http://172.17.0.1:3141/i0/simple/" in secret.read_text()
    assert "token" not in secret.read_text()
    assert secret.stat().st_mode & 0o077 == 0
    assert plan.labels["dev.slipway.langgraph-runtime"] == "pg"
    # Requirements come before the source: a change to agent.py rebuilds only what follows.
    lines = dockerfile.splitlines()
    requirements = next(
        i for i, line in enumerate(lines) if "-r /deps/app/requirements.txt" in line
    )
    assert requirements < lines.index("COPY . /deps/app")
    assert any("`env`: .env is not in this commit" in note for note in plan.notes)


def test_index_credentials_without_a_pass_through_never_reach_a_build(tmp_path: Path) -> None:
    source = repository(tmp_path, {"langgraph.json": CONFIG, "agent.py": AGENT})
    build = LangGraphBuild(pip=PipIndex(extra_index_url="https://pypi.org/simple/ https://u:t@x/"))
    with pytest.raises(ConfigError, match="credentials"):
        plan_build(
            source,
            load_repository_config(source),
            BuildTarget(work_dir=tmp_path, production=False),
            default_recipes(build),
        )


def test_a_dockerfile_in_the_commit_wins_over_langgraph_json(tmp_path: Path) -> None:
    source = repository(
        tmp_path, {"Dockerfile": "FROM scratch\n", "langgraph.json": CONFIG, "agent.py": AGENT}
    )
    plan = plan_build(source, load_repository_config(source), BuildTarget(tmp_path, False))
    assert plan.recipe == "dockerfile"


def test_inmem_is_for_development_and_previews_only(tmp_path: Path) -> None:
    source = repository(tmp_path, {"langgraph.json": CONFIG, "agent.py": AGENT})
    recipes = default_recipes(LangGraphBuild(runtime="inmem"))
    config = load_repository_config(source)
    development = plan_build(source, config, BuildTarget(tmp_path, False), recipes)
    production = plan_build(source, config, BuildTarget(tmp_path, True), recipes)
    assert development.labels["dev.slipway.langgraph-runtime"] == "inmem"
    assert production.labels["dev.slipway.langgraph-runtime"] == "pg"
    assert any("uses pg" in note for note in production.notes)
    # inmem's files live on the deployment's volume; pg keeps nothing in the container.
    assert state_dir_of(development.labels) == "/deps/app/.langgraph_api"
    assert state_dir_of(production.labels) is None


def test_the_config_path_is_settable_in_slipway_toml(tmp_path: Path) -> None:
    source = repository(
        tmp_path,
        {
            "slipway.toml": '[build]\nlanggraph_config_path = "agents/langgraph.json"\n',
            "agents/langgraph.json": CONFIG,
            "agents/agent.py": AGENT,
        },
    )
    plan = plan_build(source, load_repository_config(source), BuildTarget(tmp_path, False))
    dockerfile = plan.dockerfile.read_text()
    assert "/deps/app/agents/agent.py:graph" in dockerfile
    assert "WORKDIR /deps/app/agents" in dockerfile


def test_invalid_json_is_annotated_where_the_parser_stopped(tmp_path: Path) -> None:
    source = repository(
        tmp_path, {"langgraph.json": '{\n  "graphs": {\n    "agent": "./agent.py:graph",\n  }\n}\n'}
    )
    [annotation] = problems(source)
    assert (annotation.path, annotation.start_line, annotation.level) == (
        "langgraph.json",
        4,
        "failure",
    )
    assert "not valid JSON" in annotation.message


def test_an_unknown_graph_file_is_annotated_on_its_line(tmp_path: Path) -> None:
    source = repository(
        tmp_path, {"langgraph.json": CONFIG.replace("./agent.py", "./agnet.py"), "agent.py": AGENT}
    )
    [annotation] = problems(source)
    assert (annotation.path, annotation.start_line) == ("langgraph.json", 4)
    assert "'./agnet.py' does not exist" in annotation.message


def test_a_missing_attribute_is_annotated_on_langgraph_json_and_on_the_graph_file(
    tmp_path: Path,
) -> None:
    source = repository(
        tmp_path, {"langgraph.json": CONFIG.replace(":graph", ":app"), "agent.py": AGENT}
    )
    on_config, on_graph = problems(source)
    assert (on_config.path, on_config.start_line) == ("langgraph.json", 4)
    assert "has no attribute 'app'" in on_config.message
    assert on_graph.path == "agent.py"
    assert "graph" in on_graph.message and "builder" in on_graph.message


def test_a_graph_file_that_does_not_parse_is_annotated_at_the_error(tmp_path: Path) -> None:
    source = repository(tmp_path, {"langgraph.json": CONFIG, "agent.py": "graph = (\n\ndef f(:\n"})
    annotations = problems(source)
    on_graph = next(a for a in annotations if a.path == "agent.py")
    assert on_graph.start_line >= 1 and "syntax error" in on_graph.message


def test_a_bad_python_version_is_annotated_on_its_line(tmp_path: Path) -> None:
    config = json.dumps(
        {"python_version": "3.9", "dependencies": ["."], "graphs": {"agent": "./agent.py:graph"}},
        indent=2,
    )
    source = repository(tmp_path, {"langgraph.json": config, "agent.py": AGENT})
    [annotation] = problems(source)
    assert annotation.start_line == 2
    assert "3.9" in annotation.message and "3.11" in annotation.message


def test_an_unsupported_python_version_the_cli_accepts_is_refused(tmp_path: Path) -> None:
    config = CONFIG.replace('"dependencies"', '"python_version": "3.99",\n  "dependencies"')
    source = repository(tmp_path, {"langgraph.json": config, "agent.py": AGENT})
    [annotation] = problems(source)
    assert "not supported" in annotation.message and annotation.start_line == 2


def test_a_missing_local_dependency_is_annotated(tmp_path: Path) -> None:
    config = CONFIG.replace('["."]', '[".", "./libs/tools"]')
    source = repository(tmp_path, {"langgraph.json": config, "agent.py": AGENT})
    [annotation] = problems(source)
    assert annotation.start_line == 2
    assert "'./libs/tools' does not exist" in annotation.message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = json.dumps(
        {
            "dependencies": [".", "./gone"],
            "graphs": {"a": "./missing.py:graph", "b": "./agent.py:nope"},
        },
        indent=2,
    )
    source = repository(tmp_path, {"langgraph.json": config, "agent.py": AGENT})
    with pytest.raises(ConfigError) as caught:
        load_langgraph_project(source, "langgraph.json")
    assert len(caught.value.annotations) == 4
    assert "and 3 more problems" in str(caught.value)


def test_the_clis_own_validation_applies(tmp_path: Path) -> None:
    config = json.dumps({"dependencies": ["."], "graphs": {}}, indent=2)
    source = repository(tmp_path, {"langgraph.json": config})
    [annotation] = problems(source)
    assert "graphs" in annotation.message


def test_store_auth_and_http_are_mapped_like_the_cli_maps_them(tmp_path: Path) -> None:
    config = {
        "dependencies": ["."],
        "graphs": {"agent": "./agent.py:graph"},
        "store": {"ttl": {"default_ttl": 60}},
        "auth": {"path": "./auth.py:auth"},
        "http": {"app": "./web.py:app"},
        "env": {"GREETING": "hello $USER"},
    }
    source = repository(
        tmp_path,
        {
            "langgraph.json": json.dumps(config),
            "agent.py": AGENT,
            "auth.py": "auth = 1\n",
            "web.py": "app = 1\n",
        },
    )
    project = load_langgraph_project(source, "langgraph.json")
    assert json.loads(project.server_env["LANGGRAPH_STORE"]) == config["store"]
    assert json.loads(project.server_env["LANGGRAPH_AUTH"]) == {"path": "/deps/app/auth.py:auth"}
    assert json.loads(project.server_env["LANGGRAPH_HTTP"]) == {"app": "/deps/app/web.py:app"}
    assert project.env == {"GREETING": "hello $USER"}


def test_custom_routes_on_the_pg_runtime_fail_before_any_build(tmp_path: Path) -> None:
    config = '{\n  "dependencies": ["."],\n  "graphs": {"agent": "./agent.py:graph"},\n'
    config += '  "http": {\n    "app": "./web.py:app"\n  }\n}\n'
    source = repository(
        tmp_path, {"langgraph.json": config, "agent.py": AGENT, "web.py": "app = 1\n"}
    )
    recipes = default_recipes(LangGraphBuild(runtime="inmem"))
    repo_config = load_repository_config(source)

    with pytest.raises(ConfigError) as refused:
        plan_build(source, repo_config, BuildTarget(tmp_path, True), recipes)  # production: pg
    [annotation] = refused.value.annotations
    assert (annotation.path, annotation.start_line) == ("langgraph.json", 5)
    assert "pg runtime" in annotation.message
    # On a development deployment with inmem it builds.
    development = plan_build(source, repo_config, BuildTarget(tmp_path, False), recipes)
    assert development.labels["dev.slipway.langgraph-runtime"] == "inmem"


@pytest.mark.parametrize("directory", ["libs/my tools", "libs/a,b", "libs/-x"])
def test_a_local_dependency_of_unsafe_characters_is_refused_on_its_line(
    tmp_path: Path, directory: str
) -> None:
    """Its path is written into the generated Dockerfile: a space, a comma or a leading dash
    could make it more than a path, so it is refused, not quoted."""
    config = CONFIG.replace('["."]', f'[".", "./{directory}"]')
    source = repository(
        tmp_path, {"langgraph.json": config, "agent.py": AGENT, f"{directory}/x.py": ""}
    )
    [annotation] = problems(source)
    assert annotation.start_line == 2
    assert "letters, digits and ._-" in annotation.message


def plan_langgraph(
    tmp_path: Path, config: str = CONFIG, *, runtime: str = "pg", production: bool = True
) -> BuildPlan:
    source = repository(tmp_path, {"langgraph.json": config, "agent.py": AGENT})
    return plan_build(
        source,
        load_repository_config(source),
        BuildTarget(tmp_path / ("production" if production else "development"), production),
        default_recipes(LangGraphBuild(runtime=runtime)),
    )


def server_install(dockerfile: str) -> list[str]:
    """The packages of the Dockerfile's first pip install: the server's."""
    line = next(row for row in dockerfile.splitlines() if " pip install " in row)
    return [word for word in line.split() if word.startswith("langgraph")]


def test_a_build_installs_the_server_at_exact_versions_so_two_builds_of_a_commit_match(
    tmp_path: Path,
) -> None:
    (tmp_path / "production").mkdir()
    first = plan_langgraph(tmp_path).dockerfile.read_text()
    assert server_install(first) == ["langgraph-api==0.11.1", "langgraph-runtime-pg==0.11.1.post1"]
    assert first == plan_langgraph(tmp_path).dockerfile.read_text()
    (tmp_path / "development").mkdir()
    inmem = plan_langgraph(tmp_path, runtime="inmem", production=False)
    assert server_install(inmem.dockerfile.read_text()) == [
        "langgraph-api==0.11.1",
        "langgraph-runtime-inmem==0.31.4",
    ]
    for release in SERVER_RELEASES:
        for runtime, version in release.runtimes.items():
            assert runtime in RUNTIMES and re.fullmatch(r"\d+\.\d+\.\d+(\.post\d+)?", version)
        assert re.fullmatch(r"\d+\.\d+\.\d+", release.api)


def test_the_image_serves_langgraph_api_through_an_entry_that_makes_cron_runs_storable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs the Dockerfile's own RUN step that writes the entry module, then imports that
    module over stand-ins of langgraph-api and of the pg runtime's database module: the engine
    it makes serialises the user object langgraph-api puts in a cron run's config."""
    (tmp_path / "production").mkdir()
    dockerfile = plan_langgraph(tmp_path).dockerfile.read_text()
    assert dockerfile.rstrip().splitlines()[-1] == (
        'CMD ["python", "-m", "uvicorn", "slipway_langgraph_server:app", "--host", "0.0.0.0", '
        '"--port", "8000"]'
    )
    step = next(row for row in dockerfile.splitlines() if "slipway_langgraph_server.py" in row)
    argv = json.loads(step.removeprefix("RUN "))
    assert argv[:2] == ["python", "-c"]
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"purelib": str(site)})
    exec(argv[2], {})  # noqa: S102 - the step a build runs, on a temporary directory

    made: list[dict[str, Any]] = []
    server = types.ModuleType("langgraph_api.server")
    server.app = "the-asgi-app"  # type: ignore[attr-defined]
    database = types.ModuleType("langgraph_runtime_pg.database")
    database.create_async_engine = lambda uri, **options: made.append(options)  # type: ignore[attr-defined]
    for name, module in {
        "langgraph_api": types.ModuleType("langgraph_api"),
        "langgraph_api.server": server,
        "langgraph_runtime_pg": types.ModuleType("langgraph_runtime_pg"),
        "langgraph_runtime_pg.database": database,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(site))
    entry = importlib.import_module("slipway_langgraph_server")
    try:
        assert entry.app == "the-asgi-app"
        database.create_async_engine("postgresql+asyncpg://db")
        [options] = made
        serialise = options["json_serializer"]

        class SimpleUser:  # langgraph-api's, as a cron's run carries it
            identity = ""
            is_authenticated = True
            display_name = ""

        config = {"configurable": {"cron_id": "c1", "langgraph_auth_user": SimpleUser()}}
        assert json.loads(serialise(config)) == {
            "configurable": {
                "cron_id": "c1",
                "langgraph_auth_user": {
                    "identity": "",
                    "is_authenticated": True,
                    "display_name": "",
                },
            }
        }
        with pytest.raises(TypeError, match="not JSON serializable"):
            serialise({"x": object()})
        assert not entry.patch_pg_runtime()  # once only, however often it is imported
    finally:
        sys.modules.pop("slipway_langgraph_server", None)


def test_api_version_chooses_the_server_where_the_runtime_runs_it(tmp_path: Path) -> None:
    config = CONFIG.replace('"env": ".env"', '"api_version": "0.16"')
    (tmp_path / "development").mkdir()
    development = plan_langgraph(tmp_path, config, runtime="inmem", production=False)
    assert server_install(development.dockerfile.read_text()) == [
        "langgraph-api==0.16.7",
        "langgraph-runtime-inmem==0.36.7",
    ]
    assert any("langgraph-api==0.16.7" in note for note in development.notes)

    # Production runs pg, which runs 0.11.1 only: refused before a build, on the key's line,
    # with the versions a user can choose.
    with pytest.raises(ConfigError) as refused:
        plan_langgraph(tmp_path, config)
    [annotation] = refused.value.annotations
    assert (annotation.path, annotation.start_line) == ("langgraph.json", 6)
    assert "langgraph-runtime-pg requires langgraph-api==0.11.1" in annotation.message
    assert "0.11.1 (inmem and pg), 0.16.7 (inmem)" in annotation.message


@pytest.mark.parametrize(
    ("api_version", "runtime", "expected"),
    [
        (None, "pg", "0.11.1"),
        (None, "inmem", "0.11.1"),
        ("0.11", "pg", "0.11.1"),
        ("0.11.1", "inmem", "0.11.1"),
        ("0", "inmem", "0.16.7"),
        ("0", "pg", "0.11.1"),
        ("~=0.11", "inmem", "0.16.7"),
        ("~=0.11.0", "inmem", "0.11.1"),
    ],
)
def test_api_version_is_read_as_langgraph_cli_reads_it(
    api_version: str | None, runtime: str, expected: str
) -> None:
    assert server_release(api_version, runtime).api == expected


@pytest.mark.parametrize("api_version", ["0.14", "1", "0.11.9", "latest", "~=0"])
def test_an_api_version_slipway_does_not_build_is_refused_with_the_choices(
    api_version: str,
) -> None:
    with pytest.raises(UnsupportedApiVersion, match=r"runs langgraph-api 0\.11\.1 or 0\.16\.7"):
        server_release(api_version, "inmem")


@pytest.mark.parametrize(
    ("release", "runtime"),
    [(release, runtime) for release in SERVER_RELEASES for runtime in release.runtimes],
    ids=lambda value: value if isinstance(value, str) else value.api,
)
def test_every_package_of_each_pinned_server_has_an_exact_version(
    release: ServerRelease, runtime: str
) -> None:
    """The lock files (scripts/lock_langgraph_server.py) agree with SERVER_RELEASES: a pin
    changed in one place only would install one server and claim another."""
    lines = release.constraints(runtime).splitlines()
    pins = dict(line.split("==") for line in lines)
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9][0-9A-Za-z.+!-]*", line) for line in lines)
    assert pins["langgraph-api"] == release.api
    assert pins[RUNTIMES[runtime]] == release.runtimes[runtime]
    assert len(pins) > 40  # the whole server, not its two names


def test_the_server_is_installed_under_its_lock_file_written_into_the_image(
    tmp_path: Path,
) -> None:
    (tmp_path / "production").mkdir()
    lines = plan_langgraph(tmp_path).dockerfile.read_text().splitlines()
    install = next(i for i, row in enumerate(lines) if " pip install " in row)
    assert f"-c {CONSTRAINTS_TARGET} langgraph-api==0.11.1" in lines[install]
    write = json.loads(lines[install - 1].removeprefix("RUN "))
    assert write[:2] == ["python", "-c"] and repr(CONSTRAINTS_TARGET) in write[2]
    target = tmp_path / "etc" / "slipway" / "constraints.txt"
    # The step a build runs, with the image's path swapped for a temporary one.
    exec(write[2].replace(repr(CONSTRAINTS_TARGET), repr(str(target))), {})  # noqa: S102
    [release] = [r for r in SERVER_RELEASES if r.api == "0.11.1"]
    assert target.read_text() == release.constraints("pg")
