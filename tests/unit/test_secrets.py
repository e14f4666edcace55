"""Secrets live owner-only (0700 folder, 0600 files); tokens shorter than 32 characters are refused."""
from __future__ import annotations

import os
import stat

import pytest

from lifecycle.paths import MIN_TOKEN_CHARS, StatePaths, check_token

SHORT = "short-but-secret-value"  # 22 characters
LONG = "x" * MIN_TOKEN_CHARS


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_secrets_folder_is_created_0700_and_its_files_0600(tmp_path):
    old = os.umask(0o022)  # a usual umask would give 0755 / 0644
    try:
        value = StatePaths(tmp_path).secret("gateway_token")
    finally:
        os.umask(old)
    assert len(value) >= MIN_TOKEN_CHARS
    assert _mode(tmp_path / "secrets") == 0o700
    assert _mode(tmp_path / "secrets" / "gateway_token") == 0o600


def test_a_looser_existing_folder_and_file_are_tightened(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "old").write_text(LONG)
    (folder / "old").chmod(0o644)
    assert StatePaths(tmp_path).secret("old") == LONG
    assert _mode(folder) == 0o700 and _mode(folder / "old") == 0o600


def test_check_token_refuses_a_short_token_naming_the_source_not_the_value():
    with pytest.raises(ValueError, match=r"\$SOME_VAR is too short: at least 32 characters") as err:
        check_token(SHORT, "$SOME_VAR")
    assert SHORT not in str(err.value)
    assert check_token(LONG, "$SOME_VAR") == LONG


def test_the_gateway_token_from_the_environment_or_the_secrets_file_is_checked(tmp_path, monkeypatch):
    paths = StatePaths(tmp_path)
    monkeypatch.setenv("LIFECYCLE_GATEWAY_TOKEN", SHORT)
    with pytest.raises(ValueError, match=r"\$LIFECYCLE_GATEWAY_TOKEN is too short"):
        paths.gateway_token()
    monkeypatch.setenv("LIFECYCLE_GATEWAY_TOKEN", LONG)
    assert paths.gateway_token() == LONG
    monkeypatch.delenv("LIFECYCLE_GATEWAY_TOKEN")
    generated = paths.gateway_token()
    assert len(generated) >= MIN_TOKEN_CHARS and paths.gateway_token() == generated
    (tmp_path / "secrets" / "gateway_token").write_text(SHORT)  # set by hand
    with pytest.raises(ValueError, match="gateway_token is too short") as err:
        paths.gateway_token()
    assert SHORT not in str(err.value)


def test_the_gateway_refuses_a_short_token(tmp_path, monkeypatch, spec):
    from lifecycle.serving.app import Gateway

    monkeypatch.delenv("LIFECYCLE_GATEWAY_TOKEN", raising=False)
    paths = StatePaths(tmp_path)
    with pytest.raises(ValueError, match=r"Gateway\(token=\.\.\.\) is too short") as err:
        Gateway([spec], paths, token=SHORT)
    assert SHORT not in str(err.value)
    given, generated = Gateway([spec], paths, token=LONG), Gateway([spec], paths)
    given.logs.close()
    generated.logs.close()
    assert given.token == LONG
    assert len(generated.token) >= MIN_TOKEN_CHARS  # generated into secrets/
