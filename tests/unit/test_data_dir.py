"""DATA_DIR and its secret key belong to the platform's user alone."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.bootstrap import private_data_dir
from app.kernel.crypto import SecretKeyError, load_or_create_secret_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_secret_key_is_made_0600_in_a_0700_directory(tmp_path: Path) -> None:
    key = load_or_create_secret_key(tmp_path / "data" / "secret.key")

    assert len(key) >= 32
    assert mode(tmp_path / "data" / "secret.key") == 0o600
    assert mode(tmp_path / "data") & 0o077 == 0
    assert load_or_create_secret_key(tmp_path / "data" / "secret.key") == key


def test_a_secret_key_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("k" * 43 + "\n")
    path.chmod(0o644)

    with pytest.raises(SecretKeyError, match=r"mode 0644.*chmod 600"):
        load_or_create_secret_key(path)


def test_an_empty_secret_key_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("\n")
    path.chmod(0o600)

    with pytest.raises(SecretKeyError, match="is empty"):
        load_or_create_secret_key(path)
    assert path.read_text() == "\n"


def test_an_open_data_dir_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)

    private_data_dir(data)

    assert mode(data) == 0o700


def test_a_missing_data_dir_is_made_private(tmp_path: Path) -> None:
    private_data_dir(tmp_path / "new")

    assert mode(tmp_path / "new") & 0o077 == 0
