"""Check runs: create, update, get, list for a ref, and rerequest; one check suite per commit."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .core import Repo
from .git import SHA, branches_at, rev_parse
from .http import (
    JSON,
    REPO,
    Body,
    HttpError,
    Request,
    Response,
    RouteSpec,
    is_http_url,
    json_response,
)
from .payloads import GITHUB_WEB, iso_time, node_id
from .pulls import PullsMixin

CHECK_RUN_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_RUN_CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
)
ANNOTATION_LEVELS = ("notice", "warning", "failure")
MAX_OUTPUT_TEXT = 65535
MAX_ANNOTATIONS = 50
"""Per request: GitHub appends each request's annotations to the run's."""
MAX_ANNOTATION_DETAIL = 64 * 1024
"""An annotation's message and raw_details: at most 64 KB each."""
_SUITE_CONCLUSION_ORDER = (
    "action_required",
    "cancelled",
    "timed_out",
    "failure",
    "stale",
    "success",
    "neutral",
    "skipped",
)
"""A suite's conclusion is the first of these any of its latest runs has."""


@dataclass
class CheckRun:
    """A check run as the fake stores it; ``history`` has one snapshot per create/update."""

    id: int
    repository: str
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: str | None
    completed_at: str | None
    check_suite_id: int
    external_id: str | None = None
    details_url: str | None = None
    output: dict[str, str | None] = field(
        default_factory=lambda: {"title": None, "summary": None, "text": None}
    )
    annotations: list[JSON] = field(default_factory=list)
    actions: list[JSON] = field(default_factory=list)
    history: list[JSON] = field(default_factory=list)
    """``{"status", "conclusion", "output", "details_url", ...}`` after every request, in order."""
    rerequests: int = 0
    """How many times ``POST .../check-runs/{id}/rerequest`` accepted this run."""

    def snapshot(self) -> JSON:
        return {
            "name": self.name,
            "status": self.status,
            "conclusion": self.conclusion,
            "output": dict(self.output),
            "details_url": self.details_url,
            "external_id": self.external_id,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


@dataclass
class _CheckSuite:
    id: int
    created_at: str
    updated_at: str


class ChecksMixin(PullsMixin):
    _check_runs: dict[int, CheckRun]
    _check_suites: dict[tuple[str, str], _CheckSuite]

    on_check_run_update: Callable[[CheckRun], None] | None
    """Called with a copy of a check run each time an update of it is stored, before the answer
    goes back: a test acts at that moment (the worker dying once a run says success)."""

    def _init_checks(self) -> None:
        self._check_runs = {}
        self._check_suites = {}
        self.on_check_run_update = None

    # ------------------------------------------------------------------ test helpers

    def check_runs(self, full_name: str) -> list[CheckRun]:
        """Copies of the repository's check runs, in creation order."""
        key = full_name.lower()
        with self._lock:
            runs = sorted(
                (run for run in self._check_runs.values() if run.repository.lower() == key),
                key=lambda run: run.id,
            )
            return copy.deepcopy(runs)

    def check_run_json(self, full_name: str, check_run_id: int) -> JSON:
        """A stored check run as ``check_run`` webhook deliveries carry it.

        That is the REST object with the whole ``check_suite`` (``head_sha``, ``head_branch``,
        ``status``, ``conclusion``, ``before``/``after``, ``pull_requests``, ``app``...).
        ``pull_requests`` (in both) lists the open pull requests of the same repository whose
        head is the run's commit; like GitHub, the fake leaves pull requests from forks out, and
        their suites have ``head_branch`` null.
        """
        repo = self._repo(full_name)
        with self._lock:
            run = self._check_runs.get(check_run_id)
            if run is None or run.repository.lower() != repo.key:
                raise KeyError(f"{repo.full_name} has no check run {check_run_id}")
            run = copy.deepcopy(run)
        answer = self._check_run_json(run)
        answer["app"] = self._webhook_app_json()
        answer["check_suite"] = self._check_suite_json(repo, run.head_sha)
        return answer

    # ------------------------------------------------------------------ JSON

    def _check_run_json(self, run: CheckRun) -> JSON:
        api = f"{self.url}/repos/{run.repository}/check-runs/{run.id}"
        with self._lock:
            repo = self._repos.get(run.repository.lower())
        return {
            "id": run.id,
            "head_sha": run.head_sha,
            "node_id": node_id("CheckRun", run.id),
            "external_id": run.external_id or "",
            "url": api,
            "html_url": f"{GITHUB_WEB}/{run.repository}/runs/{run.id}",
            "details_url": run.details_url or f"{GITHUB_WEB}/apps/{self.app_slug}",
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "output": {
                "title": run.output.get("title"),
                "summary": run.output.get("summary"),
                "text": run.output.get("text"),
                "annotations_count": len(run.annotations),
                "annotations_url": f"{api}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": run.check_suite_id},
            "app": self._app_json(),
            "pull_requests": [] if repo is None else self._open_pulls_with_head(repo, run.head_sha),
        }

    def _webhook_app_json(self) -> JSON:
        """The App as deliveries show it: without the REST-only fields."""
        app = self._app_json()
        for rest_only in ("client_id", "installations_count"):
            app.pop(rest_only, None)
        return app

    def _check_suite_json(self, repo: Repo, sha: str) -> JSON:
        pulls = self._open_pulls_with_head(repo, sha)
        with self._lock:
            suite = copy.deepcopy(self._check_suites[(repo.key, sha)])
            latest: dict[str, CheckRun] = {}
            for run in self._check_runs.values():
                if (
                    run.repository.lower() == repo.key
                    and run.head_sha == sha
                    and (run.name not in latest or run.id > latest[run.name].id)
                ):
                    latest[run.name] = run
            runs = list(latest.values())
        if not runs:
            status, conclusion = "queued", None
        elif any(run.status != "completed" for run in runs):
            in_progress = any(run.status == "in_progress" for run in runs)
            status, conclusion = ("in_progress" if in_progress else "queued"), None
        else:
            found = {run.conclusion for run in runs}
            status = "completed"
            conclusion = next((c for c in _SUITE_CONCLUSION_ORDER if c in found), None)
        if pulls:
            branch: str | None = pulls[0]["head"]["ref"]
        elif self._open_pulls_at(repo, sha, forks=True):
            branch = None  # pushed to a fork: GitHub knows no branch of this repository
        else:
            branches = branches_at(repo.git_dir, sha)
            branch = (
                repo.default_branch
                if repo.default_branch in branches
                else (branches[0] if branches else None)
            )
        return {
            "id": suite.id,
            "node_id": node_id("CheckSuite", suite.id),
            "head_branch": branch,
            "head_sha": sha,
            "status": status,
            "conclusion": conclusion,
            "url": f"{self.url}/repos/{repo.full_name}/check-suites/{suite.id}",
            "before": rev_parse(repo.git_dir, f"{sha}^"),
            "after": sha,
            "pull_requests": pulls,
            "app": self._webhook_app_json(),
            "created_at": suite.created_at,
            "updated_at": suite.updated_at,
        }

    # ------------------------------------------------------------------ validation

    def _check_run_fields(self, body: Body, run: CheckRun | None) -> JSON:
        """Validate the fields create and update share; returns the changes to apply."""
        changes: JSON = {}
        if "name" in body.data or run is None:
            name = body.string("name", required=run is None, non_empty=True)
            if name is not None:
                changes["name"] = name
        details_url = body.url("details_url")
        if details_url is not None:
            changes["details_url"] = details_url
        external_id = body.string("external_id")
        if external_id is not None:
            changes["external_id"] = external_id
        status = body.string("status", choices=CHECK_RUN_STATUSES)
        conclusion = body.string("conclusion", choices=CHECK_RUN_CONCLUSIONS)
        if conclusion == "stale":
            body.fail("conclusion", "only GitHub can set a check run's conclusion to stale")
            conclusion = None
        started_at = body.timestamp("started_at")
        completed_at = body.timestamp("completed_at")
        if started_at is not None:
            changes["started_at"] = started_at
        if conclusion is not None:
            status = "completed"  # GitHub completes a run that is given a conclusion
            changes["conclusion"] = conclusion
        if status is not None:
            changes["status"] = status
        completing = status == "completed" or "completed_at" in body.data
        known_conclusion = run.conclusion if run is not None else None
        if completing and "conclusion" not in body.data and known_conclusion is None:
            body.fail(
                "conclusion",
                "conclusion is required when status is completed or completed_at is given",
                "missing_field",
            )
        if completed_at is not None:
            changes["completed_at"] = completed_at
        if "output" in body.data:
            output = body.obj("output")
            if output is not None:
                changes["output"] = self._check_run_output(body, output)
        actions = body.array("actions")
        if actions is not None:
            changes["actions"] = self._check_run_actions(body, actions)
        return changes

    def _check_run_output(self, body: Body, output: JSON) -> JSON:
        title = body.string("title", required=True, data=output, label="output.title")
        summary = body.string(
            "summary",
            required=True,
            max_length=MAX_OUTPUT_TEXT,
            data=output,
            label="output.summary",
        )
        text = body.string(
            "text", nullable=True, max_length=MAX_OUTPUT_TEXT, data=output, label="output.text"
        )
        annotations = body.array("annotations", data=output) or []
        if len(annotations) > MAX_ANNOTATIONS:
            body.fail("output.annotations", f"at most {MAX_ANNOTATIONS} annotations per request")
        for index, annotation in enumerate(annotations):
            label = f"output.annotations[{index}]"
            if not isinstance(annotation, dict):
                body.fail(label, f"{label} must be an object")
                continue
            body.string(
                "path", required=True, non_empty=True, data=annotation, label=f"{label}.path"
            )
            self._annotation_lines(body, annotation, label)
            body.string(
                "annotation_level",
                required=True,
                choices=ANNOTATION_LEVELS,
                data=annotation,
                label=f"{label}.annotation_level",
            )
            body.string(
                "message",
                required=True,
                max_length=MAX_ANNOTATION_DETAIL,
                data=annotation,
                label=f"{label}.message",
            )
            body.string("title", max_length=255, data=annotation, label=f"{label}.title")
            body.string(
                "raw_details",
                max_length=MAX_ANNOTATION_DETAIL,
                data=annotation,
                label=f"{label}.raw_details",
            )
        for index, image in enumerate(body.array("images", data=output) or []):
            label = f"output.images[{index}]"
            if not isinstance(image, dict):
                body.fail(label, f"{label} must be an object")
                continue
            body.string("alt", required=True, data=image, label=f"{label}.alt")
            url = body.string("image_url", required=True, data=image, label=f"{label}.image_url")
            if url is not None and not is_http_url(url):
                body.fail(f"{label}.image_url", f"{label}.image_url must be an http(s) URL")
        return {"title": title, "summary": summary, "text": text, "annotations": annotations}

    @staticmethod
    def _annotation_lines(body: Body, annotation: JSON, label: str) -> None:
        """Lines start at 1 and end at or after the start; columns only within one line."""
        start = body.integer("start_line", data=annotation, label=f"{label}.start_line")
        end = body.integer("end_line", data=annotation, label=f"{label}.end_line")
        if start is not None and start < 1:
            body.fail(
                f"{label}.start_line", f"{label}.start_line must be 1 or more (lines start at 1)"
            )
        if start is not None and end is not None and end < start:
            body.fail(f"{label}.end_line", f"{label}.end_line must not be before start_line")
        for column in ("start_column", "end_column"):
            if column not in annotation:
                continue
            value = body.integer(column, data=annotation, label=f"{label}.{column}")
            if value is not None and value < 1:
                body.fail(f"{label}.{column}", f"{label}.{column} must be 1 or more")
            if start is not None and end is not None and start != end:
                body.fail(
                    f"{label}.{column}",
                    f"{label}.{column} is only allowed when start_line and end_line are equal",
                )

    def _check_run_actions(self, body: Body, actions: list[Any]) -> list[JSON]:
        if len(actions) > 3:
            body.fail("actions", "a check run can have at most 3 actions")
        for index, action in enumerate(actions):
            label = f"actions[{index}]"
            if not isinstance(action, dict):
                body.fail(label, f"{label} must be an object")
                continue
            body.string("label", required=True, max_length=20, data=action, label=f"{label}.label")
            body.string(
                "description",
                required=True,
                max_length=40,
                data=action,
                label=f"{label}.description",
            )
            body.string(
                "identifier",
                required=True,
                max_length=20,
                data=action,
                label=f"{label}.identifier",
            )
        return [a for a in actions if isinstance(a, dict)]

    @staticmethod
    def _apply_check_run_changes(run: CheckRun, changes: JSON) -> None:
        now = iso_time()
        for name in ("name", "details_url", "external_id", "started_at"):
            if name in changes:
                setattr(run, name, changes[name])
        if "output" in changes:
            output = changes["output"]
            run.output = {key: output[key] for key in ("title", "summary", "text")}
            run.annotations.extend(copy.deepcopy(output["annotations"]))
        if "actions" in changes:
            run.actions = copy.deepcopy(changes["actions"])
        if "status" in changes:
            run.status = changes["status"]
            if run.status != "completed":
                run.conclusion = None
                run.completed_at = None
        if "conclusion" in changes:
            run.conclusion = changes["conclusion"]
        if run.status == "completed":
            run.completed_at = changes.get("completed_at") or run.completed_at or now
        if run.started_at is None:
            run.started_at = now
        run.history.append(run.snapshot())

    def _touch_suite(self, repo: Repo, sha: str) -> _CheckSuite:
        """The commit's check suite (made on first use), marked as just changed."""
        now = iso_time()
        suite = self._check_suites.get((repo.key, sha))
        if suite is None:
            suite = _CheckSuite(self._next_id("check_suite"), now, now)
            self._check_suites[(repo.key, sha)] = suite
        suite.updated_at = now
        return suite

    # ------------------------------------------------------------------ routes

    def _checks_routes(self) -> list[RouteSpec]:
        return [
            ("POST", REPO + r"/check-runs", self._create_check_run),
            ("GET", REPO + r"/check-runs/(?P<check_run_id>\d+)", self._get_check_run),
            ("PATCH", REPO + r"/check-runs/(?P<check_run_id>\d+)", self._update_check_run),
            (
                "POST",
                REPO + r"/check-runs/(?P<check_run_id>\d+)/rerequest",
                self._rerequest_check_run,
            ),
            ("GET", REPO + r"/commits/(?P<ref>.+)/check-runs", self._list_check_runs),
            (
                "GET",
                REPO + r"/check-runs/(?P<check_run_id>\d+)/annotations",
                self._list_annotations,
            ),
        ]

    def _create_check_run(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "checks", "write")
        body = Body(request.json_object(), "CheckRun")
        head_sha = body.string("head_sha", required=True, non_empty=True)
        changes = self._check_run_fields(body, None)
        if head_sha:
            if not SHA.fullmatch(head_sha.lower()):
                body.fail(
                    "head_sha", f"head_sha must be a 40-character commit SHA, not {head_sha!r}"
                )
            elif rev_parse(repo.git_dir, head_sha.lower()) != head_sha.lower():
                body.fail("head_sha", f"No commit found for SHA: {head_sha}")
        body.check()
        assert head_sha is not None
        sha = head_sha.lower()
        with self._lock:
            suite = self._touch_suite(repo, sha)
            run = CheckRun(
                id=self._next_id("check_run"),
                repository=repo.full_name,
                name=str(changes["name"]),
                head_sha=sha,
                status="queued",
                conclusion=None,
                started_at=None,
                completed_at=None,
                check_suite_id=suite.id,
            )
            self._apply_check_run_changes(run, changes)
            self._check_runs[run.id] = run
            run = copy.deepcopy(run)
        return json_response(201, self._check_run_json(run))

    def _find_check_run(self, repo: Repo, params: Mapping[str, str]) -> CheckRun:
        run = self._check_runs.get(int(params["check_run_id"]))
        if run is None or run.repository.lower() != repo.key:
            raise HttpError(
                404,
                "Not Found",
                detail=f"no check run {params['check_run_id']} in {repo.full_name}",
            )
        return run

    def _get_check_run(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "checks", "read")
        with self._lock:
            run = copy.deepcopy(self._find_check_run(repo, params))
        return json_response(200, self._check_run_json(run))

    def _update_check_run(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "checks", "write")
        with self._lock:
            run = self._find_check_run(repo, params)
            body = Body(request.json_object(), "CheckRun")
            changes = self._check_run_fields(body, run)
            body.check()
            self._apply_check_run_changes(run, changes)
            self._touch_suite(repo, run.head_sha)
            run = copy.deepcopy(run)
        if self.on_check_run_update is not None:
            self.on_check_run_update(copy.deepcopy(run))
        return json_response(200, self._check_run_json(run))

    def _list_annotations(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "checks", "read")
        with self._lock:
            run = self._find_check_run(repo, params)
            found = [
                {
                    "path": a["path"],
                    "start_line": a["start_line"],
                    "end_line": a["end_line"],
                    "start_column": a.get("start_column"),
                    "end_column": a.get("end_column"),
                    "annotation_level": a["annotation_level"],
                    "title": a.get("title"),
                    "message": a["message"],
                    "raw_details": a.get("raw_details"),
                    "blob_href": f"{GITHUB_WEB}/{run.repository}/blob/{run.head_sha}/{a['path']}",
                }
                for a in copy.deepcopy(run.annotations)
            ]
        page, headers = self._paginate(request, found)
        return json_response(200, page, headers)

    def _rerequest_check_run(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "checks", "write")
        with self._lock:
            run = self._find_check_run(repo, params)
            if run.status != "completed":
                raise HttpError(
                    422,
                    "This check run is not rerequestable",
                    detail=f"check run {run.id} is {run.status}; only a completed run can be "
                    "rerequested",
                )
            run.rerequests += 1  # GitHub would now deliver check_run.rerequested to the App
        return json_response(201, {})

    def _list_check_runs(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "checks", "read")
        sha = self._resolve(repo, params["ref"])
        if sha is None:
            raise HttpError(422, f"No commit found for SHA: {params['ref']}")
        query = request.query
        filter_ = query.get("filter", "latest")
        if filter_ not in ("latest", "all"):
            raise HttpError(422, f"filter must be latest or all, not {filter_!r}")
        status = query.get("status")
        if status is not None and status not in ("queued", "in_progress", "completed"):
            raise HttpError(422, f"status must be queued, in_progress or completed, not {status!r}")
        with self._lock:
            runs = [
                run
                for run in self._check_runs.values()
                if run.repository.lower() == repo.key and run.head_sha == sha
            ]
            if "check_name" in query:
                runs = [run for run in runs if run.name == query["check_name"]]
            if status is not None:
                runs = [run for run in runs if run.status == status]
            if "app_id" in query and query["app_id"] != str(self.app_id):
                runs = []
            if filter_ == "latest":
                newest: dict[str, CheckRun] = {}
                for run in runs:
                    if run.name not in newest or run.id > newest[run.name].id:
                        newest[run.name] = run
                runs = list(newest.values())
            runs.sort(key=lambda run: run.id, reverse=True)
            runs = copy.deepcopy(runs)
        found = [self._check_run_json(run) for run in runs]
        page, headers = self._paginate(request, found)
        return json_response(200, {"total_count": len(found), "check_runs": page}, headers)
