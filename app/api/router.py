"""The router's question before it orders a certificate: is this a name Slipway routes?

Caddy's on-demand TLS asks `GET /router/ask?domain=<name>` at the first TLS handshake for a
name and orders a certificate only on a 2xx. Open like /healthz: the answer says no more than
a request to the router would (whether the name is served).
"""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.status_codes import HTTP_200_OK, HTTP_404_NOT_FOUND

from app.bootstrap import ASK_PATH
from app.replicas.routes import CertificatePermission


@get(ASK_PATH, media_type=MediaType.TEXT, sync_to_thread=True)
def ask(
    domain: FromQuery[str], certificates: NamedDependency[CertificatePermission]
) -> Response[str]:
    if certificates.allows(domain):
        return Response("routed\n", status_code=HTTP_200_OK)
    return Response("not routed by this platform\n", status_code=HTTP_404_NOT_FOUND)
