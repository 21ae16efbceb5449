from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.sentry.dsn import Dsn


def test_dsn_with_path_and_port() -> None:
    dsn = Dsn.parse("https://abc123@sentry.example.com:9000/prefix/42")
    assert dsn.envelope_url == "https://sentry.example.com:9000/prefix/api/42/envelope/"
    assert dsn.public_key == "abc123"
    assert dsn.auth_header("x/1").startswith("Sentry sentry_key=abc123, sentry_version=7")
    assert "abc123" not in str(dsn)


def test_dsn_default_port() -> None:
    assert Dsn.parse("http://k@127.0.0.1/7").envelope_url == "http://127.0.0.1/api/7/envelope/"


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("https://sentry.io/42", "no public key"),
        ("https://k@sentry.io/abc", "is not a number"),
        ("ftp://k@sentry.io/42", "unknown scheme"),
        ("https://k@/42", "no host"),
        ("", "non-empty"),
    ],
)
def test_malformed_dsn_names_setting_and_problem(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        Dsn.parse(dsn)
    assert "SENTRY_DSN" in str(info.value)
    assert problem in str(info.value)
