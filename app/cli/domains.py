"""`slipway domains ...`: a deployment's custom domains (docs/domains.md)."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import Parameter

from app.cli.common import Json, Url, connect, examples, noun
from app.cli.output import Column, Output

COLUMNS = [
    Column("domain"),
    Column("state"),
    Column("url"),
    Column("reason"),
]

app = noun(
    "domains",
    "A deployment's custom domains: routed once their DNS points here.",
    "slipway domains add web app.example.com",
    "slipway domains list web",
    "slipway domains remove web app.example.com",
)

Deployment = Annotated[
    str, Parameter(help="The deployment: its name (as `deployments list` shows) or its id.")
]
Name = Annotated[str, Parameter(help="The domain, such as app.example.com.")]


def _records(output: Output, domain: dict[str, Any]) -> None:
    if not domain["records"]:
        return
    output.note(f"{domain['domain']} is {domain['state']}: create one of these DNS records")
    for record in domain["records"]:
        output.note(f"  {record['name']}  {record['type']}  {record['value']}")


@app.command(
    help_epilogue=examples(
        "slipway domains add web app.example.com", "slipway domains add web example.com"
    )
)
def add(deployment: Deployment, name: Name, /, *, json: Json = False, url: Url = None) -> int:
    """Add a domain; it is routed (and gets its certificate) once its DNS points here."""
    output = Output(json=json)
    with connect(url) as client:
        added = client.add_domain(client.deployment(deployment)["id"], name)
    if json:
        output.data(added)
        return 0
    output.say(f"{added['domain']}: {added['state']}")
    _records(output, added)
    if added.get("note"):
        output.note(added["note"])
    return 0


@app.command(
    name="list",
    help_epilogue=examples("slipway domains list web", "slipway domains list web --json"),
)
def list_(deployment: Deployment, /, *, json: Json = False, url: Url = None) -> int:
    """List the deployment's domains, their state, and what a pending one needs."""
    output = Output(json=json)
    with connect(url) as client:
        found = client.domains(client.deployment(deployment)["id"])
    output.table(found, COLUMNS)
    if not json:
        for domain in found:
            _records(output, domain)
        for domain in found:
            if domain.get("note"):
                output.note(domain["note"])
    return 0


@app.command(help_epilogue=examples("slipway domains remove web app.example.com"))
def remove(deployment: Deployment, name: Name, /, *, json: Json = False, url: Url = None) -> int:
    """Remove a domain: the router stops serving it at once."""
    output = Output(json=json)
    with connect(url) as client:
        client.remove_domain(client.deployment(deployment)["id"], name)
    if json:
        output.data({"domain": name, "removed": True})
    else:
        output.note(f"{name} removed")
    return 0
