"""A push becomes a live, routed container with its own database; the next push replaces it."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from tests.support.apps import notes_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.images import BUSYBOX_IMAGE, DOCKER, network_of
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform, wait_for


def test_push_deploys_and_next_push_replaces_it_keeping_the_data(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("notes", notes_app("one"))
    first = repo.head

    started = time.monotonic()
    response = platform.push(repository, INSTALLATION_ID, ZERO_SHA, first)
    answered = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert answered < 1.0, f"the webhook took {answered:.3f} s to answer"

    deployment, revision1 = platform.settle(repository["full_name"], first)
    assert deployment["environment"] == "production"
    assert deployment["type"] == "production"
    assert revision1["state"] == "live", revision1["error"]
    assert revision1["image"]
    for phase in (
        "build_started_at",
        "build_finished_at",
        "deploy_started_at",
        "database_ready_at",
        "replica_started_at",
        "healthy_at",
        "live_at",
    ):
        assert revision1[phase], phase

    # The production type's limits are on the replica, and its port is published on loopback.
    container = subprocess.run(
        [DOCKER, "ps", "-q", "--filter", f"label=dev.slipway.revision={revision1['id']}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(container) == 1
    host_config = json.loads(
        subprocess.run(
            [DOCKER, "inspect", "-f", "{{json .HostConfig}}", container[0]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert host_config["NanoCpus"] == 2_000_000_000
    assert host_config["Memory"] == 2 * 1024**3
    # ... and it is confined (and still serves and reaches its database, below).
    assert host_config["MemorySwap"] == host_config["Memory"]
    assert host_config["CapDrop"] == ["ALL"] and not host_config["CapAdd"]
    assert host_config["SecurityOpt"] == ["no-new-privileges"]
    assert host_config["PidsLimit"] == 1024
    assert host_config["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}
    assert network_of(container[0]) == f"slipway-net-{deployment['id']}"
    assert not host_config["PortBindings"]  # nothing on the host: the router dials its address

    slug = deployment["slug"]
    page = platform.request(slug, "/")
    assert page.status_code == 200
    assert page.text == f"version=one commit={first}\n"
    assert (
        platform.request(
            slug, "/notes", "POST", params={"text": "kept across revisions"}
        ).status_code
        == 201
    )
    assert json.loads(platform.request(slug, "/notes").text) == ["kept across revisions"]

    second = repo.commit({"VERSION": "two\n"}, "second version")
    assert platform.push(repository, INSTALLATION_ID, first, second).status_code == 202
    _, revision2 = platform.settle(repository["full_name"], second)
    assert revision2["state"] == "live", revision2["error"]
    assert revision2["number"] == revision1["number"] + 1

    page = platform.request(slug, "/")
    assert page.text == f"version=two commit={second}\n"
    assert json.loads(platform.request(slug, "/notes").text) == ["kept across revisions"]
    assert platform.api(f"/api/revisions/{revision1['id']}")["state"] == "superseded"
    assert (
        platform.api(f"/api/deployments/{deployment['id']}")["live_revision_id"]
        == (revision2["id"])
    )
    build_log = platform.logs(revision2["id"])
    assert "BuildKit" in build_log and "live at" in build_log

    # What the user sees on GitHub: a green check run and a successful deployment per commit.
    full_name = repository["full_name"]
    url = f"http://{slug}.localhost:{platform.router_port}/"

    def reported(sha: str) -> bool:
        return any(
            d.sha == sha and d.state == "success" for d in github.deployments(full_name)
        ) and any(
            r.head_sha == sha and r.status == "completed" for r in github.check_runs(full_name)
        )

    wait_for("GitHub to hear of both revisions", lambda: reported(first) and reported(second), 30)
    wait_for(
        "the first deployment to be marked inactive",
        lambda: (
            next(d for d in github.deployments(full_name) if d.sha == first).state == "inactive"
        ),
        30,
    )
    for sha in (first, second):
        runs = [run for run in github.check_runs(full_name) if run.head_sha == sha]
        assert len(runs) == 1, runs
        run = runs[0]
        assert run.status == "completed" and run.conclusion == "success"
        assert url in (run.output["summary"] or "")
        assert [step["status"] for step in run.history][:2] == ["queued", "in_progress"]
        deployments = [d for d in github.deployments(full_name) if d.sha == sha]
        assert len(deployments) == 1
        assert deployments[0].environment == "production"
        assert deployments[0].production_environment is True
        states = [status["state"] for status in deployments[0].statuses]
        assert "in_progress" in states and "success" in states
        success = next(s for s in deployments[0].statuses if s["state"] == "success")
        assert success["environment_url"] == url
        # "Details": the revision's dashboard page, signed, opens without a token.
        assert "/dashboard/revisions/" in success["log_url"] and "?expires=" in success["log_url"]
        opened = platform.client.get(success["log_url"], timeout=10)
        assert opened.status_code == 200 and "slipway: built" in opened.text
    assert github.errors == [], github.errors


def test_a_newer_push_cancels_a_revision_still_building(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    slow = notes_app("slow")
    slow["Dockerfile"] = str(slow["Dockerfile"]).replace(
        # A token of this run in the step, so BuildKit's cache can never skip the sleep.
        "WORKDIR /app\n",
        f"WORKDIR /app\nRUN echo {uuid.uuid4().hex} && sleep 20 && echo slow-step-$((40+2))\n",
    )
    repo, repository = make_repository("supersede", slow)
    older = repo.head
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, older)
    deployment, revision_old = platform.settle(
        repository["full_name"], older, frozenset({"building"})
    )

    newer = repo.commit(notes_app("fast"), "drop the slow step")
    platform.push(repository, INSTALLATION_ID, older, newer)
    _, revision_new = platform.settle(repository["full_name"], newer)
    assert revision_new["state"] == "live", revision_new["error"]
    cancelled = platform.wait_state(revision_old["id"], {"cancelled"}, timeout=30)
    assert "superseded" in (cancelled["error"] or "")
    old_log = platform.logs(revision_old["id"])
    assert "slow-step-42" not in old_log  # the build was stopped, not waited for
    assert "build stopped: a newer revision superseded this one" in old_log
    assert platform.request(deployment["slug"]).text.startswith("version=fast ")

    def old_run_cancelled() -> bool:
        runs = [r for r in github.check_runs(repository["full_name"]) if r.head_sha == older]
        return bool(runs) and runs[0].status == "completed" and runs[0].conclusion == "cancelled"

    wait_for("the old check run to be cancelled", old_run_cancelled, 30)


def test_slipway_toml_moves_the_dockerfile_the_port_and_the_health_path(
    platform: RunningPlatform, make_repository: RepoFactory
) -> None:
    files: dict[str, str | bytes] = {
        "deploy/web.Dockerfile": (
            f"FROM {BUSYBOX_IMAGE}\n"
            "COPY site/ /www/\n"
            'CMD ["/bin/busybox", "httpd", "-f", "-p", "9000", "-h", "/www"]\n'
        ),
        "site/index.html": "configured\n",
        "site/healthz": "ok\n",
        "slipway.toml": (
            '[build]\ndockerfile = "deploy/web.Dockerfile"\n\n'
            '[deploy]\nport = 9000\nhealth_path = "/healthz"\n'
        ),
    }
    repo, repository = make_repository("configured", files)
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]
    assert platform.request(deployment["slug"]).text == "configured\n"
    assert "Dockerfile deploy/web.Dockerfile" in platform.logs(revision["id"])
