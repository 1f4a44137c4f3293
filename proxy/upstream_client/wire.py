"""HTTP/1.1 request framing, pure functions of bytes and headers: the request head and the
chunks of a streamed request body. (How an answer's body ends is decided where llhttp
hands over its head, in response.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterable

from multidict import CIMultiDict, istr

from .errors import BrokenAnswer

LAST_CHUNK = b"0\r\n\r\n"
# istr keys: a CIMultiDict lookup with one skips folding the key's case on every request.
_CONTENT_LENGTH = istr("Content-Length")
_TRANSFER_ENCODING = istr("Transfer-Encoding")


def request_head(method: str, target: str, headers: CIMultiDict[str],
                 body: bytes | AsyncIterable[bytes] | None, length: int | None) -> bytes:
    """The request line and header fields, with the framing the proxy decides: a
    Content-Length for bytes, or for a stream of known `length`; chunked for a stream of
    unknown length; nothing without a body. A framing header among `headers` is dropped:
    one forwarded from the client must not decide where the upstream thinks a body ends."""
    if _CONTENT_LENGTH in headers or _TRANSFER_ENCODING in headers:
        headers = headers.copy()
        headers.popall("content-length", None)
        headers.popall("transfer-encoding", None)
    lines = [f"{method} {target} HTTP/1.1", *map(": ".join, headers.items())]
    if isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}")
    elif body is not None:
        lines.append("Transfer-Encoding: chunked" if length is None
                     else f"Content-Length: {length}")
    # No CR or LF in any line: a value or name carrying one would inject a header or split
    # the request (the request line and names are checked the same way). `in` is a memchr
    # scan; counting them in the joined head cost five times more (str.count is bytewise).
    fields = "".join(lines)
    if "\n" in fields or "\r" in fields:
        raise BrokenAnswer("refusing to send a header containing CR or LF")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from the wire
        raise BrokenAnswer("refusing to send a header that is not encodable") from None


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; `data` must not be empty (that is the last chunk)."""
    return b"%x\r\n%b\r\n" % (len(data), data)

