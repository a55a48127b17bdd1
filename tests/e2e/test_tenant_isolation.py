"""A pusher of one repository, trying to reach what belongs to another, through the platform."""

from __future__ import annotations

from tests.support.apps import static_site
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform


def test_a_dockerfile_cannot_build_on_another_deployments_image(
    platform: RunningPlatform, make_repository: RepoFactory
) -> None:
    """Deployment and revision ids appear in links on pull requests; the engine's BuildKit
    resolves `FROM` against its own images. Named by those ids alone, the victim's image must
    not be found: the thief's build fails and serves nothing of the victim's."""
    victim_repo, victim = make_repository("victim", static_site("victim's private page"))
    platform.push(victim, INSTALLATION_ID, ZERO_SHA, victim_repo.head)
    victim_deployment, victim_revision = platform.settle(victim["full_name"], victim_repo.head)
    assert victim_revision["state"] == "live", victim_revision["error"]

    guessed = f"slipway/{victim_deployment['id']}:{victim_revision['id']}"
    thief_repo, thief = make_repository(
        "thief",
        {
            "Dockerfile": (
                f'FROM {guessed}\nCMD ["/bin/busybox", "httpd", "-f", "-p", "8000", "-h", "/www"]\n'
            )
        },
    )
    platform.push(thief, INSTALLATION_ID, ZERO_SHA, thief_repo.head)
    thief_deployment, thief_revision = platform.settle(thief["full_name"], thief_repo.head)

    assert thief_revision["state"] == "failed"
    assert "victim's private page" not in platform.logs(thief_revision["id"])
    assert platform.request(thief_deployment["slug"]).status_code == 404
