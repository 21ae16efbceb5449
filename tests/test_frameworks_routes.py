"""Each framework's route syntax normalized to ``{name}`` parameters (the helpers' pure part)."""

from __future__ import annotations

import sys

import pytest

from bridge.frameworks import bottle, django, falcon, flask, pyramid


@pytest.mark.parametrize(
    ("normalize", "template", "expected"),
    [
        (flask.route_template, "/users/<int:user_id>", "/users/{user_id}"),
        (flask.route_template, "/f/<path:name>/<string(length=2):code>/<any(a, b):page>", "/f/{name}/{code}/{page}"),
        (flask.route_template, "/plain/<slug>", "/plain/{slug}"),
        (django.route_template, "users/<int:user_id>", "/users/{user_id}"),
        (django.route_template, "api/v1/items/<slug>/", "/api/v1/items/{slug}/"),
        (django.route_template, r"^articles/(?P<year>[0-9]{4})/(?P<tag>(a|b)[)(])/$", "/articles/{year}/{tag}/"),
        (django.route_template, r"api/(?P<key>\w+)\Z", "/api/{key}"),
        (bottle.route_template, "/users/<user_id:int>", "/users/{user_id}"),
        (bottle.route_template, r"/w/<name:re:[a-z\>]+>/<rest:path>/<plain>", "/w/{name}/{rest}/{plain}"),
        (pyramid.route_template, r"users/{user_id:\d{1,9}}", "/users/{user_id}"),
        (pyramid.route_template, "/static/*subpath", "/static/{subpath}"),
        (falcon.route_template, "/users/{user_id:int(min=1)}", "/users/{user_id}"),
        (falcon.route_template, "/repos/{org}/{repo}/compare/{a}:{b}", "/repos/{org}/{repo}/compare/{a}:{b}"),
    ],
)
def test_route_templates(normalize: object, template: str, expected: str) -> None:
    assert normalize(template) == expected  # type: ignore[operator]


def test_bridge_never_imports_a_framework_by_itself() -> None:
    import subprocess

    code = (
        "import sys, bridge, bridge.frameworks.flask, bridge.frameworks.django, bridge.frameworks.bottle, "
        "bridge.frameworks.pyramid, bridge.frameworks.falcon; "
        "print(sorted(m for m in ('flask', 'django', 'bottle', 'pyramid', 'falcon') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
