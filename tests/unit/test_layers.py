"""The import contract (scripts/check_layers.py) holds on the tree and catches what breaks it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_layers.py"


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_tree_keeps_its_layers() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_an_upward_import_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "app/kernel/models.py": "import os\n\nfrom app.replicas.reconciler import Reconciler\n",
            "app/replicas/reconciler.py": "from app.kernel.models import Deployment\n",
            "manifests/config.py": "from app.kernel.errors import ConfigError\n",
        },
    )
    found = {(v.importer, v.line, v.imported) for v in checker().check(root)}
    assert found == {
        ("app.kernel.models", 3, "app.replicas.reconciler"),
        ("manifests.config", 1, "app.kernel.errors"),
    }
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert "app/kernel/models.py:3: app.kernel.models imports app.replicas.reconciler" in run.stderr


def test_packages_of_one_layer_stay_apart_even_for_a_type(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "app/rollout/pipeline.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from app.deliveries.handlers import WorkOrder\n"
            ),
            "app/deliveries/handlers.py": "",
        },
    )
    [violation] = checker().check(root)
    assert violation.imported == "app.deliveries.handlers"
    assert "independent" in violation.why


def test_a_new_package_outside_the_contract_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path, {"app/gadgets/thing.py": "", "app/kernel/models.py": ""})
    [violation] = checker().check(root)
    assert violation.importer == "app.gadgets.thing"
    assert "no layer" in violation.why
