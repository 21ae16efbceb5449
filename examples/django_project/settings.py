"""Settings of the Django example: no database, no apps, production-like (``DEBUG`` off unless asked)."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"  # errors reach Sentry either way; keep it off in production
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "examples.django_project.urls"
WSGI_APPLICATION = "examples.django_project.wsgi.application"  # runserver serves the wrapped application too
ASGI_APPLICATION = "examples.django_project.asgi.application"  # daphne and uvicorn serve this one
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
MIDDLEWARE = [
    "bridge.frameworks.django.RouteMiddleware",  # first: names the transaction before any view runs
    "django.middleware.common.CommonMiddleware",  # checks the Host header against ALLOWED_HOSTS
]
