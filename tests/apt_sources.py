"""The Debian archive this machine's apt already uses, for the tests' debootstrap'ed images.

The project names no mirror of its own: a host that installs its packages from a local or
company mirror builds the test images from the same one, and a host that reaches none fails
the same way apt does. Read from the deb822 files of /etc/apt/sources.list.d first (Debian 12's
installer writes them), then from the one-line `deb` format of /etc/apt/sources.list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


class NoDebianArchive(RuntimeError):
    """apt has no source a Debian release can be bootstrapped from."""


def debian_archive(suite: str, apt_dir: Path = APT_DIR) -> str:
    """The URI of the first `deb` source of an archive's `main` component that carries `suite`;
    else (a host of another release) of one that carries a release, as a Debian mirror carries
    them all: a security or updates archive, or a third-party repository, cannot bootstrap."""
    sources = [s for s in apt_sources(apt_dir) if "main" in s.components]
    for source in sources:
        if suite in source.suites:
            return source.uri
    for source in sources:
        if any("-" not in listed for listed in source.suites):
            return source.uri
    raise NoDebianArchive(
        f"no `deb` source of a Debian release's `main` component in "
        f"{apt_dir}/sources.list.d/*.sources or {apt_dir}/sources.list: set "
        f"SLIPWAY_TEST_DEBIAN_MIRROR to the URL of a Debian archive that carries {suite}"
    )


def apt_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """Every enabled binary (`deb`) source, deb822 files first, in the order apt reads them."""
    found: list[AptSource] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        found.extend(parse_deb822(_read(path)))
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        found.extend(parse_one_line(_read(path)))
    return found


def parse_deb822(text: str) -> Iterator[AptSource]:
    """Stanzas separated by blank lines; `Field: value`, continued on indented lines."""
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        uris = stanza.get("uris", "").split()
        if not uris:
            continue
        yield AptSource(
            uri=uris[0],
            suites=tuple(stanza.get("suites", "").split()),
            components=tuple(stanza.get("components", "").split()),
        )


def parse_one_line(text: str) -> Iterator[AptSource]:
    """`deb [option=value ...] uri suite [component ...]`, one source a line."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        kind, _, rest = line.partition(" ")
        if kind != "deb":
            continue
        rest = rest.strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        words = rest.split()
        if len(words) < 2:
            continue
        yield AptSource(uri=words[0], suites=(words[1],), components=tuple(words[2:]))


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    last: str | None = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif raw[0] in " \t" and last is not None:
            fields[last] += " " + raw.strip()
        elif ":" in raw:
            name, _, value = raw.partition(":")
            last = name.strip().lower()
            fields[last] = value.strip()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return ""
