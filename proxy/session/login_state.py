"""Per-login state (state, nonce, PKCE verifier, return target, step-up asked for) in its own
signed cookie.

The cookie is named after the state, so several tabs can sign in at once; it lives ten
minutes and the callback deletes it (single use; a replay is refused by `LoginStates`).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cachetools import TTLCache
from itsdangerous import BadData, SignatureExpired

from ..config import SessionConfig
from ..step_up import NO_STEP_UP, StepUp
from .budget import COOKIE_BUDGET, cookie_bytes
from .cookies import CookieSpec
from .signing import LOGIN_SALT, app_salt, serializer

LOGIN_TTL = 600
MAX_PENDING = 5  # login cookies kept per browser; older ones are evicted at the next start
_STATE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class LoginStateError(Exception):
    """Missing, forged, expired, foreign or replayed login state."""


@dataclass(frozen=True, slots=True)
class LoginState:
    state: str
    nonce: str
    verifier: str
    target: str
    step_up: StepUp = NO_STEP_UP  # what the sign-in asked of Entra; the callback checks it

    @classmethod
    def new(cls, target: str, step_up: StepUp = NO_STEP_UP) -> LoginState:
        # One getrandom() call for all three: 99 bytes are 132 base64url characters with no
        # padding, cut into disjoint runs of 43, 43 and 46 (256+ random bits each; PKCE
        # wants 43 to 128 characters of [A-Za-z0-9-._~]).
        random = base64.urlsafe_b64encode(secrets.token_bytes(99)).decode()
        return cls(random[:43], random[43:86], random[86:], target, step_up)


class LoginStates:
    def __init__(self, config: SessionConfig, app: str = "") -> None:
        self.prefix = f"{config.cookie_name}_login_"
        self.session_name = config.cookie_name
        # Random strings do not compress: signed without zlib (which cost 15 µs each).
        self._serializer = serializer(config.signing_keys, app_salt(LOGIN_SALT, app),
                                      compress=False)
        self._used: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=LOGIN_TTL)

    def start(self, login: LoginState, cookies: Mapping[str, str]) -> list[CookieSpec]:
        data: dict[str, object] = {"s": login.state, "n": login.nonce, "v": login.verifier,
                                   "t": login.target}
        if login.step_up:
            data["u"] = login.step_up.to_login()
        value = self._serializer.dumps(data)
        new = CookieSpec(self.prefix + login.state, value, LOGIN_TTL)
        return self._evict(cookies, cookie_bytes([(new.name, new.value)])) + [new]

    def finish(self, state: str | None, cookies: Mapping[str, str]) -> LoginState:
        """Check the callback's state against this browser's cookie; usable once."""
        if not state or not _STATE.match(state):
            raise LoginStateError("the sign-in response has no valid state")
        raw = cookies.get(self.prefix + state)
        if raw is None:
            raise LoginStateError("no sign-in is pending in this browser (expired, "
                                  "already finished, or started in another browser)")
        try:
            data = self._serializer.loads(raw, max_age=LOGIN_TTL)
        except SignatureExpired:
            raise LoginStateError(f"the sign-in took longer than {LOGIN_TTL // 60} minutes "
                                  "(the sign-in state expired)") from None
        except (BadData, ValueError, UnicodeError):
            raise LoginStateError("the sign-in state is invalid") from None
        if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("s")), state):
            raise LoginStateError("the sign-in state does not match")
        if state in self._used:
            raise LoginStateError("this sign-in response was already used")
        self._used[state] = True
        return LoginState(state, str(data["n"]), str(data["v"]), str(data["t"]),
                          StepUp.from_login(data.get("u")))

    def clear(self, state: str) -> CookieSpec:
        return CookieSpec(self.prefix + state, "", None)

    def _evict(self, cookies: Mapping[str, str], new_size: int) -> list[CookieSpec]:
        """Deletions of the oldest pending logins: at most MAX_PENDING stay (the new one
        included), and only as many as fit the cookie budget beside the session's cookies."""
        pending = []
        session = 0
        for name, value in cookies.items():
            if not name.startswith(self.prefix):
                if name == self.session_name or name.startswith(self.session_name + "_"):
                    session += cookie_bytes([(name, value)])
                continue
            try:
                _, ts = self._serializer.loads(value, max_age=LOGIN_TTL, return_timestamp=True)
                pending.append((ts.timestamp(), name, cookie_bytes([(name, value)])))
            except (BadData, ValueError, UnicodeError):
                pending.append((0.0, name, cookie_bytes([(name, value)])))
            if len(pending) > 50:  # a browser stuffed with state cookies costs nothing more
                break
        pending.sort(reverse=True)
        room = COOKIE_BUDGET - session - new_size
        kept = 0
        for _, _, size in pending[:MAX_PENDING - 1]:
            if size > room:
                break
            room -= size
            kept += 1
        return [CookieSpec(n, "", None) for _, n, _ in pending[kept:]]
