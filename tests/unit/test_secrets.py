"""Encryption at rest of driver_info secrets: seal/unseal, redaction, key rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from portal.core.secrets import PREFIX, REDACTED, Cipher, is_secret_field, load_keys, redact

INFO = {
    "bmc_address": "10.0.0.5",
    "bmc_username": "admin",
    "bmc_password": "s3cret-pw",
    "snmp_secret": "community",
    "api_token": "tok-123",
    "key": "k-1",
    "bmc_port": 623,
    "ipmi_password_unused": "not secret: does not end in password",
}


def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def cipher() -> Cipher:
    return Cipher((new_key(),))


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("bmc_password", True),
        ("BMC_PASSWORD", True),
        ("password", True),
        ("snmp_secret", True),
        ("api_token", True),
        ("key", True),
        ("bmc_address", False),
        ("bmc_username", False),
        ("ssh_key_path", False),
        ("password_hint", False),
    ],
)
def test_which_fields_are_secret(key: str, secret: bool) -> None:
    assert is_secret_field(key) is secret


def test_seal_encrypts_only_secret_string_fields(cipher: Cipher) -> None:
    sealed = cipher.seal(INFO)
    for key in ("bmc_password", "snmp_secret", "api_token", "key"):
        assert sealed[key].startswith(PREFIX)
        assert INFO[key] not in sealed[key]
    for key in ("bmc_address", "bmc_username", "bmc_port", "ipmi_password_unused"):
        assert sealed[key] == INFO[key]


def test_seal_then_unseal_round_trips(cipher: Cipher) -> None:
    assert cipher.unseal(cipher.seal(INFO)) == INFO


def test_seal_is_idempotent_and_encryption_is_randomised(cipher: Cipher) -> None:
    once = cipher.seal(INFO)
    assert cipher.seal(once) == once  # already-encrypted values are left alone
    assert cipher.encrypt("same") != cipher.encrypt("same")


def test_unseal_passes_legacy_clear_text_through(cipher: Cipher) -> None:
    assert cipher.unseal({"bmc_password": "plain"}) == {"bmc_password": "plain"}
    assert cipher.decrypt("plain") == "plain"


def test_redact_masks_secrets_but_keeps_empty_and_other_values() -> None:
    out = redact({**INFO, "other_password": "", "none_token": None})
    assert out["bmc_password"] == REDACTED == "******"
    assert out["snmp_secret"] == out["api_token"] == out["key"] == REDACTED
    assert out["bmc_address"] == "10.0.0.5" and out["bmc_port"] == 623
    assert out["other_password"] == "" and out["none_token"] is None
    assert "s3cret-pw" not in repr(out)


def test_redact_hides_sealed_values_too(cipher: Cipher) -> None:
    assert redact(cipher.seal(INFO))["bmc_password"] == REDACTED


def test_key_rotation_with_multifernet() -> None:
    old, new = new_key(), new_key()
    before = Cipher((old,))
    token = before.encrypt("s3cret-pw")

    during = Cipher((new, old))  # new key prepended: decrypts old and new tokens
    assert during.decrypt(token) == "s3cret-pw"
    rotated = during.rotate(token)
    assert rotated.startswith(PREFIX) and rotated != token
    assert during.decrypt(rotated) == "s3cret-pw"
    # New encryptions use the first (new) key.
    assert Cipher((new,)).decrypt(during.encrypt("fresh")) == "fresh"

    after = Cipher((new,))  # old key dropped: rotated tokens still open, old ones do not
    assert after.decrypt(rotated) == "s3cret-pw"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        after.decrypt(token)
    with pytest.raises(ValueError):
        before.decrypt(rotated)


def test_rotate_encrypts_legacy_clear_text() -> None:
    c = Cipher((new_key(),))
    rotated = c.rotate("plain")
    assert rotated.startswith(PREFIX) and c.decrypt(rotated) == "plain"


def test_wrong_key_raises_value_error(cipher: Cipher) -> None:
    sealed = cipher.seal({"bmc_password": "s3cret-pw"})
    stranger = Cipher((new_key(),))
    with pytest.raises(ValueError, match="cannot be decrypted with the configured keys"):
        stranger.unseal(sealed)
    with pytest.raises(ValueError):
        cipher.decrypt(PREFIX + "not-a-fernet-token")


def test_a_cipher_needs_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Cipher(())


def test_load_keys_prefers_configured_keys(tmp_path: Path) -> None:
    assert load_keys(("k1", "k2"), tmp_path) == ("k1", "k2")
    assert not (tmp_path / "secret.key").exists()


def test_load_keys_creates_a_private_key_file_once(tmp_path: Path) -> None:
    var = tmp_path / "var"
    (first,) = load_keys((), var)
    path = var / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys((), var) == (first,)
    c = Cipher((first,))
    assert c.decrypt(c.encrypt("x")) == "x"
