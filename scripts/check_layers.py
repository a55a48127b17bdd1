"""The import contract: Slipway's packages in layers, each importing only from layers below it.

Run by `make lint` (`python scripts/check_layers.py`); exits 1 naming every import that goes up
a layer or across between packages of one layer that must stay independent of each other.
Imports made under `if TYPE_CHECKING:` count too: a type named from a higher layer is the same
dependency, only hidden.

import-linter's "layers" contract says the same; it is not in the package index these machines
install from, and the whole check is forty lines of `ast`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOTS = ("app", "jobs", "builders", "manifests")

LAYERS: tuple[tuple[str, ...], ...] = (
    # Top: what a person or the operating system starts.
    ("app.cli",),
    ("app.server",),
    # Entry points of the two kinds of process: HTTP requests and queued jobs.
    ("app.api", "jobs"),
    # The one place that builds real adapters and hands them to the services.
    ("app.bootstrap",),
    # The outside world behind the kernel's ports; the domain never imports it.
    ("app.adapters",),
    # The domain, top to bottom.
    ("app.deliveries", "app.rollout"),
    ("app.deployments",),
    ("app.replicas", "app.backups"),
    ("app.feedback", "app.setup"),
    ("app.access", "app.github"),
    ("app.kernel",),
    # Pure code about builds and containers: it knows nothing of the platform above it.
    ("builders",),
    ("manifests",),
)
"""Each row is one layer; packages on one row may not import each other."""


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    importer: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported} ({self.why})"


def package_of(module: str) -> str | None:
    """The contract's package a module belongs to (the longest listed prefix), if any."""
    best = None
    for row in LAYERS:
        for package in row:
            if (module == package or module.startswith(package + ".")) and (
                best is None or len(package) > len(best)
            ):
                best = package
    return best


def layer_of(package: str) -> int:
    return next(i for i, row in enumerate(LAYERS) if package in row)


def module_name(root: Path, path: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute import of one of Slipway's roots, wherever in the file it is made."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ROOTS:
                yield node.lineno, name


def check(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for top in ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue  # Alembic's scripts load the tables; they are data, not a layer.
            importer = module_name(root, path)
            if importer in ROOTS:
                continue  # a root package's own __init__: the namespace, empty
            source = package_of(importer)
            if source is None:
                found.append(Violation(path, 1, importer, "-", "in no layer: add it to LAYERS"))
                continue
            for line, imported in imports(path):
                target = package_of(imported)
                if target is None or target == source:
                    continue
                if layer_of(target) < layer_of(source):
                    why = f"{target} is in a higher layer than {source}"
                elif layer_of(target) == layer_of(source):
                    why = f"{source} and {target} are independent packages of one layer"
                else:
                    continue
                found.append(Violation(path, line, importer, imported, why))
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    violations = check(root)
    for violation in violations:
        print(violation, file=sys.stderr)
    if violations:
        print(
            f"{len(violations)} import(s) break the layers in scripts/check_layers.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
