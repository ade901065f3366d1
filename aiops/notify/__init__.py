"""Notifications: tell people when aiops needs them (apprise), with approve and reject links."""

from aiops.notify.links import LinkClaims, LinkRefused, LinkSigner, UsedLinks, link_key
from aiops.notify.models import (
    APPROVAL_KINDS,
    ChannelResult,
    NotificationKind,
    NotifyRequest,
    NotifyResult,
)
from aiops.notify.sender import Notifier

__all__ = [
    "APPROVAL_KINDS",
    "ChannelResult",
    "LinkClaims",
    "LinkRefused",
    "LinkSigner",
    "NotificationKind",
    "Notifier",
    "NotifyRequest",
    "NotifyResult",
    "UsedLinks",
    "link_key",
]
