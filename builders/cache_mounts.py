"""BuildKit cache mounts, kept per repository.

`RUN --mount=type=cache,id=X` gives every build that names X the same directory, whoever's
build it is (and the id defaults to the target, so two tenants writing `/root/.cache/pip`
share one without asking). Before a build, each cache mount of the Dockerfile gets its id
prefixed with the repository's scope, so one tenant can neither read nor poison another's.

Plain text in, plain text out. The frontend sees what it would have seen: a RUN whose flags
are rewritten is written back as one line (Docker joins continuation lines the same way), and
blank lines keep later instructions on their line numbers. A `# syntax=` directive may only
name Docker's own Dockerfile frontend: another frontend image could build with any cache id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CACHE_SCOPE_PREFIX = "slipway-"
SAFE_FIELD = re.compile(r"[A-Za-z0-9._/:@+~${}-]*")
"""What a cache mount's fields may hold: no quotes, spaces or commas to hide another field."""
OFFICIAL_FRONTEND = re.compile(
    r"(docker\.io/)?docker/dockerfile(-upstream)?(:[\w.-]+)?(@sha256:[0-9a-f]{64})?"
)
DIRECTIVE = re.compile(r"#\s*([a-zA-Z]+)\s*=\s*(.*?)\s*$")
HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
CACHE_KEYS = {
    "type",
    "id",
    "target",
    "dst",
    "destination",
    "sharing",
    "mode",
    "uid",
    "gid",
    "from",
    "source",
    "src",
    "readonly",
    "ro",
    "rw",
    "readwrite",
    "required",
}


class CacheMountRefused(ValueError):
    """The Dockerfile asks for a cache or a frontend Slipway cannot keep to its repository."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True)
class _Instruction:
    first: int
    """Index of its first physical line."""
    last: int
    text: str
    """The logical line: continuations joined, comment lines inside it dropped."""


def cache_scope(repository_id: str) -> str:
    return f"{CACHE_SCOPE_PREFIX}{repository_id}"


def namespace_cache_mounts(dockerfile: str, scope: str) -> str:
    """The Dockerfile with every cache mount's id under `scope/` (see the module docstring)."""
    if not scope or not SAFE_FIELD.fullmatch(scope) or "$" in scope:
        raise ValueError(f"unusable cache scope {scope!r}")
    lines = dockerfile.split("\n")
    escape = _check_directives(lines)
    out = list(lines)
    for instruction in _instructions(lines, escape):
        rewritten = _rewrite(instruction, scope)
        if rewritten is None:
            continue
        span = instruction.last - instruction.first + 1
        out[instruction.first : instruction.last + 1] = [rewritten] + [""] * (span - 1)
    return "\n".join(out)


def _check_directives(lines: list[str]) -> str:
    escape = "\\"
    for number, line in enumerate(lines, 1):
        match = DIRECTIVE.fullmatch(line.strip())
        if match is None:
            break
        name, value = match.group(1).lower(), match.group(2)
        if name == "syntax" and not OFFICIAL_FRONTEND.fullmatch(value):
            raise CacheMountRefused(
                number,
                f"`# syntax={value}` names a frontend other than docker/dockerfile; Slipway "
                "builds with Docker's own Dockerfile frontend only",
            )
        if name == "escape" and value in ("\\", "`"):
            escape = value
    return escape


def _instructions(lines: list[str], escape: str) -> list[_Instruction]:
    found: list[_Instruction] = []
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        first = index
        parts: list[str] = []
        while True:
            line = lines[index].rstrip()
            continued = line.endswith(escape)
            parts.append(line[: -len(escape)] if continued else line)
            index += 1
            if not continued:
                break
            # Docker drops comment lines and skips blank ones inside a continued instruction.
            while index < len(lines) and (
                not lines[index].strip() or lines[index].lstrip().startswith("#")
            ):
                index += 1
            if index >= len(lines):
                break
        text = "".join(parts)
        found.append(_Instruction(first, index - 1, text))
        # A heredoc's body is data, not instructions: skip to its terminator.
        for match in HEREDOC.finditer(text):
            word, strip = match.group(3), match.group(1) == "-"
            while index < len(lines):
                body = lines[index].lstrip("\t") if strip else lines[index]
                index += 1
                if body.rstrip("\r") == word:
                    break
    return found


def _rewrite(instruction: _Instruction, scope: str) -> str | None:
    """The instruction with its cache mounts scoped; None when it has none."""
    text = instruction.text.lstrip()
    indent = instruction.text[: len(instruction.text) - len(text)]
    keyword, _, rest = text.partition(" ")
    prefix = ""
    if keyword.upper() == "ONBUILD":
        inner, _, rest = rest.lstrip().partition(" ")
        prefix, keyword = f"{keyword} ", inner
    if keyword.upper() != "RUN":
        return None
    flags, command = _flags(rest)
    changed = False
    rendered: list[str] = []
    for raw, value in flags:
        if value.lower().startswith("--mount="):
            if any(char in raw for char in "\"'\\") and "cache" in raw.lower():
                # Quotes and escapes are read differently by the flag and CSV parsers of each
                # frontend version: a cache mount is taken only when written plainly.
                raise CacheMountRefused(
                    instruction.first + 1, "write cache mounts without quotes or backslashes"
                )
            scoped = _scoped_mount(value[len("--mount=") :], scope, instruction.first + 1)
            if scoped is not None:
                rendered.append(f"--mount={scoped}")
                changed = True
                continue
        rendered.append(raw)
    if not changed:
        return None
    return f"{indent}{prefix}{keyword} {' '.join(rendered)} {command}"


def _flags(rest: str) -> tuple[list[tuple[str, str]], str]:
    """RUN's leading `--flag=value` words as (as written, unquoted), and the command after."""
    flags: list[tuple[str, str]] = []
    position = 0
    while True:
        while position < len(rest) and rest[position] in " \t":
            position += 1
        if not rest.startswith("--", position):
            return flags, rest[position:]
        start, quote, value = position, "", []
        while position < len(rest):
            char = rest[position]
            if quote:
                if char == quote:
                    quote = ""
                else:
                    value.append(char)
            elif char in "'\"":
                quote = char
            elif char in " \t":
                break
            else:
                value.append(char)
            position += 1
        flags.append((rest[start:position], "".join(value)))


def _scoped_mount(value: str, scope: str, line: int) -> str | None:
    fields: list[tuple[str, str | None]] = []
    for field in value.split(","):
        key, eq, val = field.partition("=")
        fields.append((key.strip().lower(), val if eq else None))
    kinds = [val for key, val in fields if key == "type"]
    if any("$" in (kind or "") for kind in kinds):
        raise CacheMountRefused(
            line, "a mount's type must be written out, not taken from a variable"
        )
    if not kinds or (kinds[-1] or "").lower() != "cache":
        return None
    for key, option in fields:
        if key not in CACHE_KEYS:
            raise CacheMountRefused(line, f"unknown cache mount option {key!r}")
        if option is not None and not SAFE_FIELD.fullmatch(option):
            raise CacheMountRefused(
                line, f"cache mount option {key}={option!r} has characters Slipway does not allow"
            )
    ids = [val for key, val in fields if key == "id" and val]
    targets = [val for key, val in fields if key in ("target", "dst", "destination") and val]
    if not targets:
        raise CacheMountRefused(line, "a cache mount needs a target")
    cache_id = ids[-1] if ids else targets[-1]
    kept = [f"{key}={val}" if val is not None else key for key, val in fields if key != "id"]
    return ",".join([*kept, f"id={scope}/{cache_id.lstrip('/')}"])
