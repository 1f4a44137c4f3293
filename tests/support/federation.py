"""Federated credentials for tests: the issuers, subjects and identities the mock Entra ID
trusts, set up once for the mock's tests and the proxy's flows."""

from __future__ import annotations

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, MockEntra
from proxy.mock_entra.federation import ExternalIssuer, FederatedCredential
from proxy.mock_entra.identity_endpoint import MockIdentityEndpoint

AKS_ISSUER = "https://oidc.aks.example/5f0c1d2e-0000-4000-8000-0000000000a5/"
SUBJECT = "system:serviceaccount:web:azure-auth-proxy"
# A managed identity as a federated credential: issuer = the tenant, subject = its principal.
ENTRA_ISSUER = f"https://login.microsoftonline.com/{DEFAULT_TENANT_ID}/v2.0"
SYSTEM_PRINCIPAL = "9d1f0000-0000-4000-8000-0000000000e1"
USER_CLIENT_ID = "c1d00000-0000-4000-8000-0000000000c1"
USER_PRINCIPAL = "9d1f0000-0000-4000-8000-0000000000e2"
HEADER = "platform-identity-header-value"  # App Service's X-IDENTITY-HEADER


def trust(mock: MockEntra, issuer: str, subject: str) -> ExternalIssuer:
    """`issuer` known to the mock, and a federated credential for `subject` on the app."""
    trusted = mock.trust_issuer(issuer)
    mock.clients[DEFAULT_CLIENT_ID].federated_credentials.append(
        FederatedCredential(issuer, subject))
    return trusted


def identity_endpoint(issuer: ExternalIssuer) -> MockIdentityEndpoint:
    """A VM's (or App Service's) identities: the system-assigned one and one user-assigned."""
    return MockIdentityEndpoint(issuer, SYSTEM_PRINCIPAL,
                                user_assigned={USER_CLIENT_ID: USER_PRINCIPAL},
                                identity_header=HEADER)
