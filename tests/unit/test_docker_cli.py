"""Which Docker CLI drives BuildKit: buildx where present, the engine's embedded BuildKit else."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.docker_cli import BuildMethod, _probe, find_docker_cli, run_docker, stream_command
from builders.errors import BuildError
from builders.images import _build_command
from manifests.recipes import BuildPlan


def _fake_docker(tmp_path: Path, name: str, version: str, has_buildx: bool) -> str:
    """A stand-in CLI answering `version` and `buildx version` like the real ones do."""
    script = tmp_path / name
    buildx_exit = 0 if has_buildx else 1
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo {version}; exit 0; fi\n'
        f'if [ "$1" = buildx ]; then exit {buildx_exit}; fi\n'
        "exit 2\n"
    )
    script.chmod(0o755)
    return str(script)


def test_a_client_with_buildx_builds_with_buildx(tmp_path: Path) -> None:
    cli = _probe(_fake_docker(tmp_path, "docker-desktop", "28.2.2", has_buildx=True))
    assert cli is not None and cli.method is BuildMethod.buildx
    assert "docker buildx build" in cli.describe()


def test_an_old_client_without_buildx_uses_the_engines_embedded_buildkit(tmp_path: Path) -> None:
    cli = _probe(_fake_docker(tmp_path, "docker-debian", "20.10.24+dfsg1", has_buildx=False))
    assert cli is not None and cli.method is BuildMethod.embedded
    assert "DOCKER_BUILDKIT=1" in cli.describe()


def test_a_new_client_without_buildx_cannot_build(tmp_path: Path) -> None:
    assert _probe(_fake_docker(tmp_path, "docker-new", "28.2.2", has_buildx=False)) is None
    with pytest.raises(BuildError, match="buildx plugin"):
        find_docker_cli(_fake_docker(tmp_path, "docker-new2", "28.2.2", has_buildx=False))


def test_build_commands_for_each_method(tmp_path: Path) -> None:
    plan = BuildPlan("dockerfile", tmp_path, tmp_path / "Dockerfile", "Dockerfile")
    buildx = _probe(_fake_docker(tmp_path, "bx", "28.0.0", has_buildx=True))
    embedded = _probe(_fake_docker(tmp_path, "emb", "20.10.24", has_buildx=False))
    assert buildx is not None and embedded is not None
    argv, env = _build_command(buildx, plan, "slipway/d:r", {"k": "v"}, tmp_path / "iid")
    assert argv[1:4] == ["buildx", "build", "--load"] and env == {}
    argv, env = _build_command(embedded, plan, "slipway/d:r", {"k": "v"}, tmp_path / "iid")
    assert argv[1] == "build" and env == {"DOCKER_BUILDKIT": "1"}
    assert "--label" in argv and "k=v" in argv and argv[-1] == str(tmp_path)


def test_a_stopped_command_is_killed_with_its_reason(tmp_path: Path) -> None:
    lines: list[str] = []
    marker = tmp_path / "finished"
    with pytest.raises(Exception, match="cancelled"):
        stream_command(
            ["/bin/sh", "-c", f"echo started; sleep 30; touch {marker}"],
            lines.append,
            should_stop=lambda: "cancelled" if lines else None,
            poll_seconds=0.05,
        )
    assert lines == ["started"]
    assert not marker.exists()


def test_no_platform_setting_is_in_a_docker_cli_childs_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Docker CLI runs beside tenant builds: the platform's secrets stay in its own process."""
    monkeypatch.setenv("SLIPWAY_LANGSMITH_API_KEY", "lsv2_pt_secret-in-the-platform")
    monkeypatch.setenv("SLIPWAY_GITHUB_WEBHOOK_SECRET", "hook-secret")
    seen = run_docker(["env"], timeout=10, env={"DOCKER_BUILDKIT": "1"})
    lines: list[str] = []
    stream_command(["env"], lines.append)
    for output in (seen, "\n".join(lines)):
        assert "SLIPWAY_" not in output and "secret-in-the-platform" not in output
    assert "DOCKER_BUILDKIT=1" in seen and "PATH=" in seen
