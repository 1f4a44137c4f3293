"""GET|POST /{tenant}/oauth2/v2.0/authorize: validation, account picker, code issuance."""

from __future__ import annotations

import uuid
from typing import Final

from aiohttp import web

from .authentication import authenticate, parse_request
from .errors import EntraError, injected, missing_parameter, unknown_tenant
from .pages import error_page, sign_in_page
from .redirects import RESPONSE_MODES, Reply, redirect_uri_matches
from .state import MOCK, MockEntra, SignIn, origin, request_params
from .tenants import Tenant
from .users import MockUser

PKCE_METHODS: Final = frozenset({"S256", "plain"})


async def authorize(request: web.Request) -> web.Response:
    mock = request.app[MOCK]
    base, now = origin(request), mock.clock()
    params = await request_params(request)
    try:
        tenant = _tenant(mock, request.match_info["tenant"])
        reply = _reply(mock, params)
    except EntraError as err:
        # The return address is unverified: show the error here, never redirect.
        return error_page(err, base, now)
    try:
        _validate(mock, params)
        parse_request(params)  # a malformed claims parameter is refused before sign-in
        user = _signed_in_user(mock, tenant, params, request.method)
        if user is not None:
            _check_assignment(mock, params["client_id"], user)
    except EntraError as err:
        return reply.error(err, base, now) if err.redirect else error_page(err, base, now)
    if user is None:
        picker_params = {name: value for name, value in params.items() if name != "user"}
        return sign_in_page(
            request.path,
            picker_params,
            mock.users_for(tenant),
            tenant_label=request.match_info["tenant"],
        )
    interactive = request.method == "POST" and "user" in params
    code = _issue_code(mock, tenant, user, params, interactive=interactive)
    return reply.code(code, session_state=str(uuid.uuid4()))


def _tenant(mock: MockEntra, segment: str) -> Tenant:
    tenant = mock.resolve_tenant(segment)
    if tenant is None:
        raise unknown_tenant(segment)
    return tenant


def _reply(mock: MockEntra, params: dict[str, str]) -> Reply:
    """The app and its redirect URI; errors here are never redirected (AADSTS700016/50011)."""
    client_id = params.get("client_id")
    if not client_id:
        raise EntraError(
            "invalid_request", 900144, "The request body must contain 'client_id'.", redirect=False
        )
    client = mock.clients.get(client_id)
    if client is None:
        raise EntraError(
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory. "
            "This can happen if the application has not been installed by the administrator "
            "of the tenant or consented to by any user in the tenant.",
            redirect=False,
        )
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None and client.redirect_uris:
        # Entra picks a registered URI when none is sent.
        redirect_uri = client.redirect_uris[0]
    elif redirect_uri is None or not any(
        redirect_uri_matches(registered, redirect_uri) for registered in client.redirect_uris
    ):
        raise EntraError(
            "invalid_request",
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            f"redirect URIs configured for the application '{client_id}'.",
            redirect=False,
        )
    mode = params.get("response_mode", "query")
    return Reply(redirect_uri, mode if mode in RESPONSE_MODES else "query", params.get("state"))


def _validate(mock: MockEntra, params: dict[str, str]) -> None:
    """Errors Entra sends back to the redirect URI (ENTRA.md §5)."""
    if mock.faults.authorize_error is not None:
        raise injected(*mock.faults.authorize_error)
    response_type = params.get("response_type")
    if not response_type:
        raise missing_parameter("response_type")
    if response_type != "code":
        raise EntraError(
            "unsupported_response_type",
            700054,
            f"response_type '{response_type}' is not enabled for the application.",
        )
    if params.get("response_mode", "query") not in RESPONSE_MODES:
        raise EntraError("invalid_request", 90023, "Unsupported response_mode.")
    scopes = params.get("scope", "").split()
    if not scopes:
        raise missing_parameter("scope")
    if "openid" not in scopes:
        raise EntraError("invalid_request", 900144, "The 'scope' parameter must include 'openid'.")
    _validate_pkce(params)


def _validate_pkce(params: dict[str, str]) -> None:
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        if method is not None:
            raise missing_parameter("code_challenge")
        return
    if (method or "plain") not in PKCE_METHODS:
        raise EntraError("invalid_request", 501491, f"Invalid code_challenge_method '{method}'.")
    if not 43 <= len(challenge) <= 128:
        raise EntraError("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")


def _signed_in_user(
    mock: MockEntra, tenant: Tenant, params: dict[str, str], method: str
) -> MockUser | None:
    """The user who signs in now, or None to show the account picker."""
    if method == "POST" and "user" in params:
        return _allowed_user(mock, tenant, params["user"])
    if mock.auto_user is not None:
        return _allowed_user(mock, tenant, mock.auto_user)
    if params.get("prompt") == "none":
        raise EntraError(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        )
    return None


def _allowed_user(mock: MockEntra, tenant: Tenant, username: str) -> MockUser:
    user = mock.users.get(username)
    if user is None:
        raise EntraError(
            "invalid_request",
            50034,
            f"The user account {username} does not exist in the directory.",
            redirect=False,
        )
    if not tenant.allows(user):
        raise EntraError(
            "invalid_request",
            50020,
            f"User account '{username}' from identity provider does not exist in tenant "
            f"'{tenant.canonical}' and cannot access the application.",
            redirect=False,
        )
    return user


def _check_assignment(mock: MockEntra, client_id: str, user: MockUser) -> None:
    """An unassigned user of an app with "Assignment required" goes back with AADSTS50105,
    `interaction_required`, as ENTRA.md §5's real example (the address is hidden)."""
    assigned = mock.clients[client_id].assigned_users
    if assigned is not None and user.username not in assigned:
        raise EntraError(
            "interaction_required",
            50105,
            "The signed in user '{EmailHidden}' is not assigned to a role for the application "
            f"'{client_id}'(mock app).",
        )


def _issue_code(mock: MockEntra, tenant: Tenant, user: MockUser, params: dict[str, str], *,
                interactive: bool) -> str:
    asked = parse_request(params)
    satisfiable = tuple(c for c in asked.contexts if c not in mock.unsatisfiable_contexts)
    auth = authenticate(mock.authentications.get(user.username), asked,
                        interactive=interactive, user_mfa=user.mfa, satisfiable=satisfiable,
                        now=int(mock.clock()))
    mock.authentications[user.username] = auth
    sign_in = SignIn(
        client_id=params["client_id"],
        username=user.username,
        scopes=tuple(params["scope"].split()),
        tenant=tenant.canonical,
        sid=mock.start_session(user.username),
        nonce=params.get("nonce") or None,
        auth=auth,
        acrs=satisfiable,
        auth_time_requested=asked.max_age is not None,
    )
    return mock.issue_code(
        sign_in,
        redirect_uri=params.get("redirect_uri"),
        code_challenge=params.get("code_challenge"),
        code_challenge_method=params.get("code_challenge_method", "plain"),
    )
