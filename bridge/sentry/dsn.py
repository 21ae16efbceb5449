"""A Sentry DSN (``scheme://KEY@host[:port][/path]/PROJECT_ID``) and what follows from it."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.errors import ConfigError

__all__ = ["Dsn"]


@dataclass(frozen=True)
class Dsn:
    scheme: str
    public_key: str
    host: str
    port: int
    path: str  # prefix before /api/, "" or "/something"
    project_id: str
    raw: str

    @classmethod
    def parse(cls, text: str, setting: str = "SENTRY_DSN") -> Dsn:
        """Parse ``text``; a malformed DSN raises ConfigError naming ``setting`` and what is wrong."""

        def bad(problem: str) -> ConfigError:
            return ConfigError(setting, text, problem)

        if not isinstance(text, str) or not text.strip():
            raise bad("a DSN must be a non-empty string like https://KEY@host/PROJECT_ID")
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError as exc:
            raise bad(f"not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise bad(f"unknown scheme {parts.scheme!r} (expected http or https)")
        if not parts.hostname:
            raise bad("no host")
        if not parts.username:
            raise bad("no public key before '@'")
        path, _, project_id = parts.path.rstrip("/").rpartition("/")
        if not project_id.isdigit():
            raise bad(f"the project id {project_id!r} at the end of the path is not a number")
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.username, parts.hostname, port, path, project_id, text.strip())

    @property
    def netloc(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def envelope_path(self) -> str:
        return f"{self.path}/api/{self.project_id}/envelope/"

    @property
    def envelope_url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.envelope_path}"

    def auth_header(self, client: str) -> str:
        """The value of ``X-Sentry-Auth``."""
        return f"Sentry sentry_key={self.public_key}, sentry_version=7, sentry_client={client}"

    def __str__(self) -> str:
        """The DSN with its key masked, for logs and `check`."""
        return self.raw.replace(self.public_key + "@", self.public_key[:4] + "****@", 1)
