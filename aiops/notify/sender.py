"""Send notifications through apprise: one message per target, a down channel never raises.

Channels are AIOPS_NOTIFY_URLS (comma-separated apprise URLs, each optionally `name=url`)
plus a registry service's `metadata.notify` list for its own incidents. A channel becomes
one target per recipient: a mailto URL one per `to` address (each gets links naming that
address), any other URL one target named by its `name=` prefix, else `channel:<scheme>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise

from aiops.config import Settings
from aiops.notify.links import LinkRefused, LinkSigner, Verdict, link_key, link_url, public_base
from aiops.notify.messages import ApprovalLinks, Message, render, web_ui_link
from aiops.notify.models import (
    APPROVAL_KINDS,
    ChannelResult,
    NotificationKind,
    NotifyRequest,
)
from aiops.registry import ServiceRegistry
from aiops.registry.store import UnknownService

log = logging.getLogger("aiops.notify")

_NAMED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.@+-]{0,63})=([A-Za-z][A-Za-z0-9+.-]*://.*)$")
_URL_START = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}=)?[A-Za-z][A-Za-z0-9+.-]*://")
_EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
_SEND_TIMEOUT_S = 30.0

_TYPE = {
    NotificationKind.APPROVAL_REQUESTED: apprise.NotifyType.WARNING,
    NotificationKind.APPROVAL_REMINDER: apprise.NotifyType.WARNING,
    NotificationKind.APPROVAL_TIMEOUT: apprise.NotifyType.FAILURE,
    NotificationKind.ESCALATED_UNKNOWN: apprise.NotifyType.FAILURE,
    NotificationKind.REMEDIATION_FAILED: apprise.NotifyType.FAILURE,
    NotificationKind.FIXES_EXHAUSTED: apprise.NotifyType.FAILURE,
    NotificationKind.HEALED: apprise.NotifyType.SUCCESS,
    NotificationKind.AUDIT_BROKEN: apprise.NotifyType.FAILURE,
}


@dataclass(frozen=True)
class Channel:
    """One configured apprise URL. `url` holds secrets: never log, audit or show it."""

    url: str
    name: str | None
    scheme: str
    redacted: str

    @property
    def id(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Target:
    """One message: a channel, and for e-mail one recipient of it."""

    channel: Channel
    url: str
    recipient: str

    @property
    def id(self) -> str:
        return f"{self.channel.id}:{self.recipient}"

    @property
    def html(self) -> bool:
        return self.channel.scheme in _EMAIL_SCHEMES

    def result(self, ok: bool, error: str | None = None, skipped: bool = False) -> ChannelResult:
        return ChannelResult(
            scheme=self.channel.scheme,
            channel=self.channel.redacted,
            recipient=self.recipient,
            ok=ok,
            skipped=skipped,
            error=error,
        )


def split_urls(text: str) -> list[str]:
    """AIOPS_NOTIFY_URLS: split on commas and whitespace, but a piece that does not start a
    URL (mailto's `to=a@x,b@x`) belongs to the one before it."""
    urls: list[str] = []
    for piece in re.split(r"[,\s]+", text.strip()):
        if not piece:
            continue
        if urls and not _URL_START.match(piece):
            urls[-1] += "," + piece
        else:
            urls.append(piece)
    return urls


def redact(url: str) -> str:
    """scheme://host[:port]/path with secrets masked: apprise's privacy form without its
    query (headers, tokens), and long path parts (webhook tokens) shortened."""
    plugin = apprise.Apprise.instantiate(url)
    private = (
        str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
        if plugin is not None
        else url
    )
    parts = urlsplit(private)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    if parts.username:
        host = f"{parts.username}:****@{host}" if parts.password else f"{parts.username}@{host}"
    segments = [
        s if len(s) <= 12 or "%40" in s or "@" in s else f"{s[:2]}...{s[-2:]}"
        for s in parts.path.split("/")
    ]
    return f"{parts.scheme}://{host}{'/'.join(segments)}".rstrip("/")


def parse_channel(entry: str) -> Channel:
    named = _NAMED.match(entry)
    name, url = (named.group(1), named.group(2)) if named else (None, entry)
    scheme = url.split("://", 1)[0].lower()
    try:
        shown = redact(url)
    except Exception:  # an URL apprise cannot read: show no more than its scheme
        shown = f"{scheme}://..."
    return Channel(url=url, name=name, scheme=scheme, redacted=shown)


def _recipient_url(url: str, address: str) -> str:
    """The mailto URL sending to `address` alone (no path targets, no cc or bcc)."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in ("to", "cc", "bcc")
    ]
    query.append(("to", address))
    return urlunsplit((parts.scheme, parts.netloc, "", urlencode(query), ""))


class Notifier:
    """The channels, the link signer, and the sending; the activity adds audit and retries."""

    def __init__(
        self,
        settings: Settings,
        registry: ServiceRegistry | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._links = links
        self.channels_configured = [parse_channel(u) for u in split_urls(settings.notify_urls)]
        self.asset = apprise.AppriseAsset(
            app_id="aiops",
            app_desc="aiops self-healing operations",
            app_url=public_base(settings) or "https://github.com/",
        )

    @property
    def links(self) -> LinkSigner:
        if self._links is None:
            self._links = LinkSigner(link_key(self.settings))
        return self._links

    async def channels(self, service: str | None) -> list[Channel]:
        """The configured channels, plus the service's own `metadata.notify` ones."""
        found = list(self.channels_configured)
        if service and self.registry is not None:
            try:
                record = await self.registry.get(service)
            except UnknownService:
                record = None
            extra = record.metadata.get("notify") if record is not None else None
            if isinstance(extra, str):
                extra = split_urls(extra)
            if isinstance(extra, list):
                found += [parse_channel(str(u)) for u in extra if str(u).strip()]
        unique: dict[str, Channel] = {}
        for channel in found:
            unique.setdefault(channel.url, channel)
        return list(unique.values())

    @staticmethod
    def targets(channels: list[Channel]) -> tuple[list[Target], list[ChannelResult]]:
        """(targets to send to, results for channels that cannot be used at all)."""
        targets: list[Target] = []
        broken: list[ChannelResult] = []
        for channel in channels:
            try:
                plugin = apprise.Apprise.instantiate(channel.url)
            except Exception:
                plugin = None
            if plugin is None:
                broken.append(
                    ChannelResult(
                        scheme=channel.scheme,
                        channel=channel.redacted,
                        recipient=channel.name or f"channel:{channel.scheme}",
                        ok=False,
                        error="not an apprise URL this server can use",
                    )
                )
                continue
            addresses = [
                str(t[1]) for t in getattr(plugin, "targets", []) if isinstance(t, tuple | list)
            ]
            if channel.scheme in _EMAIL_SCHEMES and addresses:
                targets += [
                    Target(channel, _recipient_url(channel.url, a), a)
                    for a in dict.fromkeys(addresses)
                ]
            else:
                targets.append(
                    Target(channel, channel.url, channel.name or f"channel:{channel.scheme}")
                )
        return targets, broken

    def expiry(self, request: NotifyRequest, now: datetime) -> datetime:
        if request.expires_at is not None:
            return request.expires_at.astimezone(UTC)
        timeout = request.approval_timeout_s or self.settings.approval_timeout_s
        return now + timedelta(seconds=timeout)

    def message(
        self, request: NotifyRequest, target: Target, now: datetime | None = None
    ) -> Message:
        now = now or datetime.now(UTC)
        ui = web_ui_link(
            self.settings.web_ui_url, self.settings.temporal_namespace, request.incident_id
        )
        links = None
        expires = self.expiry(request, now) if request.kind in APPROVAL_KINDS else None
        base = public_base(self.settings)
        if (
            expires is not None
            and base is not None
            and request.workflow_id
            and request.step
            and request.decision_id
        ):
            try:
                links = ApprovalLinks(
                    approve=link_url(base, self._sign(request, target, "approve", expires, now)),
                    reject=link_url(base, self._sign(request, target, "reject", expires, now)),
                    recipient=target.recipient,
                    expires_at=expires,
                )
            except LinkRefused:
                links = None  # the wait is over: a reminder without links
        return render(request, links=links, web_ui=ui, expires_at=expires)

    def _sign(
        self,
        request: NotifyRequest,
        target: Target,
        verdict: Verdict,
        expires: datetime,
        now: datetime,
    ) -> str:
        assert request.workflow_id and request.step and request.decision_id
        return self.links.sign(
            workflow_id=request.workflow_id,
            incident_id=request.incident_id,
            step=request.step,
            decision_id=request.decision_id,
            verdict=verdict,
            recipient=target.recipient,
            service=request.service,
            expires_at=expires,
            now=now,
        )

    async def deliver(
        self, target: Target, message: Message, kind: NotificationKind
    ) -> ChannelResult:
        """Send one message; the result says how it went (never raises for a channel)."""
        try:
            sender = apprise.Apprise(asset=self.asset)
            if not sender.add(target.url):
                return target.result(False, "not an apprise URL this server can use")
            outcome = await sender.async_notify(
                body=message.html if target.html else message.text,
                title=message.title,
                notify_type=_TYPE[kind],
                body_format=apprise.NotifyFormat.HTML if target.html else apprise.NotifyFormat.TEXT,
                timeout=_SEND_TIMEOUT_S,
            )
        except Exception as error:  # a plugin's own failure is a failed channel, not ours
            log.warning(
                "notification to %s failed: %s", target.channel.redacted, type(error).__name__
            )
            return target.result(False, f"{type(error).__name__} while sending")
        if bool(outcome):
            return target.result(True)
        said = [
            entry.message
            for entry in outcome.logs()
            if entry.level in ("WARNING", "ERROR", "CRITICAL")
        ]
        why = _scrub(said[-1] if said else outcome.status.name.lower(), target.url)
        log.warning("notification to %s failed: %s", target.channel.redacted, why)
        return target.result(False, why[:300])

    async def send(self, request: NotifyRequest) -> list[ChannelResult]:
        """Every target of the request's service, concurrently (no audit, no idempotence:
        that is the activity's)."""
        targets, broken = self.targets(await self.channels(request.service))
        sent = await asyncio.gather(
            *(self.deliver(t, self.message(request, t), request.kind) for t in targets)
        )
        return [*broken, *sent]


def _scrub(text: str, url: str) -> str:
    """No part of the URL's secrets in an error text."""
    parts = urlsplit(url)
    for secret in (url, parts.password, parts.username, *parts.path.split("/")):
        if secret and len(secret) >= 6:
            text = text.replace(secret, "****")
    return text
