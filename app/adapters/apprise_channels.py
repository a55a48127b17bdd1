"""Notification channels through apprise: the one door to webhooks, email, Slack, Discord ...

A tenant's URL (from slipway.toml) is sent from this platform process, which the network
policy does not confine, so its sends are held to public addresses here: every name apprise
(or requests, or smtplib) resolves while a tenant's message is sent goes through
`socket.getaddrinfo`, which this module wraps once per process; within a tenant send
(a thread-local flag) an answer holding a loopback, private, link-local or reserved address is
refused before any connection is made. Checking at resolution time, not before the send,
leaves no window for a name that resolves to a public address first and a private one after.

The operator's URLs (SLIPWAY_NOTIFY) are trusted: they reach anything, the host included.

Apprise's own log lines may name a channel's host or path (tokens), so its logger does not
propagate to the platform's log; its warnings are captured per send, scrubbed of the URL's
parts, and become the ChannelError's message, which the outbox records.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from app.kernel.errors import ChannelError
from manifests.notify_urls import NotifyUrlRefused, check_tenant_url, is_public_address

log = logging.getLogger(__name__)

_local = threading.local()
_install_lock = threading.Lock()
_original_getaddrinfo = socket.getaddrinfo
MAX_ERROR_CHARS = 500
"""What is kept of apprise's complaints about one send (the outbox stores it per attempt)."""


class AddressRefused(OSError):
    """A tenant's channel resolved to an address it may not reach."""


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    answers = _original_getaddrinfo(host, *args, **kwargs)
    if getattr(_local, "tenant", False):
        for _family, _type, _proto, _name, sockaddr in answers:
            if not is_public_address(str(sockaddr[0])):
                _local.refused = True
                raise AddressRefused(
                    "the channel's host resolves to a loopback, private, link-local or reserved "
                    "address: a repository's channels reach public hosts only"
                )
    return answers


def install_address_guard() -> None:
    """Wrap socket.getaddrinfo once; outside a tenant send it only passes through."""
    with _install_lock:
        if socket.getaddrinfo is not _guarded_getaddrinfo:
            socket.getaddrinfo = _guarded_getaddrinfo


class _Captured(logging.Handler):
    """Apprise's warnings of the sending thread, kept for the ChannelError's message."""

    def emit(self, record: logging.LogRecord) -> None:
        lines = getattr(_local, "lines", None)
        if lines is not None:
            try:
                lines.append(record.getMessage())
            except Exception:  # a malformed record must not break a send
                lines.append(record.msg if isinstance(record.msg, str) else "?")


def secret_parts(url: str) -> list[str]:
    """Every piece of a URL that may be a token: user, password, host, path segments, query
    values (longest first, so a piece inside another is scrubbed after it)."""
    try:
        parts = urlsplit(url)
        pieces = [parts.username, parts.password, parts.hostname, parts.netloc]
        pieces += [unquote(p) for p in parts.path.split("/")]
        pieces += [p for p in parts.path.split("/")]
        for _key, value in parse_qsl(parts.query, keep_blank_values=True):
            pieces.append(value)
    except ValueError:
        pieces = re.split(r"[/:@?&=#]+", url)
    return sorted({p for p in pieces if p and len(p) >= 3}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """The text with nothing of the URL left in it."""
    text = text.replace(url, "<channel>")
    for piece in secret_parts(url):
        text = text.replace(piece, "***")
    return text


class AppriseChannels:
    """The ChannelSender port over apprise's plugins (one plugin instance per send).

    Apprise is loaded at the first send, not at start: its plugins cost seconds of CPU and
    ~40 MiB, which a worker whose platform notifies nobody never pays."""

    def __init__(self) -> None:
        self._apprise: Any = None
        self._asset: Any = None
        self._loading = threading.Lock()

    def _load(self) -> Any:
        with self._loading:
            if self._apprise is None:
                import apprise

                apprise_log = logging.getLogger(apprise.LOGGER_NAME)
                apprise_log.propagate = False
                if not any(isinstance(h, _Captured) for h in apprise_log.handlers):
                    apprise_log.addHandler(_Captured(level=logging.WARNING))
                if apprise_log.level == logging.NOTSET or apprise_log.level > logging.WARNING:
                    apprise_log.setLevel(logging.WARNING)
                install_address_guard()
                # Nothing written to disk (apprise's persistent store defaults to a cache dir).
                self._asset = apprise.AppriseAsset(storage_mode="memory")
                self._apprise = apprise
            return self._apprise

    def send(self, url: str, *, title: str, body: str, tenant: bool) -> None:
        if tenant:
            try:
                check_tenant_url(url)
            except NotifyUrlRefused as exc:
                raise ChannelError(f"refused: {exc}") from None
        apprise = self._load()
        plugin = apprise.Apprise.instantiate(url, asset=self._asset)
        if plugin is None:
            raise ChannelError("apprise does not understand this URL (unknown scheme or fields)")
        _local.lines = []
        _local.refused = False
        _local.tenant = tenant
        try:
            delivered = plugin.notify(
                body=body, title=title, notify_type=apprise.NotifyType.WARNING
            )
        except AddressRefused as exc:
            raise ChannelError(f"refused: {exc}") from None
        except Exception as exc:
            raise ChannelError(scrub(f"{type(exc).__name__}: {exc}", url)) from None
        finally:
            lines: list[str] = _local.lines
            refused = bool(_local.refused)
            _local.lines = None
            _local.tenant = False
        if refused:
            raise ChannelError(
                "refused: the channel's host resolves to a loopback, private, link-local or "
                "reserved address: a repository's channels reach public hosts only"
            )
        if not delivered:
            said = scrub(" | ".join(lines), url)[:MAX_ERROR_CHARS]
            raise ChannelError(said or "the channel did not accept the message")
