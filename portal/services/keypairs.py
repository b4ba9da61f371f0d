"""SSH keypairs, per user as in Nova."""

from __future__ import annotations

import base64
import binascii
import hashlib

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Conflict, Invalid
from portal.core.models import Keypair
from tenants.principal import Principal

KEY_TYPES = (
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
)


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint; rejects anything that is not one public key."""
    parts = public_key.strip().split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES or "\n" in public_key.strip():
        raise Invalid(
            f"not an OpenSSH public key (expected one of {', '.join(KEY_TYPES[:2])}, ...)",
            field="public_key",
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("public key body is not valid base64", field="public_key") from None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def create(s: Session, name: str, public_key: str, principal: Principal) -> Keypair:
    kp = Keypair(
        name=name,
        user_id=principal.user_id,
        project_id=principal.project_id,
        public_key=public_key.strip(),
        fingerprint=fingerprint(public_key),
    )
    try:
        with s.begin_nested():
            s.add(kp)
    except IntegrityError:
        raise Conflict(f"keypair '{name}' already exists", field="name") from None
    events.record(
        s,
        "keypair.created",
        "keypair",
        kp.id,
        actor=principal.actor,
        project_id=principal.project_id,
        name=name,
        fingerprint=kp.fingerprint,
    )
    return kp
