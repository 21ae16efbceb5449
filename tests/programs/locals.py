"""A handled error with ``include_local_variables=True``, under sentry-sdk or the bridge (``PROGRAM_SDK``).
``python -m tests.programs.locals``."""

from __future__ import annotations

import os
from typing import Any

SDK = os.environ.get("PROGRAM_SDK", "bridge")
DSN = os.environ["PROGRAM_DSN"]
if SDK == "sentry_sdk":
    import sentry_sdk as sdk

    sdk.init(dsn=DSN, include_local_variables=True)
else:
    import bridge as sdk

    sdk.init(dsn=DSN, include_local_variables=True, exporters=["sentry"], service_name="locals")


def checkout(cart: dict[str, Any]) -> None:
    password = "hunter2"  # noqa: F841 - read by include_local_variables
    items = list(range(20))  # noqa: F841
    nested = {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}  # noqa: F841
    loop: list[Any] = [1]
    loop.append(loop)
    wide = {f"k{number}": number for number in range(15)}  # noqa: F841
    remote_addr, name, nothing = "10.0.0.1", "ann", None  # noqa: F841
    raw = b"\x00bytes"  # noqa: F841
    price = 9.5  # noqa: F841 - the eleventh: left out, as sentry-sdk keeps ten
    raise ValueError(f"cannot check out {len(cart)} items")


def main() -> None:
    cart = {"sku-1": 2, "sku-2": 1}
    try:
        checkout(cart)
    except ValueError:
        sdk.capture_exception()
    sdk.flush(5.0)


if __name__ == "__main__":
    main()
