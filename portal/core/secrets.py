"""Encryption at rest for secrets in ``driver_info`` (BMC passwords and the like).

Which values are secret is decided by their **key**, never by their shape: a key is secret
if a driver declares it (``Driver.secret_fields``: ``ipmi_password``, ``redfish_password``…)
or if its name follows the generic rule (:func:`generic_secret`) that covers drivers this
code does not know. The rule applies at any depth of ``driver_info`` (objects nested in
objects and lists), and everything under a secret key is the secret: a string, a number,
a boolean, a whole object.

Stored forms: ``fernet:<token>`` (a string secret) and ``fernet-json:<token>`` (any other
value, as JSON). Only values read back from the database are taken as encrypted: what a
user sends is always encrypted, even if it looks like a token already.

Keys are Fernet keys, newest first: encryption uses the first, decryption tries all,
so a key rotation is "prepend the new key, run ``bms secrets rotate``, drop the old".
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from portal.core.errors import Invalid

PREFIX = "fernet:"
JSON_PREFIX = "fernet-json:"
REDACTED = "******"
GENERIC_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "private_key")


@functools.lru_cache(maxsize=1024)
def generic_secret(key: str) -> bool:
    """The rule for keys no driver declared. Cached: a 1,000-node list asks for the same
    few keys thousands of times."""
    k = key.lower()
    return k.endswith(GENERIC_SUFFIXES) or k == "key"


@dataclass(frozen=True)
class SecretFields:
    """The secret keys of ``driver_info``: the drivers' declared ones plus the generic rule."""

    declared: frozenset[str] = field(default_factory=frozenset)
    # Answers so far, per key: a 1,000-node list asks for the same few keys thousands of times.
    _seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        known = self._seen.get(key)
        if known is None:
            known = key.lower() in self.declared or generic_secret(key)
            if len(self._seen) < 4096:
                self._seen[key] = known
        return known


GENERIC = SecretFields()


def is_secret_field(key: str, fields: SecretFields = GENERIC) -> bool:
    return key in fields


def _blank(value: Any) -> bool:
    """Nothing to hide: an absent or empty value is stored and shown as it is."""
    return value is None or value == ""


def _walk(info: Any, fields: SecretFields, on_secret: Any, path: tuple[Any, ...] = ()) -> Any:
    """A copy of ``info`` with ``on_secret(value, path)`` applied under every secret key."""
    if isinstance(info, Mapping):
        return {
            k: on_secret(v, (*path, k))
            if k in fields and not _blank(v)
            else _walk(v, fields, on_secret, (*path, k))
            for k, v in info.items()
        }
    if isinstance(info, list):
        return [_walk(v, fields, on_secret, (*path, i)) for i, v in enumerate(info)]
    return info


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        if isinstance(doc, Mapping) and isinstance(step, str):
            doc = doc.get(step)
        elif isinstance(doc, list) and isinstance(step, int) and step < len(doc):
            doc = doc[step]
        else:
            return None
    return doc


def redact(info: Mapping[str, Any], fields: SecretFields = GENERIC) -> dict[str, Any]:
    """``info`` with every secret (at any depth, of any type) shown as ``******``."""
    return {
        k: REDACTED
        if k in fields and not _blank(v)
        else (_redact_in(v, fields) if isinstance(v, (Mapping, list)) else v)
        for k, v in info.items()
    }


def _redact_in(value: Any, fields: SecretFields) -> Any:
    if isinstance(value, Mapping):
        return redact(value, fields)
    return [_redact_in(v, fields) if isinstance(v, (Mapping, list)) else v for v in value]


def secret_values(info: Mapping[str, Any], fields: SecretFields = GENERIC) -> tuple[str, ...]:
    """Every text form a secret of ``info`` (plain, as drivers get it) may take in a message:
    the string itself, its JSON, the strings inside an object, and their URL-encoding."""
    found: list[str] = []

    def collect(value: Any, path: tuple[Any, ...]) -> Any:
        forms = [value if isinstance(value, str) else json.dumps(value)]
        if not isinstance(value, str):
            forms.append(str(value))
            forms.extend(_strings(value))
        for form in forms:
            found.extend(f for f in (form, quote(form, safe="")) if f)
        return value

    _walk(info, fields, collect)
    # Longest first: a secret that contains another is replaced whole.
    return tuple(sorted(set(found), key=len, reverse=True))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def load_keys(configured: tuple[str, ...], var_dir: Path) -> tuple[str, ...]:
    """Configured keys, or a key file created once under ``var_dir`` for zero-setup installs."""
    if configured:
        return configured
    path = var_dir / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode())
    return (path.read_text().strip(),)


class Cipher:
    def __init__(
        self,
        keys: tuple[str, ...],
        fields: SecretFields | Callable[[], SecretFields] = GENERIC,
    ) -> None:
        """``fields``: the secret keys, or what gives them (the driver registry's
        ``secret_fields``, asked on each use so drivers registered later count)."""
        if not keys:
            raise ValueError("at least one secret key is required")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        self._fields = fields

    @property
    def fields(self) -> SecretFields:
        return self._fields if isinstance(self._fields, SecretFields) else self._fields()

    # -- one value -----------------------------------------------------------------------

    def encrypt(self, value: Any) -> str:
        """Always encrypts, whatever ``value`` looks like (``fernet:…`` text included)."""
        if isinstance(value, str):
            return PREFIX + self._fernet.encrypt(value.encode()).decode()
        return JSON_PREFIX + self._fernet.encrypt(json.dumps(value).encode()).decode()

    def decrypt(self, value: Any) -> Any:
        """A stored value, in clear. Legacy clear text (stored before encryption covered
        it) passes through; a token no configured key opens raises ValueError."""
        if not isinstance(value, str):
            return value
        for prefix in (JSON_PREFIX, PREFIX):
            if value.startswith(prefix):
                try:
                    clear = self._fernet.decrypt(value.removeprefix(prefix).encode()).decode()
                except InvalidToken:
                    raise ValueError(
                        "secret cannot be decrypted with the configured keys"
                    ) from None
                return json.loads(clear) if prefix == JSON_PREFIX else clear
        return value

    def is_sealed(self, value: Any) -> bool:
        """A token one of the configured keys opens (only asked of stored values)."""
        try:
            return isinstance(value, str) and self.decrypt(value) is not value
        except ValueError:
            return False

    def rotate(self, value: Any) -> str:
        """A stored value re-encrypted with the first key; legacy clear text (including
        text that only looks like a token: no key opens it) is encrypted as it is."""
        if self.is_sealed(value):
            prefix = JSON_PREFIX if value.startswith(JSON_PREFIX) else PREFIX
            return prefix + self._fernet.rotate(value.removeprefix(prefix).encode()).decode()
        return self.encrypt(value)

    # -- a whole driver_info -------------------------------------------------------------

    def seal(
        self, info: Mapping[str, Any], stored: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """User input ready to store: every secret encrypted. A secret sent back as
        ``******`` keeps what ``stored`` (the node's current driver_info) holds there."""

        def one(value: Any, path: tuple[Any, ...]) -> Any:
            if value == REDACTED:
                kept = _at(stored, path)
                if _blank(kept):
                    where = ".".join(str(p) for p in path)
                    raise Invalid(
                        f"driver_info.{where} is {REDACTED}, which keeps a stored secret, "
                        "but none is stored there",
                        field=f"driver_info.{where}",
                    )
                return kept
            return self.encrypt(value)

        return dict(_walk(info, self.fields, one))

    def unseal(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """Stored driver_info in clear, for the driver (in memory only)."""
        return dict(_walk(info, self.fields, lambda v, p: self.decrypt(v)))

    def reseal(self, info: Mapping[str, Any], rotate: bool = True) -> tuple[dict[str, Any], int]:
        """Stored driver_info with every secret encrypted by the first key (``rotate``) or
        only its legacy clear-text secrets encrypted; and how many values changed."""
        changed = 0

        def one(value: Any, path: tuple[Any, ...]) -> Any:
            nonlocal changed
            if not rotate and self.is_sealed(value):
                return value
            changed += 1
            return self.rotate(value)

        return dict(_walk(info, self.fields, one)), changed
