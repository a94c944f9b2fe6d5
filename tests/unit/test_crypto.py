"""Credentials at rest: Fernet round trips, keys from ACCESSBOT_SECRET_KEY or a 0600 key file beside SQLite."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import app.core.crypto
from app.bootstrap import cipher_for
from app.config.settings import Settings
from app.core.crypto import HKDF_INFO, KEY_FILE_NAME, Cipher, CipherError, derive_key, load_or_create_key_file
from app.core.errors import ConfigError

PASSPHRASE = "correct horse battery staple 42"
SECRETS = {"api_key": "hk_live_0123456789abcdef", "api_secret": "hs_topsecret_fedcba9876543210"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ACCESSBOT_SECRET_KEY", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


def settings(database_url: str, secret_key: str | None = None) -> Settings:
    values = {"DATABASE_URL": database_url}
    if secret_key is not None:
        values["ACCESSBOT_SECRET_KEY"] = secret_key
    return Settings(**values)  # type: ignore[arg-type]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# -- the cipher ----------------------------------------------------------------------------------------


def test_round_trip_with_a_fernet_key() -> None:
    cipher = Cipher(Fernet.generate_key())
    token = cipher.encrypt(SECRETS)
    assert isinstance(token, str)
    for value in SECRETS.values():
        assert value not in token
    assert cipher.decrypt(token) == SECRETS
    assert cipher.encrypt(SECRETS) != token  # a fresh IV every time


def test_round_trip_of_an_empty_dict() -> None:
    cipher = Cipher(Fernet.generate_key())
    assert cipher.decrypt(cipher.encrypt({})) == {}


def test_a_fernet_key_in_the_setting_is_used_as_is() -> None:
    key = Fernet.generate_key().decode()
    token = Cipher(key).encrypt(SECRETS)
    assert Cipher.from_secret(key).decrypt(token) == SECRETS
    assert Cipher.from_secret(f"  {key}\n").decrypt(token) == SECRETS


def test_a_passphrase_goes_through_hkdf_sha256_with_the_documented_info() -> None:
    expected = base64.urlsafe_b64encode(
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"accessbot integration credentials v1").derive(
            PASSPHRASE.encode()
        )
    )
    assert HKDF_INFO == b"accessbot integration credentials v1"
    assert derive_key(PASSPHRASE) == expected
    token = Cipher.from_secret(PASSPHRASE).encrypt(SECRETS)
    assert Cipher(expected).decrypt(token) == SECRETS
    assert Cipher.from_secret(PASSPHRASE).decrypt(token) == SECRETS  # deterministic: survives a restart


def test_different_passphrases_give_different_keys() -> None:
    token = Cipher.from_secret(PASSPHRASE).encrypt(SECRETS)
    with pytest.raises(CipherError):
        Cipher.from_secret(PASSPHRASE + "!").decrypt(token)


@pytest.mark.parametrize("secret", ["short", "fifteen chars!!", "x" * 15])
def test_a_short_passphrase_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError, match=r"ACCESSBOT_SECRET_KEY.*at least 16 characters"):
        Cipher.from_secret(secret)


def test_sixteen_characters_are_enough() -> None:
    cipher = Cipher.from_secret("x" * 16)
    assert cipher.decrypt(cipher.encrypt(SECRETS)) == SECRETS


def test_the_wrong_key_gives_a_clear_cipher_error() -> None:
    token = Cipher(Fernet.generate_key()).encrypt(SECRETS)
    with pytest.raises(CipherError, match=r"cannot decrypt .*was ACCESSBOT_SECRET_KEY changed\?") as info:
        Cipher(Fernet.generate_key()).decrypt(token)
    for value in SECRETS.values():
        assert value not in info.value.message


@pytest.mark.parametrize("token", ["", "not a token", "gAAAAAB" + "A" * 80, "ünïcode"])
def test_garbage_is_a_cipher_error(token: str) -> None:
    with pytest.raises(CipherError):
        Cipher(Fernet.generate_key()).decrypt(token)


def test_a_token_that_is_not_a_dict_of_strings_is_a_cipher_error() -> None:
    key = Fernet.generate_key()
    for plain in (b"[1, 2]", b'{"a": 1}', b"not json"):
        with pytest.raises(CipherError, match="not a JSON object of strings"):
            Cipher(key).decrypt(Fernet(key).encrypt(plain).decode())


def test_the_repr_hides_the_key() -> None:
    key = Fernet.generate_key()
    assert key.decode() not in repr(Cipher(key))
    assert "hidden" in repr(Cipher(key))


# -- where the key comes from ---------------------------------------------------------------------------


def test_the_setting_wins_and_no_key_file_is_created(tmp_path: Path) -> None:
    cipher = cipher_for(settings(sqlite_url(tmp_path / "accessbot.db"), PASSPHRASE))
    assert Cipher.from_secret(PASSPHRASE).decrypt(cipher.encrypt(SECRETS)) == SECRETS
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_an_empty_setting_counts_as_unset(tmp_path: Path) -> None:
    cipher_for(settings(sqlite_url(tmp_path / "accessbot.db"), "   "))
    assert (tmp_path / KEY_FILE_NAME).exists()


def test_sqlite_without_a_key_creates_a_0600_key_file_beside_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    caplog.set_level(logging.DEBUG)
    cipher = cipher_for(settings(sqlite_url(data / "accessbot.db")))
    key_file = data / KEY_FILE_NAME
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert Cipher(key).decrypt(cipher.encrypt(SECRETS)) == SECRETS
    assert not (tmp_path / KEY_FILE_NAME).exists()
    assert sorted(p.name for p in data.iterdir()) == [KEY_FILE_NAME]  # no temporary file left behind
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(key_file) in warnings[0].getMessage()
    assert "back it up" in warnings[0].getMessage()
    assert "database" in warnings[0].getMessage()
    assert key not in caplog.text


def test_the_key_file_is_reused_and_the_warning_is_not_repeated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url(tmp_path / "accessbot.db")
    token = cipher_for(settings(url)).encrypt(SECRETS)
    key = (tmp_path / KEY_FILE_NAME).read_text()
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    assert cipher_for(settings(url)).decrypt(token) == SECRETS
    assert (tmp_path / KEY_FILE_NAME).read_text() == key
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_relative_sqlite_path_puts_the_key_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cipher_for(settings("sqlite:///accessbot.db"))
    assert (tmp_path / KEY_FILE_NAME).is_file()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_a_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    url = sqlite_url(tmp_path / "accessbot.db")
    cipher_for(settings(url))
    key_file = tmp_path / KEY_FILE_NAME
    key_file.chmod(mode)
    with pytest.raises(ConfigError, match=r"accessible by group or others .*chmod 600") as info:
        cipher_for(settings(url))
    assert str(key_file) in str(info.value)
    assert key_file.read_text().strip() not in str(info.value)


def test_a_key_file_without_a_key_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"not a fernet key\n")
    os.close(fd)
    with pytest.raises(ConfigError, match="does not hold a Fernet key"):
        cipher_for(settings(sqlite_url(tmp_path / "accessbot.db")))


def test_a_missing_database_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot create the key file"):
        cipher_for(settings(sqlite_url(tmp_path / "missing" / "accessbot.db")))


def test_a_key_file_created_meanwhile_by_another_process_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    theirs = Fernet.generate_key()
    real_link = os.link

    def racing_link(src: str | Path, dst: str | Path) -> None:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, theirs + b"\n")
        os.close(fd)
        real_link(src, dst)

    monkeypatch.setattr(app.core.crypto.os, "link", racing_link)
    caplog.set_level(logging.DEBUG)
    assert load_or_create_key_file(key_file) == theirs
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE_NAME]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "url", ["postgresql://postgres@127.0.0.1:5432/accessbot", "postgres://u@db/x", "postgresql+psycopg://u@db/x"]
)
def test_postgresql_without_a_key_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="ACCESSBOT_SECRET_KEY"):
        cipher_for(settings(url))


def test_postgresql_with_a_key_needs_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cipher = cipher_for(settings("postgresql://postgres@127.0.0.1:5432/accessbot", PASSPHRASE))
    assert cipher.decrypt(cipher.encrypt(SECRETS)) == SECRETS
    assert list(tmp_path.iterdir()) == []


def test_nothing_secret_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = sqlite_url(tmp_path / "accessbot.db")
    cipher = cipher_for(settings(url))
    token = cipher.encrypt(SECRETS)
    cipher.decrypt(token)
    with pytest.raises(CipherError):
        cipher_for(settings(url, PASSPHRASE)).decrypt(token)
    with pytest.raises(ConfigError):
        Cipher.from_secret("short secret")
    key = (tmp_path / KEY_FILE_NAME).read_text().strip()
    for secret in (key, PASSPHRASE, derive_key(PASSPHRASE).decode(), "short secret", *SECRETS.values()):
        assert secret not in caplog.text
