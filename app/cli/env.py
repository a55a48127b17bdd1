"""`slipway env ...` and `slipway secrets ...`: a deployment's environment variables.

Each change makes a new revision of the live commit, which goes live like a push. Secret
values are read from stdin or a prompt, never from the command line, where `ps` and shell
history see them; the API never returns them. `--previews` changes what a production
deployment's previews get over its env instead: no revision of production, and each preview
picks it up at its next revision.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

from cyclopts import Parameter

from app.cli.client import ClientError
from app.cli.common import Json, Url, UsageError, Wait, connect, examples, noun
from app.cli.output import Output
from app.cli.progress import report

Deployment = Annotated[
    str, Parameter(help="The deployment: its name (as `deployments list` shows) or its id.")
]
Previews = Annotated[
    bool,
    Parameter(
        name="--previews",
        show_default=False,
        help="Change what the production deployment's previews get over its env (each "
        "preview gets it at its next revision), not the deployment's own.",
    ),
]
PREVIEWS_SCOPE = "previews"

env = noun(
    "env",
    "A deployment's env variables (each change: a new revision).",
    "slipway env list web",
    "slipway env set web OPENAI_MODEL=gpt-4o LOG_LEVEL=debug",
    "slipway env unset web LOG_LEVEL",
    "slipway env set web --previews DATABASE_NAME=sandbox",
)
secrets = noun(
    "secrets",
    "A deployment's secrets: set from stdin, never shown again.",
    "slipway secrets set web OPENAI_API_KEY < key.txt",
    "slipway secrets list web",
    "slipway secrets set web --previews OPENAI_API_KEY < test-key.txt",
)


@env.command(
    name="list",
    help_epilogue=examples("slipway env list web", "slipway env list web --json"),
)
def list_env(deployment: Deployment, /, *, json: Json = False, url: Url = None) -> int:
    """List variables as KEY=VALUE lines; secrets show as <secret>. A production deployment's
    preview overrides follow, each line ending with `  # previews`."""
    output = Output(json=json)
    with connect(url) as client:
        found = client.env(client.deployment(deployment)["id"])
    if json:
        output.data(found)
        return 0
    scopes = [(found, "")]
    if found.get("previews"):
        scopes.append((found["previews"], f"  # {PREVIEWS_SCOPE}"))
    for scope, suffix in scopes:
        for key, value in scope["vars"].items():
            output.say(f"{key}={value}{suffix}")
        for name in scope["secrets"]:
            output.say(f"{name}=<secret>{suffix}")
    return 0


@env.command(
    name="set",
    usage="Usage: slipway env set [OPTIONS] DEPLOYMENT KEY=VALUE...",
    help_epilogue=examples(
        "slipway env set web OPENAI_MODEL=gpt-4o LOG_LEVEL=debug",
        "slipway env set web 'GREETING=hi there' --wait",
        "slipway env set web --previews PAYMENTS_URL=https://sandbox.example.com",
    ),
)
def set_env(
    deployment: Deployment,
    /,
    *pairs: Annotated[
        str,
        Parameter(
            metavar="KEY=VALUE",
            help="One or more KEY=VALUE; the value may be empty or hold spaces.",
        ),
    ],
    previews: Previews = False,
    wait: Wait = False,
    json: Json = False,
    url: Url = None,
) -> int:
    """Set variables (a secret of the same name becomes a plain variable)."""
    if not pairs:
        raise UsageError("env set: give at least one KEY=VALUE")
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"env set: {pair!r} is not KEY=VALUE")
        values[key] = value
    return _change(deployment, {"set": values}, previews=previews, wait=wait, json=json, url=url)


@env.command(
    name="unset",
    usage="Usage: slipway env unset [OPTIONS] DEPLOYMENT KEY...",
    help_epilogue=examples(
        "slipway env unset web LOG_LEVEL",
        "slipway env unset web OLD_KEY TLS_KEY",
        "slipway env unset web --previews PAYMENTS_URL",
    ),
)
def unset_env(
    deployment: Deployment,
    /,
    *keys: Annotated[str, Parameter(metavar="KEY", help="One or more variable or secret names.")],
    previews: Previews = False,
    wait: Wait = False,
    json: Json = False,
    url: Url = None,
) -> int:
    """Remove variables or secrets."""
    if not keys:
        raise UsageError("env unset: name at least one variable")
    return _change(
        deployment, {"unset": list(keys)}, previews=previews, wait=wait, json=json, url=url
    )


@secrets.command(
    name="set",
    help_epilogue=examples(
        "slipway secrets set web OPENAI_API_KEY < key.txt",
        "slipway secrets set web TLS_KEY < server.pem",
        "slipway secrets set web OPENAI_API_KEY   # asks for it, not echoed",
        "slipway secrets set web --previews OPENAI_API_KEY < test-key.txt",
    ),
)
def set_secret(
    deployment: Deployment,
    name: Annotated[str, Parameter(help="The secret's name (an env variable's name).")],
    /,
    *,
    previews: Previews = False,
    wait: Wait = False,
    json: Json = False,
    url: Url = None,
) -> int:
    """Set a secret, its value from stdin or a prompt.

    All of stdin is the value, line breaks kept (a PEM key); one trailing
    line break alone, as `echo` adds, is dropped."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value of {name}: ")
    else:
        value = sys.stdin.read()
        if value.endswith("\n") and value.count("\n") == 1:
            value = value[:-1]  # `echo $KEY |` adds one; a PEM's own line breaks stay
    if not value:
        raise ClientError(f"no value for {name} was given (on stdin or at the prompt)")
    return _change(
        deployment, {"secrets": {name: value}}, previews=previews, wait=wait, json=json, url=url
    )


@secrets.command(
    name="list",
    help_epilogue=examples("slipway secrets list web", "slipway secrets list web --json"),
)
def list_secrets(deployment: Deployment, /, *, json: Json = False, url: Url = None) -> int:
    """List the names of a deployment's secrets (values are never shown); its previews' own
    follow, each ending with `  # previews`."""
    output = Output(json=json)
    with connect(url) as client:
        found = client.env(client.deployment(deployment)["id"])
    names = found["secrets"]
    if json:
        output.data(names)
        return 0
    for name in names:
        output.say(name)
    for name in (found.get("previews") or {}).get("secrets", []):
        output.say(f"{name}  # {PREVIEWS_SCOPE}")
    return 0


def _change(
    deployment: str,
    change: dict[str, Any],
    *,
    previews: bool,
    wait: bool,
    json: bool,
    url: str | None,
) -> int:
    output = Output(json=json)
    if previews:
        change = {**change, "scope": PREVIEWS_SCOPE}
    with connect(url) as client:
        found = client.deployment(deployment)
        return report(client, client.change_env(found["id"], change), output, wait=wait)
