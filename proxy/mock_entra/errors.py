"""AADSTS errors and their three wire shapes: token JSON, redirect parameters, error page."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from aiohttp import web


class EntraError(Exception):
    """An Entra protocol error.

    `redirect=False` marks errors Entra shows on its own page and never sends back to the
    app (unknown app, redirect URI mismatch, unknown tenant: ENTRA.md §5).
    """

    def __init__(
        self,
        error: str,
        code: int,
        message: str,
        *,
        status: int = 400,
        redirect: bool = True,
        description: str | None = None,
        suberror: str | None = None,
    ) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status
        self.redirect = redirect
        # Sent verbatim instead of the formatted AADSTS text (injected faults).
        self.description = description
        # Entra's finer reason on some token errors (e.g. "consent_required" on invalid_grant).
        self.suberror = suberror


def unknown_tenant(segment: str) -> EntraError:
    return EntraError(
        "invalid_tenant",
        90002,
        f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID "
        "and are signing into the correct cloud.",
        redirect=False,
    )


def injected(error: str, description: str) -> EntraError:
    """Faults.authorize_error: "AADSTSnnnn: msg" gets Entra's trailer, anything else verbatim."""
    match = re.fullmatch(r"AADSTS(\d+):\s*(.*)", description, flags=re.DOTALL)
    if match:
        return EntraError(error, int(match[1]), match[2])
    return EntraError(error, 0, description, description=description)


def missing_parameter(name: str) -> EntraError:
    return EntraError(
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def timestamp(now: float) -> str:
    """Entra's `Timestamp:` format, e.g. 2016-01-09 02:02:12Z."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))


def error_fields(err: EntraError, base: str, now: float) -> dict[str, Any]:
    """The token-endpoint error body (ENTRA.md §5 "Token error"), key order as served."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = timestamp(now)
    fields: dict[str, Any] = {
        "error": err.error,
        "error_description": err.description
        or (
            f"AADSTS{err.code}: {err.message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{base}/error?code={err.code}",
    }
    if err.suberror:
        fields["suberror"] = err.suberror
    return fields


def redirect_fields(err: EntraError, base: str, now: float) -> dict[str, str]:
    """`error`, `error_description`, `error_uri` for an error sent to the redirect URI."""
    fields = error_fields(err, base, now)
    return {key: fields[key] for key in ("error", "error_description", "error_uri")}


def json_error(err: EntraError, base: str, now: float) -> web.Response:
    return web.json_response(
        error_fields(err, base, now), status=err.status, headers={"Cache-Control": "no-store"}
    )
