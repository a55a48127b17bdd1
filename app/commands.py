"""`slipway` subcommands for people using a platform: the API, from a terminal.

Tables (coloured on a terminal) for people, `--json` for scripts. Secret values are read
from stdin or a prompt, never from the command line, where `ps` and shell history see them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from app.client import (
    TOKEN_VARIABLE,
    ClientError,
    Login,
    SlipwayClient,
    config_path,
    find_login,
    save_login,
)

WAIT_POLL_SECONDS = 0.5
WAIT_MAX_SECONDS = 3 * 3600
PHASES = ("queued", "building", "deploying", "live")
COLOURS = {"live": "32", "failed": "31", "cancelled": "33", "superseded": "90", "active": "32"}


@dataclass
class Console:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    json: bool = False

    @property
    def tty(self) -> bool:
        return self.out.isatty()

    def colour(self, text: str) -> str:
        code = COLOURS.get(text)
        return f"\x1b[{code}m{text}\x1b[0m" if code and self.tty else text

    def emit(self, data: Any, columns: list[str] | None = None) -> None:
        if self.json or columns is None:
            print(json.dumps(data, indent=2, default=str), file=self.out)
            return
        rows = data if isinstance(data, list) else [data]
        table = [[_cell(row.get(c)) for c in columns] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in table)]) for i, c in enumerate(columns)]
        print(
            "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)),
            file=self.out,
        )
        for row in table:
            cells = [
                self.colour(v) + " " * (w - len(v)) if v in COLOURS else v.ljust(w)
                for v, w in zip(row, widths, strict=True)
            ]
            print("  ".join(cells).rstrip(), file=self.out)

    def say(self, text: str) -> None:
        print(text, file=self.out if not self.json else self.err)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
        parser.add_argument(
            "--url",
            help="the platform's API (default: from `slipway login`; a stored token is sent "
            "only to the URL it was stored for)",
        )
        parser.add_argument(
            "--token",
            help=f"an API token (default: from `slipway login`); prefer {TOKEN_VARIABLE} or "
            "`slipway login --with-token`: a command line is visible to every user of the "
            "machine",
        )
        return parser

    login = command("login", "store the API's URL and a token for the next commands")
    login.add_argument("login_url", metavar="URL")
    login.add_argument("--with-token", action="store_true", help="read the token from stdin")
    command("deployments", "list deployments")
    create = command("create", "create a deployment of a branch")
    create.add_argument("repository", help="owner/name")
    create.add_argument("--branch", required=True)
    create.add_argument("--name", required=True, help="its address: <name>.<BASE_DOMAIN>")
    create.add_argument("--type", choices=["development", "production"], default="development")
    create.add_argument("--no-deploy-on-push", action="store_true")
    revisions = command("revisions", "list a deployment's revisions")
    revisions.add_argument("deployment")
    logs = command("logs", "print a revision's build log")
    logs.add_argument("revision")
    logs.add_argument("--follow", "-f", action="store_true", help="until the revision ends")
    env = command("env", "show or change a deployment's env vars")
    env.add_argument("action", choices=["get", "set", "unset"])
    env.add_argument("deployment")
    env.add_argument("pairs", nargs="*", metavar="KEY=VALUE | KEY")
    secrets = command("secrets", "set a secret (value from stdin or a prompt)")
    secrets.add_argument("action", choices=["set"])
    secrets.add_argument("deployment")
    secrets.add_argument("name")
    deploy = command("deploy", "deploy a branch, tag or commit now")
    deploy.add_argument("deployment")
    deploy.add_argument("--ref", help="default: the head of the deployment's branch")
    deploy.add_argument("--wait", action="store_true", help="follow it until live or failed")
    rollback = command("rollback", "run an earlier revision's image and env again")
    rollback.add_argument("deployment")
    rollback.add_argument("revision", type=int, help="its number")
    rollback.add_argument("--wait", action="store_true")
    remove = command("delete", "delete a deployment and its database (no undo)")
    remove.add_argument("deployment")
    remove.add_argument("--yes", action="store_true", help="do not ask to type the name")
    token = command("token", "make, list or revoke API tokens")
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("token_name", nargs="?", metavar="NAME", help="for revoke")
    token.add_argument("--name", dest="new_name", help="for create")
    token.add_argument("--read-only", action="store_true")


COMMANDS = {
    "login",
    "deployments",
    "create",
    "revisions",
    "logs",
    "env",
    "secrets",
    "deploy",
    "rollback",
    "delete",
    "token",
}


def run_command(
    args: argparse.Namespace,
    *,
    console: Console | None = None,
    stdin: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    console = console or Console(json=args.json)
    stdin = stdin or sys.stdin
    try:
        if args.command == "login":
            return _login(args, console, stdin, prompt)
        client = SlipwayClient(find_login(args.url, args.token, config_path()))
        try:
            return HANDLERS[args.command](client, args, console, stdin, prompt)
        finally:
            client.close()
    except ClientError as exc:
        print(f"slipway: {exc}", file=console.err)
        return 1


def _login(
    args: argparse.Namespace, console: Console, stdin: TextIO, prompt: Callable[[str], str]
) -> int:
    token = args.token or (
        stdin.readline().strip() if args.with_token or not stdin.isatty() else prompt("Token: ")
    )
    login = Login(url=args.login_url.rstrip("/"), token=token.strip())
    client = SlipwayClient(login)
    try:
        client.deployments()  # proves the URL and the token before anything is stored
    finally:
        client.close()
    path = config_path()
    save_login(login, path)
    console.say(f"logged in to {login.url} (saved in {path})")
    return 0


Handler = Callable[[SlipwayClient, argparse.Namespace, Console, TextIO, Callable[[str], str]], int]

DEPLOYMENT_COLUMNS = ["slug", "type", "repository", "branch", "status", "url"]
REVISION_COLUMNS = ["number", "state", "commit", "build_method", "created_at", "error"]
TOKEN_COLUMNS = ["name", "read_only", "created_at", "last_used_at", "revoked_at"]


def _deployments(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    console.emit(client.deployments(), DEPLOYMENT_COLUMNS)
    return 0


def _create(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    accepted = client.create(
        {
            "repository": args.repository,
            "branch": args.branch,
            "name": args.name,
            "type": args.type,
            "deploy_on_push": not args.no_deploy_on_push,
        }
    )
    if console.json:
        console.emit(accepted)
    else:
        console.say(f"{accepted['message']}: {accepted['deployment']['url']}")
    return 0


def _revisions(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    deployment = client.deployment(args.deployment)
    rows = [r | {"commit": r["commit_sha"][:7]} for r in client.revisions(deployment["id"])]
    console.emit(rows, None if console.json else REVISION_COLUMNS)
    return 0


def _logs(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    if args.follow:
        for chunk in client.follow_log(args.revision):
            console.out.write(chunk)
            console.out.flush()
    else:
        console.out.write(client.log(args.revision))
    return 0


def _env(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    deployment = client.deployment(args.deployment)
    if args.action == "get":
        env = client.env(deployment["id"])
        if console.json:
            console.emit(env)
        else:
            for key, value in env["vars"].items():
                console.say(f"{key}={value}")
            for name in env["secrets"]:
                console.say(f"{name}=<secret>")
        return 0
    if not args.pairs:
        raise ClientError(f"env {args.action}: name at least one variable")
    if args.action == "set":
        values = {}
        for pair in args.pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ClientError(f"env set: {pair!r} is not KEY=VALUE")
            values[key] = value
        change: dict[str, Any] = {"set": values}
    else:
        change = {"unset": list(args.pairs)}
    return _report(client, client.change_env(deployment["id"], change), console, wait=False)


def _secrets(
    client: SlipwayClient,
    args: argparse.Namespace,
    console: Console,
    stdin: TextIO,
    prompt: Callable[[str], str],
) -> int:
    deployment = client.deployment(args.deployment)
    value = prompt(f"Value of {args.name}: ") if stdin.isatty() else stdin.read()
    if not stdin.isatty() and value.endswith("\n") and value.count("\n") == 1:
        value = value[:-1]  # `echo $KEY |` adds one; a PEM's own line breaks stay
    if not value:
        raise ClientError(f"no value for {args.name} was given")
    change = {"secrets": {args.name: value}}
    return _report(client, client.change_env(deployment["id"], change), console, wait=False)


def _deploy(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    deployment = client.deployment(args.deployment)
    return _report(client, client.deploy(deployment["id"], args.ref), console, wait=args.wait)


def _rollback(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    deployment = client.deployment(args.deployment)
    accepted = client.rollback(deployment["id"], args.revision)
    return _report(client, accepted, console, wait=args.wait)


def _delete(
    client: SlipwayClient,
    args: argparse.Namespace,
    console: Console,
    stdin: TextIO,
    prompt: Callable[[str], str],
) -> int:
    deployment = client.deployment(args.deployment)
    slug = deployment["slug"]
    if not args.yes:
        console.say(
            f"This deletes {slug}, its replicas, its route and its database. The data cannot "
            "be recovered."
        )
        typed = input(f"Type {slug} to confirm: ") if stdin.isatty() else stdin.readline()
        if typed.strip() != slug:
            raise ClientError("not deleted: the name typed did not match")
    deleted = client.delete(deployment["id"], slug)
    if console.json:
        console.emit(deleted)
    else:
        console.say(
            f"{slug} is being deleted; {deleted['warning']}. Progress: {deleted['progress_url']}"
        )
    return 0


def _token(client: SlipwayClient, args: argparse.Namespace, console: Console, *_: Any) -> int:
    if args.action == "list":
        console.emit(client.tokens(), TOKEN_COLUMNS)
        return 0
    if args.action == "create":
        if not args.new_name:
            raise ClientError("token create needs --name NAME")
        made = client.create_token(args.new_name, read_only=args.read_only)
        if console.json:
            console.emit(made)
        else:
            console.say(made["token"])
            print(f"(token {made['name']}: shown this once; store it now)", file=console.err)
        return 0
    if not args.token_name:
        raise ClientError("token revoke needs the token's NAME")
    client.revoke_token(args.token_name)
    console.say(f"token {args.token_name} revoked")
    return 0


def _report(
    client: SlipwayClient, accepted: dict[str, Any], console: Console, *, wait: bool
) -> int:
    revision = accepted.get("revision")
    if console.json and not wait:
        console.emit(accepted)
        return 0
    if revision is None:
        console.say(accepted["message"])
        return 0
    console.say(f"revision #{revision['number']} ({revision['id']}): {accepted['message']}")
    if not wait:
        return 0
    return wait_for_revision(client, revision["id"], console)


PHASE_STARTED = {
    "queued": "created_at",
    "building": "build_started_at",
    "deploying": "deploy_started_at",
    "live": "live_at",
}
ENDED = frozenset({"failed", "cancelled", "superseded"})


def wait_for_revision(client: SlipwayClient, revision_id: str, console: Console) -> int:
    """Show each phase the revision reached (also one passed between two looks), with the
    log's last line; 1 when it does not go live."""
    shown = 0
    deadline = time.monotonic() + WAIT_MAX_SECONDS
    while time.monotonic() < deadline:
        revision = client.revision(revision_id)
        reached = [p for p in PHASES if revision.get(PHASE_STARTED[p])]
        for phase in reached[shown:]:
            last = _last_line(client, revision_id) if phase != "queued" else ""
            console.say(console.colour(phase) + (f"  {last}" if last else ""))
        shown = max(shown, len(reached))
        state = revision["state"]
        if state == "live":
            if console.json:
                console.emit(revision)
            return 0
        if state in ENDED:
            console.say(console.colour(state))
            reason = f"revision #{revision['number']} {state}: {revision['error']}"
            print(f"slipway: {reason}", file=console.err)
            if console.json:
                console.emit(revision)
            return 1
        time.sleep(WAIT_POLL_SECONDS)
    print(f"slipway: gave up waiting for {revision_id}", file=console.err)
    return 1


def _last_line(client: SlipwayClient, revision_id: str) -> str:
    try:
        lines = [line for line in client.log(revision_id).splitlines() if line.strip()]
    except ClientError:
        return ""
    return lines[-1][:160] if lines else ""


HANDLERS: dict[str, Handler] = {
    "deployments": _deployments,
    "create": _create,
    "revisions": _revisions,
    "logs": _logs,
    "env": _env,
    "secrets": _secrets,
    "deploy": _deploy,
    "rollback": _rollback,
    "delete": _delete,
    "token": _token,
}
