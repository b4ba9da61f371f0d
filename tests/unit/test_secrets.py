"""Encryption at rest of driver_info secrets: seal/unseal, redaction, key rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from portal.core.errors import Invalid
from portal.core.secrets import (
    PREFIX,
    REDACTED,
    Cipher,
    SecretFields,
    is_secret_field,
    load_keys,
    redact,
    secret_values,
)

# As a driver would declare them: a name the generic rule would not catch.
FIELDS = SecretFields(frozenset({"ipmi_password", "bmc_credential_blob"}))

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


def test_user_input_that_looks_encrypted_is_encrypted_again(cipher: Cipher) -> None:
    """Only stored values are known-encrypted: a password the user sends as ``fernet:…``
    (even a real token) is a literal password, stored encrypted and given back as sent."""
    once = cipher.seal(INFO)
    twice = cipher.seal(once)
    assert twice["bmc_password"] != once["bmc_password"]
    assert cipher.unseal(twice)["bmc_password"] == once["bmc_password"]
    literal = {"ipmi_password": "fernet:not-a-token"}
    sealed = cipher.seal(literal)
    assert sealed["ipmi_password"] != literal["ipmi_password"]
    assert cipher.unseal(sealed) == literal  # no "cannot be decrypted" for the driver
    assert cipher.encrypt("same") != cipher.encrypt("same")


def test_unseal_passes_legacy_clear_text_through(cipher: Cipher) -> None:
    assert cipher.unseal({"bmc_password": "plain"}) == {"bmc_password": "plain"}
    assert cipher.decrypt("plain") == "plain"


def test_redact_masks_secrets_but_keeps_empty_and_other_values() -> None:
    out = redact({**INFO, "other_password": "", "none_token": None}, FIELDS)
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


NESTED = {
    "ipmi_address": "10.0.0.9",
    "bmc": {"bmc_password": "nested-pw", "deeper": {"ipmi_password": "deep-pw"}},
    "consoles": [{"user": "u", "api_token": "list-token"}, "plain entry"],
    "ipmi_password": 12345678,  # a number is a secret too
    "bmc_credential_blob": {"user": "root", "pw": "blob-pw"},  # declared: the whole object
    "flag_secret": True,
}
CLEAR = ("nested-pw", "deep-pw", "list-token", "12345678", "blob-pw")


def test_secrets_at_any_depth_and_of_any_type_are_encrypted_and_come_back() -> None:
    c = Cipher((new_key(),), FIELDS)
    sealed = c.seal(NESTED)
    text = repr(sealed)
    for clear in CLEAR:
        assert clear not in text
    assert sealed["ipmi_address"] == "10.0.0.9" and sealed["consoles"][1] == "plain entry"
    assert sealed["bmc"]["deeper"]["ipmi_password"].startswith(PREFIX)
    assert sealed["ipmi_password"].startswith("fernet-json:")
    assert c.unseal(sealed) == NESTED  # types kept: the number is a number again


def test_redact_at_any_depth_and_of_any_type() -> None:
    out = redact(NESTED, FIELDS)
    for clear in CLEAR:
        assert clear not in repr(out)
    assert out["bmc"]["deeper"]["ipmi_password"] == REDACTED
    assert out["consoles"][0] == {"user": "u", "api_token": REDACTED}
    assert out["ipmi_password"] == out["bmc_credential_blob"] == out["flag_secret"] == REDACTED
    assert out["ipmi_address"] == "10.0.0.9"


def test_redacted_values_sent_back_keep_the_stored_secret_at_any_depth() -> None:
    c = Cipher((new_key(),), FIELDS)
    stored = c.seal(NESTED)
    sent = redact(NESTED, FIELDS)
    sent["bmc"]["deeper"]["ipmi_password"] = "changed-pw"
    merged = c.seal(sent, stored=stored)
    assert merged["bmc"]["bmc_password"] == stored["bmc"]["bmc_password"]
    assert merged["consoles"][0]["api_token"] == stored["consoles"][0]["api_token"]
    back = c.unseal(merged)
    assert back["bmc"]["deeper"]["ipmi_password"] == "changed-pw"
    assert back["ipmi_password"] == 12345678 and back["consoles"][0]["api_token"] == "list-token"
    with pytest.raises(Invalid, match="none is stored"):
        c.seal({"new_password": REDACTED}, stored=stored)


def test_secret_values_lists_every_text_form() -> None:
    forms = secret_values({"x": {"bmc_password": "a b/c"}, "ipmi_password": 42}, FIELDS)
    assert {"a b/c", "a%20b%2Fc", "42"} <= set(forms)


def test_reseal_encrypts_legacy_clear_text_and_rotates() -> None:
    old, new = new_key(), new_key()
    legacy = {"ipmi_password": 1234, "bmc": {"bmc_password": "fernet:literal"}}
    during = Cipher((new, old), FIELDS)
    token = Cipher((old,), FIELDS).seal({"api_token": "t"})["api_token"]
    stored = {**legacy, "api_token": token}
    sealed, changed = during.reseal(stored, rotate=False)
    assert changed == 2 and sealed["api_token"] == token  # only the clear text
    assert during.unseal(sealed) == {**legacy, "api_token": "t"}
    rotated, changed = during.reseal(sealed, rotate=True)
    assert changed == 3
    assert Cipher((new,), FIELDS).unseal(rotated) == {**legacy, "api_token": "t"}


# -- what drivers get and what leaves them -------------------------------------------------


def test_a_node_task_repr_shows_no_secret() -> None:
    from workers.drivers.base import NodeTask

    task = NodeTask("n1", {"ipmi_password": "pw-in-repr", "x": {"redfish_password": 4242}})
    assert "pw-in-repr" not in repr(task) and "4242" not in repr(task)
    assert "n1" in repr(task) and REDACTED in repr(task)


def test_driver_errors_are_scrubbed_of_every_secret_form_and_url_credentials() -> None:
    from workers.drivers.base import DriverError, ErrorKind, NodeTask, Scrubbed

    info = {"ipmi_password": "p@ss word", "nest": [{"redfish_password": 987654321}]}
    task = NodeTask("n1", info)

    class Leaky:
        image_formats = ("raw",)

        def validate(self, task: NodeTask) -> None:
            raise DriverError(
                "https://root:p%40ss%20word@bmc/ and p@ss word and 987654321 and "
                "http://u:other@10.0.0.1/x",
                ErrorKind.AUTH,
            )

        def reboot(self, task: NodeTask) -> None:
            raise RuntimeError(f"library said {task.driver_info}")

    wrapped = Scrubbed(Leaky())
    assert wrapped.image_formats == ("raw",)
    with pytest.raises(DriverError) as caught:
        wrapped.validate(task)
    text = str(caught.value)
    assert caught.value.kind == ErrorKind.AUTH
    for clear in ("p@ss word", "p%40ss%20word", "987654321", "other"):
        assert clear not in text
    assert "http://u:******@10.0.0.1/x" in text
    with pytest.raises(DriverError) as caught:
        wrapped.reboot(task)
    assert "p@ss word" not in str(caught.value) and "RuntimeError" in str(caught.value)
