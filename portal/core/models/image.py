"""Images, as Glance users know them: metadata here, bytes in an image store."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import Base, TimestampMixin, new_uuid


class Image(TimestampMixin, Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), index=True)
    disk_format: Mapped[str] = mapped_column(String(16), default="raw")
    container_format: Mapped[str] = mapped_column(String(16), default="bare")
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    visibility: Mapped[str] = mapped_column(String(16), default="private", index=True)
    owner: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    size: Mapped[int | None] = mapped_column(BigInteger)
    # The disk the image describes: its size for raw, the header's for qcow2 (Glance's name).
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    # sha256 the uploader promised (verified on upload) and the one we computed.
    expected_sha256: Mapped[str | None] = mapped_column(String(64))
    checksum_sha256: Mapped[str | None] = mapped_column(String(64))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)


class ImageMember(Base):
    """Projects an image with visibility ``shared`` is shared with."""

    __tablename__ = "image_members"

    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
