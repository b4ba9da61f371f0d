"""Encryption at rest for secrets in ``driver_info`` (BMC passwords and the like).

Keys are Fernet keys, newest first: encryption uses the first, decryption tries all,
so a key rotation is "prepend the new key, run ``bms secrets rotate``, drop the old".
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"
REDACTED = "******"


@functools.lru_cache(maxsize=1024)
def is_secret_field(key: str) -> bool:
    # Cached: a 1,000-node list asks for the same few keys thousands of times.
    k = key.lower()
    return k.endswith("password") or k.endswith("secret") or k.endswith("token") or k == "key"


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
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one secret key is required")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, value: str) -> str:
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        if not value.startswith(PREFIX):
            return value
        try:
            return self._fernet.decrypt(value.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with the configured keys") from None

    def rotate(self, value: str) -> str:
        if not value.startswith(PREFIX):
            return self.encrypt(value)
        return PREFIX + self._fernet.rotate(value.removeprefix(PREFIX).encode()).decode()

    def seal(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """Encrypt every secret field that is not encrypted yet."""
        return {
            k: self.encrypt(v)
            if is_secret_field(k) and isinstance(v, str) and not v.startswith(PREFIX)
            else v
            for k, v in info.items()
        }

    def unseal(self, info: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: self.decrypt(v) if is_secret_field(k) and isinstance(v, str) else v
            for k, v in info.items()
        }


def redact(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: REDACTED if is_secret_field(k) and v else v for k, v in info.items()}
