"""One TLS context per process for the platform's own HTTP clients.

httpx makes a context, and loads its whole CA bundle into it, for every client or transport
given none: ~1 MiB of C memory each, held as long as the client. At rest the combined process
held four (GitHub's client for the API and for the worker, the replicas' health probe and
Caddy's admin API, the last two speaking plain HTTP only); one shared context serves them all
(issue 22). A context may be shared by threads and connections; it is made as httpx would make
it (certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR), at the first client that needs it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()
