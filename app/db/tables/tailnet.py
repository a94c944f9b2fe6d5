"""Tables of the built-in tailnet: devices, attribute keys and values, remote expiries, the audit log, API keys
and OAuth clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.tables.base import Base
from app.db.types import UTCDateTime


class DeviceRow(Base):
    """A device of the built-in tailnet."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    user: Mapped[str] = mapped_column(String(255), index=True, default="")
    os: Mapped[str] = mapped_column(String(64), default="")
    client_version: Mapped[str] = mapped_column(String(128), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    serial_numbers: Mapped[list[str]] = mapped_column(JSON, default=list)
    posture_identity_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    attributes: Mapped[list[AttributeRow]] = relationship(
        back_populates="device", cascade="all, delete-orphan", passive_deletes=True
    )


# names are compared as DNS does (case-insensitively): every lookup by lower(name) uses this index (migration 0007)
Index("ix_devices_name_lower", func.lower(DeviceRow.name))


class DeviceGenerationRow(Base):
    """One row (``id`` 1): a counter bumped in the same transaction as every change of the device table, so a
    reader (the Slack device index) refreshes only when the devices changed."""

    __tablename__ = "device_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(Integer, default=0)


class AttributeKeyRow(Base):
    """One posture attribute key of the tailnet: its exact spelling and its value type."""

    __tablename__ = "attribute_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    key_folded: Mapped[str] = mapped_column(String(64), unique=True)
    value_type: Mapped[str] = mapped_column(String(16))


class AttributeRow(Base):
    """A posture attribute value on one device of the built-in tailnet."""

    __tablename__ = "device_attributes"
    __table_args__ = (
        UniqueConstraint("device_id", "key_id", name="uq_device_attributes_device_key"),
        # only values that expire: no query looks for a missing expiry, and most values (all a sync writes) have none
        Index(
            "ix_device_attributes_expires_at",
            "expires_at",
            sqlite_where=text("expires_at IS NOT NULL"),
            postgresql_where=text("expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    key_id: Mapped[int] = mapped_column(ForeignKey("attribute_keys.id", ondelete="RESTRICT"), index=True)
    value: Mapped[Any] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    comment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(255))

    device: Mapped[DeviceRow] = relationship(back_populates="attributes")
    key: Mapped[AttributeKeyRow] = relationship(lazy="joined")


class RemoteExpiryRow(Base):
    """An expiry accessbot set on a remote (Tailscale) attribute, so its passing can be audited."""

    __tablename__ = "remote_expiries"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # Tailscale allows 128
    value: Mapped[Any] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEventRow(Base):
    """One append-only audit event (UPDATE and DELETE are refused by database triggers)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    old_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    new_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    expiry: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiKeyRow(Base):
    """An API access token of the built-in HTTP API; only a hash of its secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OAuthClientRow(Base):
    """An OAuth client of the built-in HTTP API; only a hash of its secret is kept."""

    __tablename__ = "oauth_clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OAuthTokenRow(Base):
    """An access token issued to an OAuth client (hashed), valid for one hour."""

    __tablename__ = "oauth_tokens"

    token_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
