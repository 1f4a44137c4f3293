"""Federated identity credentials: an app trusts tokens of an outside issuer as its client
assertion (workload identity federation; a managed identity as a federated credential).

Entra checks a federated `client_assertion` against the app's federated identity credentials
(issuer, subject, audiences) and the issuer's published keys. The mock knows each trusted
issuer's key in-process (`MockEntra.external_issuers`) instead of fetching its JWKS. Errors,
as Entra answers them today (invalid_client, 401):

* AADSTS700211: no federated credential names the assertion's issuer;
* AADSTS700212: the issuer matches, the audience does not;
* AADSTS700213: issuer and audience match, the subject does not (matching is case-sensitive);
* AADSTS700024: the assertion is not within its valid time range;
* AADSTS700027: the signature does not verify with the issuer's key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import EntraError

EXCHANGE_AUDIENCE: Final = "api://AzureADTokenExchange"
_DOCS: Final = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"


@dataclass(frozen=True)
class FederatedCredential:
    """One federated identity credential on an app registration (`az ad app
    federated-credential create`): tokens of `issuer` about `subject` for one of `audiences`."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = (EXCHANGE_AUDIENCE,)
    name: str = "federated"


@dataclass
class ExternalIssuer:
    """An OIDC issuer outside Entra (an AKS cluster's service-account issuer, a managed
    identity's) that signs the tokens a workload presents. Test-only: holds its private key."""

    issuer: str
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        repr=False,
    )
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def token(self, subject: str, *, audience: str = EXCHANGE_AUDIENCE,
              lifetime: float = 3600.0, now: float | None = None,
              extra: Mapping[str, Any] | None = None) -> str:
        """A signed token as Kubernetes projects into the pod (or IMDS returns)."""
        issued = int(time.time() if now is None else now)
        claims = {"iss": self.issuer, "sub": subject, "aud": [audience], "iat": issued,
                  "nbf": issued, "exp": int(issued + lifetime), "jti": str(uuid.uuid4()),
                  **(extra or {})}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def _invalid_client(code: int, message: str) -> EntraError:
    return EntraError("invalid_client", code, message, status=401)


def verify_federated(
    issuers: Mapping[str, ExternalIssuer],
    credentials: list[FederatedCredential],
    assertion: str,
    now: float,
) -> dict[str, Any]:
    """The assertion's claims if one of `credentials` accepts it; else EntraError."""
    unverified = jwt.decode(assertion, options={"verify_signature": False})
    issuer = str(unverified.get("iss", ""))
    matching = [c for c in credentials if c.issuer == issuer]
    known = issuers.get(issuer)
    if not matching or known is None:
        raise _invalid_client(
            700211, f"No matching federated identity record found for presented assertion "
            f"issuer '{issuer}'. Please check your federated identity credential Subject, "
            f"Audience and Issuer against the presented assertion. {_DOCS}")
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion, known.key.public_key(), algorithms=["RS256"],
            options={"verify_aud": False, "require": ["exp", "iss", "sub", "aud"]},
            leeway=0, issuer=issuer,
        )
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
        raise _invalid_client(
            700024, f"Client assertion is not within its valid time range. Current time: "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}.") from exc
    except jwt.InvalidTokenError as exc:
        raise _invalid_client(700027, "Client assertion failed signature validation.") from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    by_audience = [c for c in matching if any(a in c.audiences for a in audiences)]
    if not by_audience:
        raise _invalid_client(
            700212, f"No matching federated identity record found for presented assertion "
            f"audience '{', '.join(map(str, audiences))}'. Please check your federated identity "
            f"credential Subject, Audience and Issuer against the presented assertion. {_DOCS}")
    if not any(c.subject == claims["sub"] for c in by_audience):
        raise _invalid_client(
            700213, f"No matching federated identity record found for presented assertion "
            f"subject '{claims['sub']}'. Please check your federated identity credential "
            f"Subject, Audience and Issuer against the presented assertion. {_DOCS}")
    return claims
