"""The proxy's exception tree. Only `pages.py` turns these into responses.

* ProxyError                      (status 500; `public` is safe to show, never a secret)
  + ConfigError                   bad configuration: `problems` lists "key: problem" lines
  + BadRequest (400)              malformed request, bad login state, refused redirect target
  + NotFound (404)                no route matches
  + Unauthenticated (401)         no valid session (API clients get this instead of a redirect)
    - SignInRequired (401)        no session at all: admission.admit's answer
    - StepUpRequired (401)        the route wants a proof (acrs, auth_time, amr) it lacks
  + LoginRejected (401)           the ID token failed validation: `reason` says which check
  + AccessDenied (403)            signed in, but the policy or tenant rules say no
  + IdPError                      the identity provider answered with an error
    - IdPDenied (403)             `error=access_denied|consent_required|...` on the callback
    - IdPFailure (502)            callback server errors, token endpoint errors, bad discovery
      . TokenRejected (502)       invalid_grant & co: a refresh that ends the session
      . CredentialUnavailable (502)  the proxy cannot produce its own client credential
    - IdPUnavailable (503)        Entra/JWKS unreachable
    - IdPTimeout (504)
  + SessionTooLarge (500)         the identity does not fit the cookie store's budget
  + StoreUnavailable (503)        the session store (Redis) does not answer: fail closed
  + ClientTimeout (408)           the client stopped sending its request body
  + UpstreamError
    - UpstreamUnavailable (502)   connection refused/reset
    - UpstreamBusy (503)          every connection the upstream may have is in use
    - UpstreamTimeout (504)
"""

from __future__ import annotations


class ProxyError(Exception):
    status = 500
    title = "Something went wrong"

    def __init__(self, public: str = "", **context: str) -> None:
        super().__init__(public or self.title)
        self.public = public or self.title
        self.context = context


class ConfigError(ProxyError):
    title = "Invalid configuration"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class BadRequest(ProxyError):
    status = 400
    title = "Bad request"


class NotFound(ProxyError):
    status = 404
    title = "Not found"


class Unauthenticated(ProxyError):
    status = 401
    title = "Sign-in required"
    challenge = 'Bearer realm="azure-auth-proxy"'


class SignInRequired(Unauthenticated):
    """No session at all (rather than a bad one): a browser navigating is sent to sign in;
    every other client gets the same 401 (and error code) as any Unauthenticated."""


class StepUpRequired(Unauthenticated):
    """Signed in, but the route asks for a proof the session lacks (proxy/step_up.py): a
    browser navigating signs in again; others get a 401 whose challenge names the claim."""

    title = "Stronger sign-in required"

    def __init__(self, public: str, *, missing: str, challenge: str) -> None:
        super().__init__(public, missing=missing)
        self.missing = missing
        self.challenge = challenge


class LoginRejected(ProxyError):
    status = 401
    title = "Sign-in failed"

    def __init__(self, reason: str) -> None:
        super().__init__(f"The identity token was rejected: {reason}.", reason=reason)
        self.reason = reason


class AccessDenied(ProxyError):
    status = 403
    title = "Access denied"


class IdPError(ProxyError):
    status = 502
    title = "Sign-in service error"


class IdPDenied(IdPError):
    status = 403
    title = "Sign-in was not completed"


class IdPFailure(IdPError):
    status = 502


class TokenRejected(IdPFailure):
    """The token endpoint refused a grant (invalid_grant...): the session cannot go on."""


class CredentialUnavailable(IdPFailure):
    """The app's client credential cannot be produced (federated token file unreadable or
    expired, managed identity endpoint down). `public` names the cause in fixed words for
    pages and /ready; `cause` (the log's `detail`) adds the file or URL, never a token."""

    def __init__(self, public: str, cause: str) -> None:
        # reason/detail: the callback's one log line ("login failed ... reason=client-
        # credential detail=<cause>") and the refresh's.
        super().__init__(f"The proxy cannot authenticate to the sign-in service: {public}.",
                         reason="client-credential", detail=cause)
        self.cause = cause


class IdPUnavailable(IdPError):
    status = 503
    title = "Sign-in service unavailable"


class IdPTimeout(IdPError):
    status = 504
    title = "Sign-in service timed out"


class SessionTooLarge(ProxyError):
    """The identity does not fit the cookie store's budget (session/budget.py)."""

    status = 500
    title = "Sign-in too large for a cookie"


class StoreUnavailable(ProxyError):
    status = 503
    title = "Service temporarily unavailable"


class UpstreamError(ProxyError):
    status = 502
    title = "Bad gateway"


class UpstreamUnavailable(UpstreamError):
    status = 502


class ClientTimeout(ProxyError):
    status = 408
    title = "Request timeout"


class UpstreamBusy(UpstreamError):
    status = 503
    title = "Upstream busy"


class UpstreamTimeout(UpstreamError):
    status = 504
    title = "Gateway timeout"
