"""A loopback stand-in for the platform's managed identity endpoint, in both forms:

* IMDS (VMs, AKS nodes): `GET /metadata/identity/oauth2/token?api-version=2018-02-01&
  resource=...[&client_id=...]` with `Metadata: true`;
* App Service / Container Apps: `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...
  [&client_id=...]` with `X-IDENTITY-HEADER: $IDENTITY_HEADER` (served at /msi/token).

Both answer as Azure does: `access_token`, `expires_on` and `expires_in` as strings of
seconds, `resource`, `token_type`. The tokens are signed by an ExternalIssuer the mock Entra
trusts (Entra itself issues them in Azure, with `iss` = the tenant's v2.0 issuer and `sub` =
the identity's principal (object) id, which is what a federated credential names).
Test-only, loopback-only: the real IMDS is a link-local address no test may reach.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from .federation import ExternalIssuer

IMDS_PATH: Final = "/metadata/identity/oauth2/token"
APP_SERVICE_PATH: Final = "/msi/token"


@dataclass
class MockIdentityEndpoint:
    """The identities of one VM/app: the system-assigned one and user-assigned ones."""

    issuer: ExternalIssuer
    principal_id: str  # the system-assigned identity's object id (None assigned: "")
    # user-assigned identities: client id -> principal (object) id
    user_assigned: dict[str, str] = field(default_factory=dict)
    identity_header: str = ""  # App Service's secret; "" refuses the App Service form
    lifetime: float = 86399.0  # IMDS tokens live about 24 h
    calls: list[dict[str, str]] = field(default_factory=list)  # query of every token request

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(IMDS_PATH, self._imds)
        app.router.add_get(APP_SERVICE_PATH, self._app_service)
        return app

    async def _imds(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata") != "true":
            return _error(400, "invalid_request", "Required metadata header not specified")
        return self._issue(request, "2018-02-01")

    async def _app_service(self, request: web.Request) -> web.Response:
        presented = request.headers.get("X-IDENTITY-HEADER", "")
        if not self.identity_header or presented != self.identity_header:
            return _error(401, "unauthorized", "X-IDENTITY-HEADER is missing or wrong")
        return self._issue(request, "2019-08-01")

    def _issue(self, request: web.Request, version: str) -> web.Response:
        query = dict(request.query)
        self.calls.append(query)
        if query.get("api-version") != version:
            return _error(400, "invalid_request", f"api-version must be {version}")
        resource = query.get("resource", "")
        if not resource:
            return _error(400, "invalid_request", "Required query variable 'resource' is missing")
        client_id = query.get("client_id", "")
        principal = self.user_assigned.get(client_id) if client_id else self.principal_id
        if not principal:
            return _error(400, "invalid_request", "Identity not found")
        now = int(time.time())
        token = self.issuer.token(principal, audience=resource, lifetime=self.lifetime, now=now)
        return web.json_response({
            "access_token": token, "client_id": client_id or "system",
            "expires_in": str(int(self.lifetime)), "expires_on": str(int(now + self.lifetime)),
            "ext_expires_in": str(int(self.lifetime)), "not_before": str(now),
            "resource": resource, "token_type": "Bearer",
        })


def _error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)
