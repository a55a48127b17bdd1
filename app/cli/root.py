"""The `slipway` command tree (the root App and its global options), and how outcomes become
exit codes. (Not `main.py`: a submodule by that name would shadow `app.cli.main`, the entry
point.)

Commands are noun-verb, as gh's are (`slipway deployments list`); those that use a platform
through its API are listed apart from those that run one. Exit codes: 0 done, 1 error (the
API refused, or a revision failed), 2 usage, 4 authentication (no login, or the token was
refused: 401/403), 130 interrupted (Ctrl-C; no traceback).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Literal

from cyclopts import App, Group, Parameter
from cyclopts.exceptions import CycloptsError

from app.cli import (
    auth,
    db,
    deployments,
    domains,
    env,
    logs,
    revisions,
    server,
    service,
    tokens,
)
from app.cli.client import OLD_TOKEN_VARIABLE, TOKEN_VARIABLE, URL_VARIABLE, ClientError
from app.cli.common import CLIENT, SERVER, UsageError, examples
from app.cli.output import Output

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 4
EXIT_INTERRUPTED = 130

ROOT_EPILOGUE = f"""{
    examples(
        "slipway auth login https://slipway.example.org --with-token < token.txt",
        "slipway deployments list",
        "slipway env set web LOG_LEVEL=debug --wait",
        "slipway revisions list web",
        "slipway logs web#3",
    )
}

Environment:
  {TOKEN_VARIABLE}    an API token, instead of the stored login's
                   (its old name, {OLD_TOKEN_VARIABLE}, is read too)
  {URL_VARIABLE}  the platform's API, instead of the stored login's
  NO_COLOR         set to anything: no colour
  No command takes a token on its command line: every user of the machine
  can read that.

Exit codes:
  0    done
  1    error: the API refused (its reason is printed), or a revision that
       was waited for did not go live
  2    usage: the command line is wrong
  4    authentication: no login, or the token was refused (401/403)
  130  interrupted (Ctrl-C); a revision being waited for goes on"""

SHELL = Group("Shell", sort_key=3)
OPTIONS = Group("Options", sort_key=4)


def _version() -> str:
    try:
        return version("slipway")
    except PackageNotFoundError:  # a checkout run without `pip install -e .`
        return "unknown"


app = App(
    name="slipway",
    help="Slipway: push-to-deploy on your own machine. `slipway up` runs a platform; the "
    "other commands use one through its API (log in first: `slipway auth login`).",
    help_format="plaintext",
    help_epilogue=ROOT_EPILOGUE,
    version=f"slipway {_version()}",
    default_parameter=Parameter(negative=()),
    suppress_keyboard_interrupt=False,
)
app["--help"].group = OPTIONS
app["--version"].group = OPTIONS

app.command(auth.app)
app.command(auth.whoami, group=CLIENT, help_epilogue=auth.WHOAMI_EXAMPLES)
app.command(deployments.app)
app.command(revisions.app)
app.command(logs.logs, group=CLIENT, help_epilogue=logs.EXAMPLES)
app.command(env.env)
app.command(env.secrets)
app.command(domains.app)
app.command(tokens.app)
app.command(db.app)

app.command(
    server.up,
    group=SERVER,
    help_epilogue=examples(
        "make up      # installs what is missing, then runs slipway up", "slipway up"
    ),
)
app.command(server.api, group=SERVER, help_epilogue=examples("slipway api"))
app.command(server.worker, group=SERVER, help_epilogue=examples("slipway worker"))
app.command(server.combined, group=SERVER, help_epilogue=examples("slipway combined"))
app.command(server.migrate, group=SERVER, help_epilogue=examples("slipway migrate"))
app.command(server.check, group=SERVER, help_epilogue=examples("slipway check"))
app.command(
    service.doctor,
    group=SERVER,
    help_epilogue=examples("slipway doctor", "slipway doctor --json"),
)
app.command(service.app)


@app.command(
    group=SHELL,
    help_epilogue=examples(
        'eval "$(slipway completion bash)"    # in ~/.bashrc',
        "mkdir -p ~/.zfunc && slipway completion zsh > ~/.zfunc/_slipway",
        "# and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath)",
        "slipway completion fish > ~/.config/fish/completions/slipway.fish",
    ),
)
def completion(
    shell: Annotated[
        Literal["bash", "zsh", "fish"], Parameter(help="The shell to complete commands in.")
    ],
    /,
) -> int:
    """Print the script that completes slipway's commands in a shell."""
    Output().raw(app.generate_completion(prog_name="slipway", shell=shell))
    return EXIT_OK


def refuse_token_in_argv(argv: Sequence[str]) -> None:
    """No option takes a token: refuse one by name, with where a token goes instead (the
    parser would only say the option is unknown)."""
    for arg in argv:
        if arg == "--":
            return
        if arg == "--token" or arg.startswith("--token="):
            raise UsageError(
                "--token is not accepted: a command line is visible to every user of this "
                f"machine (ps) and stays in shell history. Set {TOKEN_VARIABLE}, or store a "
                "login with `slipway auth login URL --with-token < token.txt`."
            )


def run(argv: Sequence[str]) -> int:
    output = Output()
    try:
        refuse_token_in_argv(argv)
        result = app(
            list(argv), exit_on_error=False, print_error=False, result_action="return_value"
        )
    except UsageError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except CycloptsError as exc:
        output.error(str(exc).strip())
        chain = " ".join(["slipway", *(exc.command_chain or [])])
        output.note(f"Run `{chain} --help` for usage.")
        return EXIT_USAGE
    except ClientError as exc:
        output.error(str(exc))
        return EXIT_AUTH if exc.is_auth else EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK  # `slipway logs web | head`: the reader has what it wanted
    return result if isinstance(result, int) else EXIT_OK
