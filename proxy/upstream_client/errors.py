"""What the upstream client raises. `kind` is the metric label proxy/upstream.py counts."""

from __future__ import annotations

import asyncio


class UpstreamClientError(Exception):
    """The upstream could not be used; `kind` is the metric label ("unreachable", ...)."""

    kind = "unreachable"


class ConnectFailed(UpstreamClientError):
    """No connection: refused, unresolvable, TLS handshake failed."""


class ReadTimeout(UpstreamClientError):
    kind = "timeout"


class PoolFull(UpstreamClientError):
    """Every connection the origin may have is busy, and none came free in time."""

    kind = "pool_full"


class ClientStalled(UpstreamClientError):
    """The client sent no byte of its request body for longer than the route's timeout:
    the exchange is dropped (and its upstream connection with it), answered 408."""

    kind = "client_timeout"


class BrokenAnswer(UpstreamClientError):
    """The connection closed or the upstream sent something that is not HTTP/1.1."""

    kind = "broken_body"


class StaleConnection(UpstreamClientError):
    """A pooled connection closed before any byte of the answer: safe to retry once.
    The pool retries or turns it into BrokenAnswer; it never reaches the caller."""


def expire(waiter: asyncio.Future[None]) -> None:
    """The timer callback of every timed wait (an answer, a drain): a plain function, so
    each wait costs one `call_later` and no closure."""
    if not waiter.done():
        waiter.set_exception(ReadTimeout("the upstream did not answer in time"))
