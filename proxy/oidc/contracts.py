"""What oidc/ needs from the layers around it, as protocols: it imports neither session/
(a sign-in attempt is anything with state, nonce and verifier) nor metrics.py (counters
are three methods; proxy.metrics.Metrics implements them)."""

from __future__ import annotations

from typing import Protocol


class PkceLogin(Protocol):
    """One sign-in attempt (session/login_state.LoginState is one): read-only fields, so a
    frozen dataclass matches."""

    @property
    def state(self) -> str: ...

    @property
    def nonce(self) -> str: ...

    @property
    def verifier(self) -> str: ...


class IdPMetrics(Protocol):
    """Counters for the calls to Entra; `result` is a short fixed word (ok, failed...)."""

    def jwks_fetched(self, result: str) -> None: ...

    def token_refreshed(self, result: str) -> None: ...

    def graph_called(self, result: str) -> None: ...


class NoMetrics:
    """Counts nothing: for an EntraClient built without the app's metrics (tests, tools)."""

    def jwks_fetched(self, result: str) -> None:
        pass

    def token_refreshed(self, result: str) -> None:
        pass

    def graph_called(self, result: str) -> None:
        pass
