"""Checks of the Redis session store settings ([session] redis_*), one "key: problem" line
each, like proxy/config_check.py."""

from __future__ import annotations

import os

from yarl import URL

from .config import SessionConfig


def check_redis(s: SessionConfig) -> list[str]:
    out: list[str] = []
    try:
        url = URL(s.redis_url.reveal())
        if url.scheme not in ("redis", "rediss") or not url.host:
            out.append("session.redis_url: must be redis://[user:password@]host:port/db "
                       "or rediss://... for TLS")
    except (ValueError, TypeError):
        out.append("session.redis_url: is not a URL")
    if bool(s.redis_sentinel_master) != bool(s.redis_sentinels):
        out.append("session.redis_sentinels: set together with session.redis_sentinel_master")
    if s.redis_sentinel_master and s.redis_cluster:
        out.append("session.redis_cluster: cannot be combined with Sentinel; choose one")
    for address in s.redis_sentinels:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            out.append(f"session.redis_sentinels: {address!r} must be host:port")
    if s.redis_ca_file and not os.path.isfile(s.redis_ca_file):
        out.append(f"session.redis_ca_file: {s.redis_ca_file!r} is not a readable file")
    return out
