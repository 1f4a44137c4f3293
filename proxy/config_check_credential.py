"""Checks of the app's client credential ([azure] client_credential and its keys): the chosen
credential's keys are there, and no other credential's. One "key: problem" line each, like
proxy/config_check.py, which passes in its URL check."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from yarl import URL

from .config import CLIENT_CREDENTIALS, AzureConfig
from .validators import is_guid


def check_credential(a: AzureConfig, url_problem: Callable[[str], str | None]) -> list[str]:
    """The chosen client credential's keys are there, and no other credential's."""
    kind = a.client_credential or ("certificate" if a.client_certificate_file else "secret")
    if kind not in CLIENT_CREDENTIALS:
        return [f"azure.client_credential: {kind!r} must be one of "
                f"{', '.join(CLIENT_CREDENTIALS)}"]
    needs = f'required when client_credential = "{kind}"'
    out: list[str] = []
    if kind == "secret" and not a.client_secret:
        out.append("azure.client_secret: required (or azure.client_secret_file, "
                   "or env PROXY_AZURE_CLIENT_SECRET)")
    if kind == "certificate" and not a.client_certificate_file:
        out.append(f"azure.client_certificate_file: {needs}")
    if kind == "workload_identity" and not a.federated_token_file:
        out.append(f"azure.federated_token_file: {needs} (Azure Workload Identity sets "
                   "AZURE_FEDERATED_TOKEN_FILE in the pod: is the pod labelled "
                   "azure.workload.identity/use: \"true\"?)")
    if kind == "managed_identity":
        problem = url_problem(a.imds_url)
        if problem and not (problem.startswith("must use https") and _link_local(a.imds_url)):
            out.append(f"azure.imds_url: {a.imds_url!r} {problem} (or a link-local address)")
        if a.managed_identity_client_id and not is_guid(a.managed_identity_client_id):
            out.append(f"azure.managed_identity_client_id: {a.managed_identity_client_id!r} "
                       "must be the user-assigned identity's client ID (a GUID)")
    if kind in ("workload_identity", "managed_identity"):
        # A leftover secret or certificate would look like a fallback that is never used.
        for key, value in (("client_secret", a.client_secret),
                           ("client_certificate_file", a.client_certificate_file)):
            if value:
                out.append(f"azure.{key}: set together with client_credential = \"{kind}\", "
                           "which replaces it; remove one")
    return out


def _link_local(url: str) -> bool:
    """IMDS answers plain http on a link-local address no router forwards."""
    try:
        return ipaddress.ip_address((URL(url).host or "").strip("[]")).is_link_local
    except ValueError:
        return False
