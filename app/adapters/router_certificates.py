"""Whether the router holds a certificate for a name: a TLS handshake with it, as a visitor's.

The router obtains a certificate on demand, at a name's first TLS connection, and holds that
handshake until it has one (or gave up): so this handshake both starts the issuance and says
how it ended. Only the name in the certificate is looked at, not whom it chains to: the CA is
the operator's choice, and a test CA is not in this machine's trust store.
"""

from __future__ import annotations

import socket
import ssl

from cryptography import x509

HANDSHAKE_TIMEOUT_SECONDS = 60.0
"""An order, its challenge and the issuance: seconds with Let's Encrypt; more is a failure
the next check tries again."""


class RouterCertificates:
    def __init__(self, address: tuple[str, int], timeout: float = HANDSHAKE_TIMEOUT_SECONDS):
        self._address = address
        self._timeout = timeout

    def obtain(self, name: str) -> bool:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the name is checked below; see the module's doc
        try:
            with (
                socket.create_connection(self._address, timeout=self._timeout) as raw,
                context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return False
        if not der:
            return False
        try:
            san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            )
        except (ValueError, x509.ExtensionNotFound):
            return False
        return name in san.value.get_values_for_type(x509.DNSName)
