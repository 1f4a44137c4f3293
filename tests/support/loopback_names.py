"""A DNS resolver that answers 127.0.0.1 for a fixed set of names, and nothing else.

It lets a test reach the mock Entra ID under a national cloud's real host name (say
login.chinacloudapi.cn) while every byte stays on loopback; unknown names fail to resolve,
so no request can leave the machine by accident.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult


class LoopbackNames(AbstractResolver):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(name.lower() for name in names)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host.lower() not in self.names:
            raise OSError(f"{host} is not a loopback test name")
        return [{"hostname": host, "host": "127.0.0.1", "port": port,
                 "family": socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None
