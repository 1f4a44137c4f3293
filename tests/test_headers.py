"""Header hygiene as pure functions (proxy/headers.py): the proxy's own cookies, the
forwarding headers a trusted or untrusted peer gets, and what an upstream's answer keeps.
(The same rules over real sockets: tests/flows/test_proxying.py, tests/attacks/.)"""

from __future__ import annotations

from ipaddress import ip_network

from multidict import CIMultiDict

from proxy.headers import (
    own_cookies,
    owned_names,
    peer_trusted,
    response_headers,
    strip_cookies,
    upstream_headers,
)

OWNED = owned_names({"X-Forwarded-User": "preferred_username"})
PREFIX = "azp_session"


def forward(incoming: dict[str, str] | CIMultiDict[str], *, trusted: bool = False,
            forwarded_host: str | None = None) -> CIMultiDict[str]:
    return upstream_headers(incoming, owned=OWNED, cookie_prefix=PREFIX, peer="10.0.0.9",
                            peer_is_trusted=trusted, scheme="https", request_id="rid",
                            forwarded_host=forwarded_host)


def test_proxy_cookie_whose_value_holds_equals_signs_is_still_stripped() -> None:
    cookie = "azp_session=a=b; azp_session_0=c==; app=x=y"
    assert strip_cookies(cookie, PREFIX) == "app=x=y"
    assert forward({"Cookie": cookie})["Cookie"] == "app=x=y"


def test_own_cookies_first_of_each_name_unquoted_and_nothing_else() -> None:
    """Only the proxy's cookies, the first of each name (a cookie tossed in from a sibling
    domain comes later), RFC 6265 quotes removed; from a multidict or a plain mapping."""
    headers = CIMultiDict([
        ("Cookie", 'app=1; azp_session="v=1"; junk; azp_session=second'),
        ("Cookie", 'azp_session_0=""; azp_session_1="; azp_session_2="a"b'),
    ])
    assert own_cookies(headers, PREFIX) == {
        "azp_session": "v=1", "azp_session_0": "", "azp_session_1": '"',
        "azp_session_2": '"a"b'}
    assert own_cookies({"Cookie": "azp_session=v; x=1"}, PREFIX) == {"azp_session": "v"}


def test_forwarding_headers_from_an_untrusted_peer_are_the_proxys_own() -> None:
    incoming = CIMultiDict([
        ("Host", "raw.example"), ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "front.example")])
    out = forward(incoming)
    assert out.getall("X-Forwarded-For") == ["10.0.0.9"]
    assert out.getall("X-Forwarded-Proto") == ["https"]
    assert out.getall("X-Forwarded-Host") == ["raw.example"]
    trusted = forward(incoming, trusted=True)
    assert trusted.getall("X-Forwarded-For") == ["203.0.113.9, 198.51.100.7, 10.0.0.9"]
    assert trusted.getall("X-Forwarded-Proto") == ["http"]
    assert trusted.getall("X-Forwarded-Host") == ["front.example"]


def test_the_normalized_host_is_forwarded_instead_of_the_raw_one() -> None:
    assert forward({"Host": "RAW.example:443"},
                   forwarded_host="raw.example")["X-Forwarded-Host"] == "raw.example"
    assert "X-Forwarded-Host" not in forward({"Host": "bad host"}, forwarded_host="")


def test_headers_named_in_connection_are_dropped_whatever_the_spacing() -> None:
    out = forward({"Connection": "keep-alive,X-Hop", "X-Hop": "1", "Accept": "a/b"})
    assert "X-Hop" not in out and out["Accept"] == "a/b"


def test_response_keeps_only_end_to_end_headers() -> None:
    """Hop-by-hop ones (in any spelling), those Connection names, the framing and a
    Set-Cookie for the proxy's cookies are dropped; everything after them is kept."""
    answer = [("Connection", "X-Internal,close"), ("X-Internal", "1"),
              ("Keep_Alive", "timeout=5"), ("Content-Length", "3"), ("X-App", "ok"),
              ("Set-Cookie", "azp_session=x"), ("Set-Cookie", "app=1")]
    assert response_headers(CIMultiDict(answer), PREFIX) == [
        ("X-App", "ok"), ("Set-Cookie", "app=1")]
    plain = {"Connection": "X-Internal", "X-Internal": "1", "X-App": "ok"}
    assert response_headers(plain, PREFIX) == [("X-App", "ok")]


def test_a_peer_that_is_not_an_address_is_never_trusted() -> None:
    everyone = (ip_network("0.0.0.0/0"), ip_network("::/0"))
    assert peer_trusted("10.0.0.9", everyone) and peer_trusted("::1", everyone)
    for peer in (None, "", "unix:/run/proxy.sock", "10.0.0.300", "localhost"):
        assert not peer_trusted(peer, everyone), peer
    assert not peer_trusted("10.0.0.9", ())
