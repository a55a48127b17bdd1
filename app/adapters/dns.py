"""DNS as visitors see it: the machine's own resolver (/etc/resolv.conf), or one given."""

from __future__ import annotations

import dns.exception
import dns.resolver

from app.kernel.ports import DnsAnswer

TIMEOUT_SECONDS = 5.0
"""A whole lookup, every server tried: a check that cannot finish says `pending`, not an error."""


class SystemResolver:
    """dnspython's stub resolver: /etc/resolv.conf, or `nameserver` (host:port) instead."""

    def __init__(self, nameserver: str | None = None) -> None:
        self._resolver = dns.resolver.Resolver(configure=nameserver is None)
        if nameserver is not None:
            host, _, port = nameserver.rpartition(":")
            self._resolver.nameservers = [host.strip("[]")]
            self._resolver.port = int(port)
        self._resolver.lifetime = TIMEOUT_SECONDS
        # A cached answer would keep a domain pending for a record's TTL after it was fixed.
        self._resolver.cache = None

    def resolve(self, name: str) -> DnsAnswer:
        canonical = name.rstrip(".").lower()
        addresses: set[str] = set()
        for kind in ("A", "AAAA"):
            try:
                answer = self._resolver.resolve(name, kind, search=False)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
                continue
            except dns.exception.Timeout:
                continue
            canonical = str(answer.canonical_name).rstrip(".").lower()
            addresses.update(record.to_text() for record in answer)
        return DnsAnswer(canonical_name=canonical, addresses=frozenset(addresses))
