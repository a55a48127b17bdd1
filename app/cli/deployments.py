"""`slipway deployments ...`: list, look at, create, deploy, roll back and delete
deployments."""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from cyclopts import Parameter

from app.cli.addresses import RevisionAddress, address_of, resolve
from app.cli.client import ClientError
from app.cli.common import Json, Url, Wait, connect, examples, noun
from app.cli.output import Column, Output
from app.cli.progress import report

COLUMNS = [
    Column("slug", "name"),
    Column("type"),
    Column("repository"),
    Column("branch"),
    Column("status"),
    Column("url"),
]
FIELDS = [
    "slug",
    "id",
    "url",
    "repository",
    "branch",
    "environment",
    "type",
    "status",
    "deploy_on_push",
    "live_revision",
    "desired_replicas",
    "last_exit_reason",
    "last_backup",
    "created_at",
    "updated_at",
]
REPLICA_COLUMNS = [
    Column("id"),
    Column("revision_id", "revision"),
    Column("state"),
    Column("started_at", "started"),
    Column("exit_reason", "exit"),
]

app = noun(
    "deployments",
    "Deployments: a repository's branch, running at its own address.",
    "slipway deployments list",
    "slipway deployments create octo/web --branch staging --name web-staging",
    "slipway deployments deploy web-staging --wait",
    "slipway deployments rollback web-staging#3 --wait",
)

Deployment = Annotated[
    str, Parameter(help="The deployment: its name (as `deployments list` shows) or its id.")
]


@app.command(
    name="list",
    help_epilogue=examples("slipway deployments list", "slipway deployments list --json"),
)
def list_(*, json: Json = False, url: Url = None) -> int:
    """List the deployments, with their state and address."""
    with connect(url) as client:
        Output(json=json).table(client.deployments(), COLUMNS)
    return 0


@app.command(
    help_epilogue=examples("slipway deployments view web", "slipway deployments view web --json")
)
def view(deployment: Deployment, /, *, json: Json = False, url: Url = None) -> int:
    """Show a deployment: address, branch, state, live revision."""
    output = Output(json=json)
    with connect(url) as client:
        found = client.deployment(deployment)
        live = [r for r in client.revisions(found["id"]) if r["id"] == found["live_revision_id"]]
    found["live_revision"] = address_of(found["slug"], live[0]) if live else None
    if not json and found.get("last_backup"):
        backup = found["last_backup"]
        found["last_backup"] = f"{backup['state']} {backup['started_at']} ({backup['id']})" + (
            f": {backup['error']}" if backup.get("error") else ""
        )
    output.fields(found, FIELDS)
    if not json and found.get("replicas"):
        output.say("")
        output.table(found["replicas"], REPLICA_COLUMNS)
    return 0


@app.command(
    help_epilogue=examples(
        "slipway deployments create octo/web --branch staging --name web-staging",
        "slipway deployments create octo/web --branch main --name web \\\n      --type production",
        "slipway deployments create octo/api --branch release --name api \\\n"
        "      --no-deploy-on-push",
    )
)
def create(
    repository: Annotated[str, Parameter(help="The GitHub repository, as OWNER/NAME.")],
    /,
    *,
    branch: Annotated[str, Parameter(metavar="BRANCH", help="The branch it runs and follows.")],
    name: Annotated[
        str, Parameter(metavar="NAME", help="Its name and address: NAME.<BASE_DOMAIN>.")
    ],
    type: Annotated[
        Literal["development", "production"],
        Parameter(help="development: 1 CPU, 1 GB, one container; production: 2 CPU, 2 GB."),
    ] = "development",
    deploy_on_push: Annotated[
        bool,
        Parameter(
            negative="--no-deploy-on-push",
            help="Deploy each push to the branch (--no-deploy-on-push: only on request).",
        ),
    ] = True,
    json: Json = False,
    url: Url = None,
) -> int:
    """Create a deployment of a branch; its first revision starts."""
    output = Output(json=json)
    with connect(url) as client:
        accepted = client.create(
            {
                "repository": repository,
                "branch": branch,
                "name": name,
                "type": type,
                "deploy_on_push": deploy_on_push,
            }
        )
    if json:
        output.data(accepted)
    else:
        output.say(f"{accepted['message']}: {accepted['deployment']['url']}")
    return 0


@app.command(
    help_epilogue=examples(
        "slipway deployments deploy web --wait",
        "slipway deployments deploy web --ref v1.2.0",
        "slipway deployments deploy web --ref 3f2c1ab --wait",
    )
)
def deploy(
    deployment: Deployment,
    /,
    *,
    ref: Annotated[
        str | None,
        Parameter(
            metavar="REF",
            show_default=False,
            help="A branch, tag or commit. Default: the head of the deployment's branch.",
        ),
    ] = None,
    wait: Wait = False,
    json: Json = False,
    url: Url = None,
) -> int:
    """Deploy a branch, tag or commit now, as a new revision."""
    output = Output(json=json)
    with connect(url) as client:
        found = client.deployment(deployment)
        return report(client, client.deploy(found["id"], ref), output, wait=wait)


@app.command(
    help_epilogue=examples(
        "slipway deployments rollback web#3 --wait",
        "slipway revisions list web   # the REVISION column is what rollback takes",
    )
)
def rollback(
    revision: Annotated[
        str,
        Parameter(
            help="The revision to run again, as DEPLOYMENT#NUMBER (e.g. web#3, as `revisions "
            "list` shows it) or its id."
        ),
    ],
    /,
    *,
    wait: Wait = False,
    json: Json = False,
    url: Url = None,
) -> int:
    """Run an earlier revision's image and env again (no build)."""
    output = Output(json=json)
    address = RevisionAddress.parse(revision, newest=False)
    with connect(url) as client:
        found = resolve(client, address)
        accepted = client.rollback(found.deployment["id"], found.revision["number"])
        return report(client, accepted, output, wait=wait)


@app.command(
    help_epilogue=examples(
        "slipway deployments delete web-staging",
        "echo web-staging | slipway deployments delete web-staging",
        "slipway deployments delete web-staging --yes",
    )
)
def delete(
    deployment: Deployment,
    /,
    *,
    yes: Annotated[
        bool,
        Parameter(
            name=["--yes", "-y"],
            show_default=False,
            help="Do not ask to type the name (for scripts).",
        ),
    ] = False,
    json: Json = False,
    url: Url = None,
) -> int:
    """Delete a deployment, its route and its database. No undo.

    Unless --yes is given, the deployment's name must be typed (on a
    terminal) or given on stdin to confirm."""
    output = Output(json=json)
    with connect(url) as client:
        found = client.deployment(deployment)
        slug = found["slug"]
        if not yes:
            output.say(
                f"This deletes {slug}, its replicas, its route and its database. The "
                "database's last backup is kept for a while (`slipway db backups`), then it "
                "is gone for good."
            )
            typed = (
                input(f"Type {slug} to confirm: ") if sys.stdin.isatty() else sys.stdin.readline()
            )
            if typed.strip() != slug:
                raise ClientError("not deleted: the name typed did not match")
        deleted = client.delete(found["id"], slug)
    if json:
        output.data(deleted)
    else:
        output.say(
            f"{slug} is being deleted; {deleted['warning']}. Progress: {deleted['progress_url']}"
        )
    return 0
