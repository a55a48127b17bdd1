"""Which notification URLs a repository may name in `slipway.toml` (`[notify] urls`).

The URLs are apprise URLs, sent from a platform process (the worker), not from the tenant's
container: the network policy does not confine them. Apprise speaks over a hundred schemes, and
some of them act on the machine that sends: `slack://…?template=/etc/passwd` reads a local file
into the message, `?attach=` fetches a URL, `syslog://`, `dbus://` and `windows://` talk to the
host itself, `json://10.0.0.5/…` posts into the LAN. So a tenant's URL must:

- use a scheme of TENANT_SCHEMES: webhooks, email and chat services that only send a message;
- carry only the query keys of TENANT_QUERY_KEYS (no template, attachment, key file or timeout);
- not name a loopback, private, link-local or otherwise non-public address (checked here for
  literal addresses and local names; the sender checks every address it resolves again, at
  connection time, so a name that resolves to one is refused too).

The operator's own URLs (SLIPWAY_NOTIFY) are trusted and not held to this.
Messages never echo a URL: it carries tokens.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import unquote, unquote_plus, urlsplit

TENANT_SCHEMES = frozenset(
    {
        # Plain webhooks: a JSON, XML or form POST to the tenant's own public server.
        "json",
        "jsons",
        "xml",
        "xmls",
        "form",
        "forms",
        # Email through the tenant's own (public) SMTP server.
        "mailto",
        "mailtos",
        # Chat and push services at their own public hosts.
        "slack",
        "discord",
        "msteams",
        "tgram",
        "pover",
        "pbul",
        "ntfy",
        "ntfys",
        "gotify",
        "gotifys",
        "matrix",
        "matrixs",
        "mmost",
        "mmosts",
        "rocket",
        "rockets",
        "zulip",
    }
)
"""Schemes whose plugins only send the message to a host named in the URL or fixed by the
service; anything reading files or talking to the local machine is left out."""

OWN_HOST_SCHEMES = frozenset(
    TENANT_SCHEMES - {"slack", "discord", "msteams", "tgram", "pover", "pbul"}
)
"""Schemes whose URL names the host to connect to (the others name tokens of a service at its
own fixed host), so their host is checked here as well as at connection time."""

TENANT_QUERY_KEYS = frozenset(
    {
        "format",
        "overflow",
        "to",
        "cc",
        "bcc",
        "from",
        "name",
        "reply",
        "smtp",
        "mode",
        "user",
        "pass",
        "priority",
        "tags",
        "avatar",
        "footer",
        "image",
        "botname",
        "channel",
        "channels",
        "method",
        "verify",
    }
)
"""Query keys a tenant's URL may carry. Left out on purpose: `template` and `attach` (read a
local file or fetch a URL into the message), key and certificate paths, `cto`/`rto` (timeouts
that would hold a worker's thread), and every other key: refused rather than guessed about.
Apprise's `+header`, `-field` and `:token` keys of webhooks only shape what is sent to the
webhook's own host, so they pass."""

PAYLOAD_PREFIXES = ("+", "-", ":")

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")
MAX_URL_LENGTH = 2048
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class NotifyUrlRefused(ValueError):
    """Why a tenant's notification URL is refused (never containing the URL itself)."""


def is_public_address(address: str) -> bool:
    """Whether an IP address is one a tenant's notification may reach: globally routable, not
    loopback, private, link-local (the cloud metadata address), CGNAT, multicast or reserved."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 (mapped, 6to4, Teredo, NAT64) is judged as the
        # IPv4 address the packets end up at.
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(e is not None and not is_public_address(str(e)) for e in embedded):
            return False
    return ip.is_global and not ip.is_multicast


def _literal_address(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    try:  # 2130706433, 0x7f.1, 0177.0.0.1: what inet_aton (and so the resolver) accepts
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def check_host(host: str) -> None:
    """Refuse a host that names this machine or a non-public network without resolving it."""
    name = host.strip().rstrip(".").lower()
    if not name:
        return
    if name in LOCAL_NAMES or name.endswith(LOCAL_SUFFIXES):
        raise NotifyUrlRefused(f"the host {name!r} is local: only public hosts are reached")
    address = _literal_address(name)
    if address is not None and not is_public_address(address):
        raise NotifyUrlRefused(
            "the address is loopback, private, link-local or reserved: only public hosts are "
            "reached"
        )


def check_tenant_url(url: str) -> str:
    """The URL, stripped, if a repository may use it; else NotifyUrlRefused saying why."""
    url = url.strip()
    if not url:
        raise NotifyUrlRefused("an empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise NotifyUrlRefused(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise NotifyUrlRefused("contains spaces or control characters")
    scheme, sep, _rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise NotifyUrlRefused("not a URL of the form scheme://…")
    if scheme not in TENANT_SCHEMES:
        shown = scheme if scheme.isalnum() and len(scheme) <= 20 else "this"
        raise NotifyUrlRefused(
            f"the {shown!r} scheme is not allowed in slipway.toml; allowed: "
            + ", ".join(sorted(TENANT_SCHEMES))
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise NotifyUrlRefused("not a valid URL") from exc
    if scheme in OWN_HOST_SCHEMES:
        check_host(host)
    for pair in filter(None, parts.query.split("&")):
        # Split by hand: parse_qsl reads a leading `+` (apprise's header prefix) as a space.
        raw_key, _eq, raw_value = pair.partition("=")
        key, value = unquote(raw_key), unquote_plus(raw_value)
        low = key.lower()
        if low.startswith(PAYLOAD_PREFIXES):
            continue
        if low not in TENANT_QUERY_KEYS:
            shown = low if low.isidentifier() and len(low) <= 20 else "this"
            raise NotifyUrlRefused(
                f"the query key {shown!r} is not allowed in slipway.toml; allowed: "
                + ", ".join(sorted(TENANT_QUERY_KEYS))
            )
        if low == "smtp":
            check_host(value)
    return url
