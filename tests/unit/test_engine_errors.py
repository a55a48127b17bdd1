"""The engine's answers read in one place: each known answer is its kind of EngineError, an
unknown one the plain EngineError, and the message is the engine's own words for the user.

The answers are the engine's own (Docker 20.10 through the Engine API and the Docker CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import requests
from docker import APIClient
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from builders.docker_cli import run_docker
from builders.engine_errors import (
    AlreadyRemoving,
    ContainerNotRunning,
    EngineUnreachable,
    NameTaken,
    NoSuchContainer,
    NoSuchImage,
    NoSuchNetwork,
    NoSuchObject,
    NoSuchVolume,
    StartInterrupted,
    SubnetTaken,
    cli_error,
    engine_api_error,
    failed,
    typed_api,
)
from builders.errors import BuildError, EngineError
from builders.images import BuildKitBuilder
from manifests.errors import SlipwayError

REQUEST = "http+docker://localhost/v1.41/containers/create?name=slipway-shop-r1-x"


def refusal(status: int, explanation: str | None) -> APIError:
    """An Engine API refusal as the SDK raises it (NotFound for a 404, as it does)."""
    response = requests.Response()
    response.status_code = status
    kind = NotFound if status == 404 else APIError
    return kind(f"{status} Client Error for {REQUEST}", response=response, explanation=explanation)


ENGINE_API_ANSWERS: list[tuple[int, str, type[EngineError]]] = [
    (404, "No such container: slipway-shop-r1-x", NoSuchContainer),
    (404, "no such image: slipway/a:b: No such image: slipway/a:b", NoSuchImage),
    (404, "network slipway-net-dep_1 not found", NoSuchNetwork),
    (404, "get slipway-dep_1-data: no such volume", NoSuchVolume),
    (
        409,
        'Conflict. The container name "/slipway-shop-r1-x" is already in use by container '
        '"37f1165". You have to remove (or rename) that container to be able to reuse that name.',
        NameTaken,
    ),
    (
        409,
        'Error when allocating new name: Conflict. The container name "/slipway-x-holder" is '
        'already in use by container "37f1165". You have to remove (or rename) that container '
        "to be able to reuse that name.",
        NameTaken,
    ),
    (409, "network with name slipway-net-dep_1 already exists", NameTaken),
    (409, "removal of container 37f1165 is already in progress", AlreadyRemoving),
    (409, "cannot join network of a non running container: 37f1165", ContainerNotRunning),
    (
        409,
        "Cannot kill container: slipway-x: Container 37f1165 is not running",
        ContainerNotRunning,
    ),
    (403, "Pool overlaps with other one on this address space", SubnetTaken),
    (
        403,
        "invalid pool request: Pool overlaps with other one on this address space",
        SubnetTaken,
    ),
    (
        500,
        "failed to create task for container: failed to create shim task: OCI runtime create "
        "failed: runc create failed: cannot start a stopped process: unknown",
        StartInterrupted,
    ),
    (
        500,
        "OCI runtime start failed: can't get final child's PID from pipe: EOF: unknown",
        StartInterrupted,
    ),
    (
        500,
        "OCI runtime start failed: cannot start an already running container: unknown",
        StartInterrupted,
    ),
]


@pytest.mark.parametrize(("status", "words", "kind"), ENGINE_API_ANSWERS)
def test_each_engine_api_answer_is_its_kind_with_the_engines_words(
    status: int, words: str, kind: type[EngineError]
) -> None:
    error = engine_api_error(refusal(status, words))
    assert type(error) is kind
    assert str(error) == words
    assert isinstance(error, EngineError) and isinstance(error, SlipwayError)


def test_the_sdks_own_image_not_found_is_a_missing_image() -> None:
    response = requests.Response()
    response.status_code = 404
    raised = ImageNotFound("404", response=response, explanation="No such image: slipway/a:b")
    assert type(engine_api_error(raised)) is NoSuchImage


def test_an_unknown_answer_is_the_plain_engine_error_with_the_engines_words() -> None:
    words = (
        "failed to create shim task: OCI runtime create failed: runc create failed: unable to "
        'start container process: exec: "/app/serve": stat /app/serve: no such file or directory'
    )
    error = engine_api_error(refusal(400, words))
    assert type(error) is EngineError
    assert str(error) == words


def test_a_404_of_unknown_words_is_still_a_missing_object() -> None:
    error = engine_api_error(refusal(404, "page not found"))
    assert type(error) is NoSuchObject and str(error) == "page not found"


def test_the_message_is_the_engines_last_line_never_the_request() -> None:
    error = engine_api_error(refusal(500, "starting container\nfailed: device or resource busy"))
    assert str(error) == "failed: device or resource busy"
    assert "http+docker" not in str(error)
    assert str(engine_api_error(refusal(502, None))) == "HTTP 502"


@pytest.mark.parametrize(
    "raised",
    [
        requests.exceptions.ConnectionError(
            "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
        ),
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=60)"),
        DockerException(
            "Error while fetching server API version: ('Connection aborted.', "
            "FileNotFoundError(2, 'No such file or directory'))"
        ),
    ],
)
def test_an_engine_that_does_not_answer_is_unreachable(raised: Exception) -> None:
    error = engine_api_error(raised)
    assert type(error) is EngineUnreachable
    assert "No such file or directory" in str(error) or "timed out" in str(error)


CLI_ANSWERS: list[tuple[str, str, type[EngineError]]] = [
    (
        "Error response from daemon: no such image: slipway/a:b: No such image: slipway/a:b\n",
        "no such image: slipway/a:b: No such image: slipway/a:b",
        NoSuchImage,
    ),
    (
        "Error response from daemon: No such image: slipway/a:b\n",
        "No such image: slipway/a:b",
        NoSuchImage,
    ),
    (
        "Error response from daemon: network bridge not found\n",
        "network bridge not found",
        NoSuchNetwork,
    ),
    (
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
        "daemon running?\n",
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
        "daemon running?",
        EngineUnreachable,
    ),
    (
        "#5 [2/2] COPY binary /\n#5 ERROR: failed to compute cache key: not found\n"
        "ERROR: failed to solve: failed to compute cache key: not found\n",
        "ERROR: failed to solve: failed to compute cache key: not found",
        EngineError,
    ),
    ("", "the Docker CLI failed without saying why", EngineError),
]


@pytest.mark.parametrize(("stderr", "message", "kind"), CLI_ANSWERS)
def test_each_cli_answer_is_its_kind_with_the_engines_words(
    stderr: str, message: str, kind: type[EngineError]
) -> None:
    error = cli_error(stderr)
    assert type(error) is kind
    assert str(error) == message


def test_what_slipway_was_doing_is_said_first_and_the_kind_is_kept() -> None:
    error = failed("the Docker engine did not remove x", NoSuchContainer("No such container: x"))
    assert type(error) is NoSuchContainer
    assert str(error) == "the Docker engine did not remove x: No such container: x"


class Client:
    """A stand-in for the SDK's client: one call refused, one answered, one attribute."""

    base_url = "http+docker://localhost"

    def inspect_container(self, name: str) -> dict[str, Any]:
        raise refusal(404, f"No such container: {name}")

    def version(self) -> dict[str, str]:
        return {"ApiVersion": "1.41"}


def test_every_call_through_the_typed_client_raises_only_kinds_of_engine_error() -> None:
    api = typed_api(cast(APIClient, Client()))
    with pytest.raises(NoSuchContainer, match="No such container: slipway-x"):
        api.inspect_container("slipway-x")
    assert api.version() == {"ApiVersion": "1.41"}
    assert api.base_url == "http+docker://localhost"


def fake_cli(tmp_path: Path, script: str) -> str:
    """A stand-in Docker CLI running `script`; it answers the BuildKit probe as buildx does."""
    path = tmp_path / "docker"
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo 28.2.2; exit 0; fi\n'
        'if [ "$1 $2" = "buildx version" ]; then exit 0; fi\n' + script
    )
    path.chmod(0o755)
    return str(path)


def test_a_cli_command_gives_its_output_or_its_failure_typed(tmp_path: Path) -> None:
    answering = fake_cli(tmp_path, 'echo "[]"\n')
    assert run_docker([answering, "network", "ls"], timeout=10) == "[]\n"
    refusing = fake_cli(
        tmp_path, 'echo "Error response from daemon: No such image: a:b" >&2\nexit 1\n'
    )
    with pytest.raises(NoSuchImage, match=r"^No such image: a:b$"):
        run_docker([refusing, "image", "inspect", "a:b"], timeout=10)
    with pytest.raises(EngineError, match="could not run"):
        run_docker([str(tmp_path / "missing")], timeout=10)


def test_a_cli_command_that_does_not_end_is_an_unreachable_engine(tmp_path: Path) -> None:
    hanging = fake_cli(tmp_path, "exec sleep 30\n")
    with pytest.raises(EngineUnreachable, match="no answer from the Docker engine within"):
        run_docker([hanging, "info"], timeout=0.2)


def test_an_image_the_engine_does_not_have_has_no_labels_and_is_not_retagged(
    tmp_path: Path,
) -> None:
    missing = fake_cli(
        tmp_path,
        'echo "Error response from daemon: No such image: slipway/dep_1:rev_1" >&2\nexit 1\n',
    )
    builder = BuildKitBuilder(missing)
    assert builder.labels("slipway/dep_1:rev_1") is None
    assert builder.retag("slipway/dep_1:rev_1", "slipway/dep_1:rev_2") is None


def test_any_other_refusal_of_an_image_is_a_build_error_with_the_engines_words(
    tmp_path: Path,
) -> None:
    refusing = fake_cli(
        tmp_path,
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. '
        'Is the docker daemon running?" >&2\nexit 1\n',
    )
    builder = BuildKitBuilder(refusing)
    with pytest.raises(BuildError, match="could not be inspected: Cannot connect to the Docker"):
        builder.labels("slipway/dep_1:rev_1")
