"""Which DSN each service's spans go to: ``SENTRY_DSN`` for all, or a routing file keyed by ``service.name``.

The routing file is plain text, one route per line::

    # service.name = DSN
    checkout = https://PUBLIC_KEY@o1.ingest.sentry.io/11
    billing  = https://OTHER_KEY@sentry.example.com/12
    legacy   =                      # nothing: this service's spans are dropped (and counted)
    *        = https://KEY@sentry.example.com/13   # every other service (instead of SENTRY_DSN)

Blank lines and ``#`` comments are ignored; the first ``=`` separates the service name from the DSN, and
spaces around both are stripped. A service named twice, or a DSN that does not parse, is an error that
names the file and the line. Services without a route use ``*``, else ``SENTRY_DSN``; a service with no
DSN at all has its spans dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from bridge.errors import ConfigError
from bridge.sentry.dsn import Dsn

__all__ = ["Routes", "DEFAULT_ROUTE"]

logger = logging.getLogger(__name__)

DEFAULT_ROUTE = "*"


@dataclass(frozen=True)
class Routes:
    services: Mapping[str, Optional[Dsn]] = field(default_factory=dict)  # None: dropped
    default: Optional[Dsn] = None

    def dsn_for(self, service: str) -> Optional[Dsn]:
        if service in self.services:
            return self.services[service]
        return self.default

    @property
    def dsns(self) -> list[Dsn]:
        """Every distinct DSN, the default first."""
        found: dict[str, Dsn] = {}
        for dsn in (self.default, *self.services.values()):
            if dsn is not None:
                found.setdefault(dsn.raw, dsn)
        return list(found.values())

    @classmethod
    def load(cls, path: Optional[str], default_dsn: Optional[str]) -> Routes:
        """Routes from the file at ``path`` (if any) over ``default_dsn`` (``SENTRY_DSN``, if set)."""
        default = Dsn.parse(default_dsn, "SENTRY_DSN") if default_dsn and default_dsn.strip() else None
        if path is None:
            return cls({}, default)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--routes", path, f"cannot read the routing file ({exc})") from None
        services, has_wildcard, wildcard = parse_routes(text, path)
        return cls(services, wildcard if has_wildcard else default)


def parse_routes(text: str, path: str = "<routes>") -> tuple[dict[str, Optional[Dsn]], bool, Optional[Dsn]]:
    """``({service: DSN or None}, whether there is a "*" route, its DSN)``."""
    services: dict[str, Optional[Dsn]] = {}
    has_wildcard, wildcard = False, None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        service, sep, dsn_text = line.partition("=")
        service, dsn_text = service.strip(), dsn_text.strip()
        if not sep or not service:
            raise ConfigError(where, raw.strip(), "expected a line 'service.name = DSN'")
        dsn = Dsn.parse(dsn_text, where) if dsn_text else None
        if service == DEFAULT_ROUTE:
            if has_wildcard:
                raise ConfigError(where, raw.strip(), "a second '*' route")
            has_wildcard, wildcard = True, dsn
        elif service in services:
            raise ConfigError(where, raw.strip(), f"a second route for service {service!r}")
        else:
            services[service] = dsn
    return services, has_wildcard, wildcard
