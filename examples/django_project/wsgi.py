"""WSGI entry point of the Django example, as ``startproject`` writes it, plus the bridge.

    python -m examples.django_project.manage runserver 127.0.0.1:8000 --noreload
    gunicorn --workers 1 --bind 127.0.0.1:8000 examples.django_project.wsgi
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from bridge.frameworks.django import instrument_application
from examples.django_project.observability import init_bridge

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

init_bridge()
application = instrument_application(get_wsgi_application())
