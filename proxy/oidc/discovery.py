"""Entra's v2.0 discovery document, checked against the authority it was fetched from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from yarl import URL

from ..config import CONSUMERS_TENANT_ID, AzureConfig
from ..errors import IdPFailure
from ..validators import is_guid

TEMPLATE = "{tenantid}"
_GUID_ISSUER = re.compile(r"^(?P<base>.+)/(?P<tid>[0-9a-fA-F-]{36})/v2\.0$")


@dataclass(frozen=True, slots=True)
class Metadata:
    issuer: str  # may hold the literal "{tenantid}" (common/organizations)
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str
    cloud_instance_name: str
    msgraph_host: str


def discovery_url(azure: AzureConfig) -> str:
    return f"{azure.authority}/v2.0/.well-known/openid-configuration"


# Authority hosts that are another name of a cloud: discovery fetched there lists endpoints
# on the alias but an issuer on the canonical host (learn.microsoft.com "National clouds";
# MSAL's instance metadata). Only these pairs: any other host must issue under its own name.
CANONICAL_HOSTS = {
    "login.windows.net": "login.microsoftonline.com",
    "login.chinacloudapi.cn": "login.partner.microsoftonline.cn",
    "login.usgovcloudapi.net": "login.microsoftonline.us",
}


def issuer_base(azure: AzureConfig) -> str:
    """The issuer's prefix for the configured cloud: an alias host's canonical host."""
    cloud = URL(azure.cloud_instance.rstrip("/"))
    canonical = CANONICAL_HOSTS.get((cloud.host or "").lower())
    return str(cloud.with_host(canonical)) if canonical else azure.cloud_instance.rstrip("/")


def issuer_problem(azure: AzureConfig, issuer: str) -> str | None:
    """Discovery §4.3 says issuer == the URL prefix; Entra's exceptions are exact and known."""
    base = issuer_base(azure)
    tenant = azure.tenant_id.lower()
    if tenant in ("common", "organizations"):
        expected = f"{base}/{TEMPLATE}/v2.0"
    elif tenant == "consumers":
        expected = f"{base}/{CONSUMERS_TENANT_ID}/v2.0"
    elif is_guid(tenant):
        expected = f"{base}/{tenant}/v2.0"
    else:  # a verified domain resolves to its tenant's GUID
        match = _GUID_ISSUER.match(issuer)
        if match and match["base"] == base and is_guid(match["tid"]):
            return None
        expected = f"{base}/<tenant GUID>/v2.0"
    if issuer.lower() != expected.lower():
        return f"discovery issuer {issuer!r} does not match the authority (expected {expected!r})"
    return None


def parse_metadata(azure: AzureConfig, doc: Any) -> Metadata:
    """Validate a discovery document; IdPFailure says what is wrong with it."""
    if not isinstance(doc, dict):
        raise IdPFailure("The sign-in service's discovery document is not a JSON object.")
    fields = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [f for f in fields if not isinstance(doc.get(f), str) or not doc.get(f)]
    if missing:
        raise IdPFailure(f"The discovery document lacks {', '.join(missing)}.")
    if problem := issuer_problem(azure, doc["issuer"]):
        raise IdPFailure(f"Refusing the sign-in service: {problem}.")
    # Endpoints must live on the configured cloud: a tampered document must not receive
    # the client secret or serve keys from elsewhere.
    origin = URL(azure.cloud_instance).origin()
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if URL(doc[name]).origin() != origin:
            raise IdPFailure(f"Refusing the sign-in service: {name} is not on {origin}.")
    end_session = doc.get("end_session_endpoint")
    return Metadata(
        issuer=doc["issuer"],
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        end_session_endpoint=end_session if isinstance(end_session, str) else "",
        cloud_instance_name=str(doc.get("cloud_instance_name") or ""),
        msgraph_host=str(doc.get("msgraph_host") or ""),
    )
