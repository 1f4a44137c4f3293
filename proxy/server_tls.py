"""TLS on the proxy's own listener: the context, and its certificate renewed without a restart.

The context: TLS 1.2 at least, for 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM,
ChaCha20-Poly1305; TLS 1.3's suites are all AEAD), no compression, no renegotiation, ALPN
"http/1.1" (Mozilla's "intermediate" profile, which nginx, Caddy and oauth2-proxy follow).

Renewal (cert-manager, certbot, an operator copying files): SIGHUP, and a poll of both files'
inode, size and mtime every `server.tls_watch_interval`, load the pair into a NEW context; only
a context whose certificate and key loaded and match replaces the current one. The listening
socket keeps the context it was started with, whose SNI callback hands each new handshake the
current one (`SSLObject.context`, as Caddy's GetCertificate does per handshake): open
connections keep the certificate they negotiated, new ones get the new certificate, and no
handshake ever sees a half-loaded context. A pair that fails to load (mid-write, mismatched,
unreadable) is logged as an ERROR and the running certificate is kept: fail safe, not down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import Any

from cryptography import x509

from .config import ServerConfig
from .errors import ConfigError

log = logging.getLogger("proxy")
# TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only; TLS 1.3 uses OpenSSL's (all AEAD).
CIPHERS_TLS12 = "ECDHE+AESGCM:ECDHE+CHACHA20"
Stamp = tuple[tuple[int, int, int, int], ...]  # (device, inode, size, mtime_ns) per file


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ValueError("the key is encrypted; give an unencrypted PEM key (mounted secret)")


def new_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context holding this pair; ConfigError (one line naming the key) if the files
    are missing, unreadable, not PEM or do not belong together. Never quotes key material."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS_TLS12)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    for key, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError([f"server.{key}: cannot read {path!r} "
                               f"({exc.strerror or type(exc).__name__})"]) from None
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except ValueError as exc:
        raise ConfigError([f"server.tls_key_file: {exc}"]) from None
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        if "KEY_VALUES_MISMATCH" in str(reason).upper():
            raise ConfigError(["server.tls_key_file: the key does not belong to the "
                               "certificate in server.tls_cert_file"]) from None
        raise ConfigError([f"server.tls_cert_file: cannot load the certificate and key "
                           f"({reason}); both must be PEM, the certificate file the full "
                           "chain"]) from None
    return context


def describe(cert_file: str) -> str:
    """"serial S, subject X, expires T" of the chain's first certificate, for log lines."""
    try:
        with open(cert_file, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError):
        return "details unreadable"
    return (f"serial {cert.serial_number:x}, subject {cert.subject.rfc4514_string()}, "
            f"expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


class ServerTls:
    """The listener's context and the current certificate pair, owned by the app."""

    def __init__(self, server: ServerConfig) -> None:
        self.cert_file, self.key_file = server.tls_cert_file, server.tls_key_file
        self.interval = server.tls_watch_interval
        self._stamp = self._files_stamp()
        self.current = new_context(self.cert_file, self.key_file)
        self.failed: Stamp | None = None  # the files' stamp whose pair last failed to load
        # The context the socket is created with; only its SNI callback is ever used after.
        self.listener = new_context(self.cert_file, self.key_file)
        self.listener.sni_callback = self._handshake
        log.info("tls: serving the certificate in %s (%s)", self.cert_file,
                 describe(self.cert_file))

    def _handshake(self, connection: Any, server_name: str | None,
                   _context: ssl.SSLContext) -> None:
        # OpenSSL calls this for every ClientHello, with or without SNI.
        connection.context = self.current

    def _files_stamp(self) -> Stamp:
        stamps = []
        for path in (self.cert_file, self.key_file):
            try:
                info = os.stat(path)  # follows symlinks: a Kubernetes secret's ..data swap
            except OSError:
                stamps.append((0, 0, 0, 0))
                continue
            stamps.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
        return tuple(stamps)

    def reload(self, why: str) -> bool:
        """Load the files into a new context and make it current; on any failure keep the
        running certificate, log why at ERROR, and return False."""
        stamp = self._files_stamp()
        try:
            fresh = new_context(self.cert_file, self.key_file)
        except ConfigError as exc:
            if stamp != self.failed:  # once per version of the files, not every poll
                log.error("tls: %s: the new certificate cannot be used, keeping the running "
                          "one: %s", why, "; ".join(exc.problems))
            self.failed = stamp
            return False
        self.current, self._stamp, self.failed = fresh, stamp, None
        log.info("tls: %s: certificate reloaded (%s)", why, describe(self.cert_file))
        return True

    def changed(self) -> bool:
        stamp = self._files_stamp()
        return stamp != self._stamp and stamp != self.failed

    async def watch(self) -> None:
        """Poll the files every `interval` seconds (run as an app background task)."""
        while True:
            await asyncio.sleep(self.interval)
            if self.changed():
                self.reload("the certificate files changed")
