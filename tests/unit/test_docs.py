"""The documentation says what the code does: generated pages are current, and what a reader is
told to run (make targets, `slipway` commands and their options, files, links) exists.

Shell blocks a reader runs are fenced as ```sh runnable; the checks here read every such block
of README.md and docs/. Each `slipway` command is parsed by the CLI's own parser (the cyclopts
App that `slipway` runs), so a command the CLI would refuse (a missing argument, an unknown or
misspelt option, a word too many) fails here, and the CLI can change without this file changing.
"""

from __future__ import annotations

import functools
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.kernel.settings import ENV_PREFIX, Settings
from manifests.config import RepositoryConfig, parse_repository_config
from scripts import reference

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 150
"""Issue 21: a README read top to bottom in a few minutes; the rest lives in docs/."""
RUNNABLE = "runnable"


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


# -- generated pages ---------------------------------------------------------------------------


def test_the_configuration_reference_is_what_app_settings_says() -> None:
    written = (ROOT / reference.CONFIGURATION_PAGE).read_text(encoding="utf-8")
    assert written == reference.settings_reference(), (
        "docs/configuration.md differs from app/kernel/settings.py: "
        "run `python -m scripts.reference`"
    )


def test_every_setting_is_in_the_reference_and_none_that_is_not() -> None:
    rows = _table_rows(ROOT / reference.CONFIGURATION_PAGE)
    documented = {row[0].strip("`") for row in rows if row[0].startswith(f"`{ENV_PREFIX}")}
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert documented == settings


def test_the_reference_never_shows_a_secrets_default() -> None:
    secrets = {
        f"`{ENV_PREFIX}{name.upper()}`"
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    }
    rows = {row[0]: row for row in _table_rows(ROOT / reference.CONFIGURATION_PAGE)}
    assert secrets, "the settings have secrets (the App's key, the webhook secret, ...)"
    assert all(rows[name][2] == "—" for name in secrets)


def test_a_setting_without_a_docstring_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    field = Settings.model_fields["host"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(reference.UndocumentedError, match="SLIPWAY_HOST has no docstring"):
        reference.settings_reference()


def test_the_json_schema_is_what_the_repository_config_model_says() -> None:
    written = (ROOT / reference.SCHEMA_FILE).read_text(encoding="utf-8")
    assert written == reference.repository_config_schema(), (
        "docs/slipway.schema.json differs from manifests/config.py: run "
        "`python -m scripts.reference`"
    )


def test_the_schema_has_no_null_a_toml_file_cannot_write() -> None:
    assert '"null"' not in (ROOT / reference.SCHEMA_FILE).read_text(encoding="utf-8")


def test_the_check_names_a_stale_page(tmp_path: Path) -> None:
    for path, text in reference.pages().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    assert reference.stale(tmp_path) == []
    (tmp_path / reference.SCHEMA_FILE).write_text("{}\n", encoding="utf-8")
    assert reference.stale(tmp_path) == [reference.SCHEMA_FILE]


def test_every_slipway_toml_key_is_in_its_reference() -> None:
    page = (DOCS / "slipway-toml.md").read_text(encoding="utf-8")
    for table, model in RepositoryConfig.model_fields.items():
        assert model.annotation is not None
        for key in model.annotation.model_fields:
            assert f"`[{table}] {key}`" in page, f"[{table}] {key} is not in docs/slipway-toml.md"


def test_every_slipway_toml_example_in_the_docs_is_valid() -> None:
    examples = [block for block in _code_blocks() if block.language == "toml"]
    assert examples
    for block in examples:
        tomllib.loads(block.text)
        parse_repository_config(block.text)  # raises, naming the key, when one is wrong


# -- the README -------------------------------------------------------------------------------


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move details into docs/"


def test_the_readme_has_runnable_blocks() -> None:
    commands = [command for command in _runnable_commands() if command.source == README]
    assert {command.words[0] for command in commands} >= {"make", "slipway"}


def test_runnable_blocks_name_make_targets_that_exist() -> None:
    targets = set(
        re.findall(r"^([A-Za-z0-9_.-]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    )
    for command in _runnable_commands():
        if command.words[0] == "make":
            named = [word for word in command.words[1:] if not word.startswith("-")]
            missing = [target for target in named if "=" not in target and target not in targets]
            assert not missing, f"{command}: no such make target {missing}"


def test_runnable_blocks_name_files_that_exist() -> None:
    tops = {path.name for path in ROOT.iterdir()} - {".data", ".venv", ".git"}
    for command in _runnable_commands():
        for word in command.words[1:]:
            first = word.split("/", 1)[0]
            if "/" in word and "://" not in word and first in tops:
                assert (ROOT / word).exists(), f"{command}: {word} does not exist"


def test_runnable_blocks_name_slipway_commands_and_options_that_exist() -> None:
    commands = [command for command in _runnable_commands() if command.words[0] == "slipway"]
    assert commands
    refused = [problem for command in commands if (problem := _refusal(command))]
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize(
    "line",
    [
        "slipway deployments create octo/web --brnch staging",  # a misspelt option
        "slipway deployments lst",  # no such command
        "slipway logs",  # a required argument missing
        "slipway revisions list web extra",  # a word too many
        "slipway auth login https://slipway.example.com --token abc",  # no token in argv
    ],
)
def test_a_slipway_command_the_cli_would_refuse_is_reported(line: str) -> None:
    (words,) = _simple_commands(line)
    assert _refusal(Command(README, line, words))


# -- links ------------------------------------------------------------------------------------


def test_every_relative_link_in_the_docs_leads_somewhere() -> None:
    broken = []
    for page in markdown_files():
        for target in _links(page):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not this machine's to check
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme_or_another_page() -> None:
    linked = {
        (page.parent / target.partition("#")[0]).resolve()
        for page in markdown_files()
        for target in _links(page)
        if not re.match(r"[a-z]+:", target)
    }
    orphans = [page for page in markdown_files()[1:] if page.resolve() not in linked]
    assert not orphans, f"no page links to {[str(p.relative_to(ROOT)) for p in orphans]}"


# -- reading markdown ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeBlock:
    source: Path
    language: str
    flags: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Command:
    source: Path
    line: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.source.relative_to(ROOT)}: `{self.line}`"


def _code_blocks() -> Iterator[CodeBlock]:
    fence = re.compile(r"^\s*```(\S*)\s*(.*)$")
    for page in markdown_files():
        lines = page.read_text(encoding="utf-8").splitlines()
        info: tuple[str, tuple[str, ...]] | None = None
        body: list[str] = []
        for line in lines:
            match = fence.match(line)
            if match and info is None:
                info, body = (match.group(1), tuple(match.group(2).split())), []
            elif match and info is not None:
                yield CodeBlock(page, info[0], info[1], "\n".join(body) + "\n")
                info = None
            elif info is not None:
                body.append(line.strip())


def _runnable_commands() -> Iterator[Command]:
    for block in _code_blocks():
        if RUNNABLE not in block.flags:
            continue
        for line in block.text.splitlines():
            for words in _simple_commands(line):
                yield Command(block.source, line.strip(), words)


def _simple_commands(line: str) -> Iterator[tuple[str, ...]]:
    """Each command of a line, without comments, redirections or leading VAR=value.

    As in sh, `#` opens a comment only at the start of a word: `slipway logs web#3` keeps its
    `#3` (shlex's own commenters would cut the line there)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    current: list[str] = []
    redirect = False
    for token in lexer:
        if token.startswith("#"):
            break
        if token in ("|", "||", "&&", ";", "&"):
            if current:
                yield tuple(current)
            current = []
        elif token in ("<", ">", ">>", "2>", "<<"):
            redirect = True
        elif redirect:
            redirect = False
        elif not current and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", token):
            continue
        else:
            current.append(token)
    if current:
        yield tuple(current)


def _table_rows(page: Path) -> list[list[str]]:
    rows = []
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _prose(page: Path) -> str:
    """The page without its code blocks and code spans, where brackets are not links."""
    text = re.sub(r"^\s*```.*?^\s*```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _prose(page))


@functools.cache
def _anchors(page: Path) -> frozenset[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces to -."""
    found: set[str] = set()
    for line in _prose_with_code_spans(page).splitlines():
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            found.add(slug if slug not in found else f"{slug}-1")
    return frozenset(found)


def _prose_with_code_spans(page: Path) -> str:
    return re.sub(r"^\s*```.*?^\s*```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)


# -- reading the CLI ----------------------------------------------------------------------------


def _refusal(command: Command) -> str | None:
    """Why the CLI would refuse the command (None: it parses), as `slipway` itself parses it."""
    from cyclopts.exceptions import CycloptsError

    from app.cli.root import app

    try:
        app.parse_args(list(command.words[1:]), exit_on_error=False, print_error=False)
    except CycloptsError as error:
        return f"{command}: {error}".strip()
    return None
