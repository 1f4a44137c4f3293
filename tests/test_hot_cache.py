"""proxy/hot_cache.py: entries expire by their own time, never outlive the ttl, and expired
entries leave memory (swept at most once per ttl, on a put)."""

from __future__ import annotations

from proxy.hot_cache import HotCache


def test_an_entry_is_served_until_its_expiry_and_never_after() -> None:
    cache: HotCache[str, str] = HotCache(maxsize=10, ttl=60.0)
    cache.put("a", "alice", now=1000.0, until=1010.0)
    assert cache.get("a", 1009.999) == "alice"
    assert cache.get("a", 1010.0) is None  # the expiry itself is already too late
    assert cache.get("b", 1000.0) is None


def test_no_entry_outlives_the_ttl_whatever_its_own_expiry() -> None:
    cache: HotCache[str, str] = HotCache(maxsize=10, ttl=60.0)
    cache.put("a", "alice", now=1000.0, until=5000.0)
    cache.put("b", "bob", now=1000.0)
    assert cache.get("a", 1059.0) == "alice" and cache.get("b", 1059.0) == "bob"
    assert cache.get("a", 1060.0) is None and cache.get("b", 1060.0) is None


def test_expired_entries_are_swept_out_of_memory() -> None:
    cache: HotCache[int, str] = HotCache(maxsize=1000, ttl=60.0)
    for n in range(100):
        cache.put(n, f"user{n}", now=1000.0)
    assert len(cache) == 100
    cache.put(-1, "late", now=1030.0)  # within a ttl of the last sweep: no sweep yet
    assert len(cache) == 101
    cache.put(-2, "later", now=1061.0)  # a ttl on: the 100 expired entries leave
    assert len(cache) == 2 and -1 in cache and -2 in cache and 0 not in cache


def test_the_size_bound_drops_the_least_recently_used() -> None:
    cache: HotCache[int, str] = HotCache(maxsize=3, ttl=60.0)
    for n in range(3):
        cache.put(n, str(n), now=1000.0)
    assert cache.get(0, 1001.0) == "0"  # 0 used: 1 is now the least recently used
    cache.put(3, "3", now=1001.0)
    assert len(cache) == 3 and 1 not in cache and 0 in cache
