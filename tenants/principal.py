"""Who is calling: the result of authentication, independent of the backend."""

from __future__ import annotations

from dataclasses import dataclass

from tenants.roles import ADMIN, can_write


@dataclass(frozen=True)
class Principal:
    user_id: str
    user_name: str
    project_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def can_write(self) -> bool:
        return can_write(self.role)

    @property
    def actor(self) -> str:
        """How events name this caller."""
        return f"user:{self.user_name}"

    def sees_project(self, project_id: str | None) -> bool:
        return self.is_admin or project_id == self.project_id
