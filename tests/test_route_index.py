"""The route index (hosts in a dict, wildcards by suffix, prefixes by segment) picks exactly
the route a scan of every route would: the most specific host class that has a matching
prefix, then the longest prefix (issue 16 item 10)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import AccessPolicyConfig, UpstreamConfig
from proxy.routes import Route, RouteTable

SEGMENTS = st.sampled_from(["a", "A", "b", "admin", "Admin", "x.y", "é", "İ"])
PREFIXES = st.lists(SEGMENTS, max_size=3).map(lambda s: "/" + "/".join(s))
HOSTS = st.sampled_from(["", "h.test", "*.test", "*.h.test", "a.h.test", "*.a.h.test"])
ROUTES = st.lists(st.tuples(PREFIXES, HOSTS, st.booleans()), min_size=1, max_size=12)
PATHS = st.lists(st.sampled_from(["a", "A", "b", "admin", "ADMIN", "x.y", "", "é", "İ", "i̇"]),
                 max_size=5).map(lambda s: "/" + "/".join(s))
REQUEST_HOSTS = st.sampled_from(["h.test", "a.h.test", "b.a.h.test", "test", "other", "",
                                  ".test", ".h.test", "xh.test", "h.testx", "x..h.test"])


def host_matches(route: Route, host: str) -> bool:
    """The reference host rule: none (any host), `*.domain` (a label, then the suffix), exact."""
    if not route.host:
        return True
    if route.host.startswith("*."):
        suffix = route.host[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == route.host


def path_matches(route: Route, path: str) -> bool:
    """The reference prefix rule: the prefix itself, or it and a "/" (in any case unless
    the route is case_sensitive)."""
    under, path = (route.under, path) if route.case_sensitive else \
        (route.under.lower(), path.lower())
    return not under or path == under or path.startswith(under + "/")


def scan(table: RouteTable, host: str, path: str) -> Route | None:
    """The reference: every route tested, the most specific one kept (the first of equals)."""
    def rank(route: Route) -> tuple[int, int, int, bool]:
        kind = 2 if not route.host else 1 if route.host.startswith("*.") else 0
        return (kind, -len(route.host), -len(route.under), not route.case_sensitive)
    found = [r for r in table.routes if host_matches(r, host) and path_matches(r, path)]
    return min(found, key=rank) if found else None


@settings(max_examples=400, deadline=None)
@given(ROUTES, REQUEST_HOSTS, PATHS)
def test_the_index_picks_what_a_scan_would(routes: list[tuple[str, str, bool]], host: str,
                                           path: str) -> None:
    table = RouteTable(tuple(UpstreamConfig(url="http://u", path=p, host=h, case_sensitive=c)
                             for p, h, c in routes), AccessPolicyConfig())
    assert table.lookup(host, path) is scan(table, host, path)


def test_a_path_longer_than_every_prefix_still_finds_the_longest() -> None:
    table = RouteTable((UpstreamConfig(url="http://u", path="/"),
                        UpstreamConfig(url="http://u", path="/a/b")), AccessPolicyConfig())
    assert table.lookup("", "/a/b/" + "c/" * 500).path == "/a/b"  # type: ignore[union-attr]
    assert table.lookup("", "/a/bc/d").path == "/"  # type: ignore[union-attr]
