"""The reference of tests/test_upstream_differential.py: aiohttp's client parser's decision
(accept or refuse) on each answer of a raw upstream. Run as a separate process, because
aiohttp picks strict or lenient parsing when it is imported (strict under
PYTHONASYNCIODEBUG=1, as in development mode; lenient otherwise).

Usage: python -m tests.support.aiohttp_reference URL...  -> one JSON object, URL -> decision.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp


async def decide(session: aiohttp.ClientSession, url: str) -> str:
    try:
        async with session.get(url) as resp:
            await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        return "refuse"
    return "accept"


async def main(urls: list[str]) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    # A fresh connection per answer (force_close): the decision is the answer's own.
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(force_close=True)) as s:
        decisions = {url: await decide(s, url) for url in urls}
    print(json.dumps(decisions))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
