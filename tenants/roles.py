"""Roles and what each may do. ``admin`` is a role, not a special tenant."""

from __future__ import annotations

ADMIN = "admin"
MEMBER = "member"
READER = "reader"
ROLES = (ADMIN, MEMBER, READER)


def can_write(role: str) -> bool:
    return role in (ADMIN, MEMBER)
