"""The Docker engine's answers as kinds of error: the one place that reads the engine's words.

Slipway talks to the engine two ways: the Engine API (the `docker` SDK: replicas, networks,
volumes), whose refusals come as `docker.errors.APIError` with an HTTP status and the engine's
explanation, and the Docker CLI (builds, image inspection and tags, the default bridge), which
exits non-zero with the engine's answer on stderr. Both are read here, once, into a kind a caller
catches by name (`except NoSuchContainer`), as python-on-whales' `run` turns a failed command into
its `NoSuchImage` or `NoSuchContainer`; no other module matches message text or status codes.

Every kind is an EngineError, so a caller that catches EngineError (or SlipwayError) catches them
all, and an answer of no known kind is an EngineError itself. The message is always the engine's
own words, one line, for the user: never the request (an Engine API request carries env values
and files in its body).
"""

from __future__ import annotations

import functools
import re
from typing import Any, cast

import requests
from docker import APIClient
from docker.errors import APIError, DockerException

from builders.errors import EngineError

ENGINE_API_FAILURES: tuple[type[Exception], ...] = (DockerException, OSError)
"""What an Engine API call raises when it fails: the SDK's errors, and the transport's (requests'
errors are OSErrors), which the SDK lets through."""
CLI_PREFIXES = ("Error response from daemon: ", "Error: ")
"""The CLI's framing around the engine's answer."""


class NoSuchObject(EngineError):
    """The engine has no container, image, network or volume by that name (HTTP 404)."""


class NoSuchContainer(NoSuchObject):
    pass


class NoSuchImage(NoSuchObject):
    pass


class NoSuchNetwork(NoSuchObject):
    pass


class NoSuchVolume(NoSuchObject):
    pass


class NameTaken(EngineError):
    """Another container already has the name, or another network (HTTP 409)."""


class AlreadyRemoving(EngineError):
    """Another caller's removal of the container is under way: it is going."""


class ContainerNotRunning(EngineError):
    """The container exists but is stopped: it cannot be killed, nor its network joined."""


class SubnetTaken(EngineError):
    """The subnet asked for overlaps one the engine holds (another network's, or one still held
    for a network just removed)."""


class StartInterrupted(EngineError):
    """runc's process died while the engine started the container, with nothing wrong with the
    container: another start may succeed."""


class EngineUnreachable(EngineError):
    """The engine did not answer: dockerd is not running, its socket is not there or not ours to
    use, or it did not answer in time."""


TRANSIENT_START_FAILURES = (
    "cannot start a stopped process",
    "can't get final child's pid from pipe",
    "cannot start an already running container",
)
"""runc's process died while the engine started the container: each seen once in a full test
run (~150 replica starts, under load), with nothing wrong with the app. The third is runc's
state of a container of the same name just removed after its own start failed (a replica
retried on a new holder, seen twice in tests/integration/test_confinement.py's stopped-spare
test): the next start, of a new container, succeeds. A start that fails for the app's own
reason (a missing command) fails the same way each time and is reported so."""


def _any(*words: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(word) for word in words))


KINDS: tuple[tuple[type[EngineError], re.Pattern[str]], ...] = (
    (
        EngineUnreachable,
        _any(
            "cannot connect to the docker daemon",  # the CLI
            "error while fetching server api version",  # the SDK, when it first asks
        ),
    ),
    (AlreadyRemoving, _any("is already in progress")),
    (NoSuchContainer, _any("no such container")),
    (NoSuchImage, _any("no such image")),
    (NoSuchVolume, _any("no such volume")),
    (NoSuchNetwork, re.compile(r"\bnetwork \S+ not found|no such network")),
    (ContainerNotRunning, _any("non running container", "is not running")),
    (NameTaken, re.compile(r"is already in use|\bnetwork with name \S+ already exists")),
    (SubnetTaken, _any("overlaps")),
    (StartInterrupted, _any(*TRANSIENT_START_FAILURES)),
)
"""The engine's words for each kind, in lower case, tried in order: the first kind found wins.
(The names the engine quotes are Slipway's own, `slipway-…`, and ids: none says these words.)"""


def engine_error(reason: str, status: int | None = None) -> EngineError:
    """The kind of the engine's answer `reason` (its own words, one line), with that message;
    `status`, the Engine API's HTTP status, decides when the words do not (a 404 of unknown
    words is still a missing object)."""
    text = reason.lower()
    for kind, words in KINDS:
        if words.search(text):
            return kind(reason)
    if status == 404:
        return NoSuchObject(reason)
    return EngineError(reason)


def engine_api_error(exc: Exception) -> EngineError:
    """An Engine API call's failure (`ENGINE_API_FAILURES`) as its kind."""
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return EngineUnreachable(f"the Docker engine did not answer ({_one_line(str(exc))})")
    if isinstance(exc, APIError):
        return engine_error(
            _one_line(str(exc.explanation or "")) or f"HTTP {exc.status_code}", exc.status_code
        )
    return engine_error(_one_line(str(exc)) or type(exc).__name__)


def cli_error(stderr: str) -> EngineError:
    """A Docker CLI command's failure, from what it wrote on stderr, as its kind."""
    line = _one_line(stderr)
    for prefix in CLI_PREFIXES:
        line = line.removeprefix(prefix)
    return engine_error(line or "the Docker CLI failed without saying why")


def failed(what: str, exc: EngineError) -> EngineError:
    """The same kind of error, its message saying what Slipway was doing first: "the Docker
    engine did not remove x: No such container: x"."""
    return type(exc)(f"{what}: {exc}")


def typed_api(api: APIClient) -> APIClient:
    """The SDK's low-level client, each of whose calls raises only the kinds of EngineError:
    the Engine API's counterpart of python-on-whales' `run`. (Typed as the client it wraps, so
    every call keeps the SDK's signature; a stream a call returns raises the SDK's own errors
    while it is read: its reader catches `ENGINE_API_FAILURES`.)"""
    return cast(APIClient, _TypedAPI(api))


class _TypedAPI:
    def __init__(self, api: APIClient) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except ENGINE_API_FAILURES as exc:
                raise engine_api_error(exc) from exc

        return call


def _one_line(text: str) -> str:
    """The last line that says something: an answer of several lines ends with its cause."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
