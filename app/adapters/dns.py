"""DNS as visitors see it: the machine's own resolver (/etc/resolv.conf), or one given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kernel.ports import DnsAnswer

if TYPE_CHECKING:
    import dns.resolver

TIMEOUT_SECONDS = 5.0
"""A whole lookup, every server tried: a check that cannot finish says `pending`, not an error."""


class SystemResolver:
    """dnspython's stub resolver: /etc/resolv.conf, or `nameserver` (host:port) instead.

    dnspython is loaded at the first lookup, not with the platform: most installs have no
    custom domain, and a process at rest should not carry a resolver it never uses."""

    def __init__(self, nameserver: str | None = None) -> None:
        self._nameserver = nameserver
        self._made: dns.resolver.Resolver | None = None

    @property
    def _resolver(self) -> dns.resolver.Resolver:
        if self._made is None:
            import dns.resolver

            resolver = dns.resolver.Resolver(configure=self._nameserver is None)
            if self._nameserver is not None:
                host, _, port = self._nameserver.rpartition(":")
                resolver.nameservers = [host.strip("[]")]
                resolver.port = int(port)
            resolver.lifetime = TIMEOUT_SECONDS
            # A cached answer would keep a domain pending for a record's TTL after it was fixed.
            resolver.cache = None
            self._made = resolver
        return self._made

    def resolve(self, name: str) -> DnsAnswer:
        import dns.exception
        import dns.resolver

        canonical = name.rstrip(".").lower()
        addresses: set[str] = set()
        resolver = self._resolver
        for kind in ("A", "AAAA"):
            try:
                answer = resolver.resolve(name, kind, search=False)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
                continue
            except dns.exception.Timeout:
                continue
            canonical = str(answer.canonical_name).rstrip(".").lower()
            addresses.update(record.to_text() for record in answer)
        return DnsAnswer(canonical_name=canonical, addresses=frozenset(addresses))
