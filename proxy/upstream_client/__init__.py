"""The upstream hop's HTTP/1.1 client: keep-alive pool per origin, llhttp parsing, streaming.

aiohttp's ClientSession spent about 250 µs of CPU on every forwarded request (its
`ClientRequest`, tracing, timers and response objects: see bench/results.md), more than the
whole rest of the request path. This client does only what a reverse proxy needs: send the
head (and a body, streamed with back-pressure), parse the answer with llhttp (httptools, the
parser behind uvicorn and aiohttp), hand its body out chunk by chunk, and keep the connection
for the next request when both sides allow it. WebSockets still go through aiohttp.

The modules, each one concept: `wire` (pure HTTP/1.1 framing), `response` (an answer: the
parser's state and the body as it arrives), `connection` (the asyncio protocol of one
keep-alive connection), `pool` (idle connections per origin, one exchange) and `errors`.
"""

from .connection import Origin
from .errors import (
    BrokenAnswer,
    ClientStalled,
    ConnectFailed,
    PoolFull,
    ReadTimeout,
    UpstreamClientError,
)
from .pool import UpstreamPool
from .response import UpstreamResponse

__all__ = ["BrokenAnswer", "ClientStalled", "ConnectFailed", "Origin", "PoolFull", "ReadTimeout",
           "UpstreamClientError", "UpstreamPool", "UpstreamResponse"]
