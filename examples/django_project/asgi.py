"""ASGI entry point of the Django example, with Channels: HTTP goes to Django, WebSockets to a consumer.

    uvicorn examples.django_project.asgi:application --host 127.0.0.1 --port 8000
    hypercorn examples.django_project.asgi:application --bind 127.0.0.1:8000

The whole ``ProtocolTypeRouter`` is wrapped, so HTTP requests and WebSocket connections each get one
span, and what escapes a consumer's connect, receive or disconnect handler reaches both backends.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from bridge.frameworks.django import instrument_asgi_application
from examples.django_project.observability import init_bridge

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

init_bridge()
django_application = get_asgi_application()  # sets Django up: import consumers after it

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from examples.django_project.consumers import EchoConsumer  # noqa: E402

application = instrument_asgi_application(
    ProtocolTypeRouter(
        {
            "http": django_application,
            "websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]),
        }
    )
)
