"""Framework helpers: transaction names from the framework's route, and the errors it turns into a 500.

``BridgeMiddleware`` wraps any WSGI app, but two things only the framework knows:

- which route matched. Each helper names the request's span after the route template, with every
  parameter normalized to ``{name}`` whatever the framework writes (Flask ``/users/<int:user_id>``,
  Django ``users/<int:user_id>`` or ``^users/(?P<user_id>[0-9]+)$``, Bottle ``/users/<user_id:int>``,
  Pyramid ``/users/{user_id:\\d+}``, Falcon ``/users/{user_id:int}`` all become ``/users/{user_id}``), so the
  span is ``GET /users/{user_id}`` with ``http.route`` and Sentry transaction source ``route``. Requests
  that match no route (404, 405) keep the middleware's default name.
- the exception behind a 500. Frameworks render a view's exception as their own 500 response, so it never
  reaches an outer WSGI wrapper; each helper takes it where that framework handles it, as the real
  exception object (``bridge.scope.fail_request``): an ``exception`` event, ERROR status and
  ``error.type`` on the request span, full frames for Sentry. One exception is recorded once, even when
  the framework also lets it propagate.

One module per framework (``flask``, ``django``, ``bottle``, ``pyramid``, ``falcon``); each imports its
framework lazily, so ``bridge`` itself never needs any of them. Nothing here raises into the app.
"""

from __future__ import annotations

import re

__all__ = ["angle_params", "brace_params", "rooted"]

# <name>, <converter:name>, <converter(arguments):name>  (werkzeug rules, Django path() routes)
_ANGLE = re.compile(r"<(?:[A-Za-z_]\w*(?:\([^)]*\))?:)?([A-Za-z_]\w*)>")


def angle_params(template: str) -> str:
    """``/users/<int:user_id>`` → ``/users/{user_id}`` (converters and their arguments dropped)."""
    return _ANGLE.sub(r"{\1}", template)


def brace_params(template: str) -> str:
    """``/users/{user_id:\\d{1,9}}`` → ``/users/{user_id}``: whatever follows the name inside the braces
    (a regex, a converter and its arguments) is dropped, nested braces included."""
    out: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        if char != "{":
            out.append(char)
            index += 1
            continue
        end = index + 1
        while end < len(template) and template[end] not in ":}":
            end += 1
        name = template[index + 1 : end]
        depth = 1
        while end < len(template) and depth:
            depth += {"{": 1, "}": -1}.get(template[end], 0)
            end += 1
        out.append("{" + name.strip() + "}")
        index = end
    return "".join(out)


def rooted(template: str) -> str:
    """The template with exactly one leading slash (Django and Pyramid routes may have none)."""
    return "/" + template.lstrip("/")
