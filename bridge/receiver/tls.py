"""TLS for ``serve``: the server's SSL context (TLS 1.2 or newer), and client certificates when asked.

``--tls-cert`` and ``--tls-key`` are PEM files (the key unencrypted, or in the certificate file);
``--tls-client-ca`` a PEM bundle of the CAs whose client certificates are accepted: with it, every
client must present one (mutual TLS), and a certificate from another CA fails the handshake.
"""

from __future__ import annotations

import ssl
from typing import Any, Optional

from bridge.errors import ConfigError

__all__ = ["server_context", "HandshakeBoundedContext", "MINIMUM_VERSION"]

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class HandshakeBoundedContext(ssl.SSLContext):
    """An SSL context whose ``wrap_socket`` bounds a handshake done on connect by ``handshake_timeout``
    seconds, then gives the socket back its previous timeout (for servers, such as gunicorn's threaded
    worker, that wrap a blocking socket and would otherwise wait for a stalled handshake forever)."""

    handshake_timeout: float = 10.0

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        previous = sock.gettimeout()
        sock.settimeout(self.handshake_timeout)
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        wrapped.settimeout(previous)
        return wrapped


def server_context(
    cert: Optional[str],
    key: Optional[str] = None,
    client_ca: Optional[str] = None,
    *,
    handshake_timeout: Optional[float] = None,
) -> ssl.SSLContext:
    """The SSL context of ``serve``; a ConfigError naming the setting and file when one cannot be used.

    With ``handshake_timeout``, a :class:`HandshakeBoundedContext` (for servers that wrap sockets
    themselves and do the handshake on connect)."""
    if not cert:
        raise ConfigError("--tls-cert", cert, "TLS needs a certificate (--tls-cert, with --tls-key)")
    if handshake_timeout is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    else:
        context = HandshakeBoundedContext(ssl.PROTOCOL_TLS_SERVER)
        context.handshake_timeout = handshake_timeout
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key or None)
    except FileNotFoundError as exc:
        missing = "--tls-key" if key and exc.filename == key else "--tls-cert"
        raise ConfigError(missing, exc.filename or cert, "no such file") from None
    except (OSError, ssl.SSLError) as exc:
        setting, value = ("--tls-cert/--tls-key", f"{cert} {key}") if key else ("--tls-cert", cert)
        raise ConfigError(setting, value, f"cannot load the certificate and key ({exc})") from None
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("--tls-client-ca", client_ca, f"cannot load the CA certificates ({exc})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
