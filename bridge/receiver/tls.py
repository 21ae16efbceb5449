"""TLS for ``serve``: the server's SSL context (TLS 1.2 or newer), and client certificates when asked.

``--tls-cert`` and ``--tls-key`` are PEM files (the key unencrypted, or in the certificate file);
``--tls-client-ca`` a PEM bundle of the CAs whose client certificates are accepted: with it, every
client must present one (mutual TLS), and a certificate from another CA fails the handshake.
"""

from __future__ import annotations

import ssl
from typing import Optional

from bridge.errors import ConfigError

__all__ = ["server_context", "MINIMUM_VERSION"]

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(cert: Optional[str], key: Optional[str] = None, client_ca: Optional[str] = None) -> ssl.SSLContext:
    """The SSL context of ``serve``; a ConfigError naming the setting and file when one cannot be used."""
    if not cert:
        raise ConfigError("--tls-cert", cert, "TLS needs a certificate (--tls-cert, with --tls-key)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
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
