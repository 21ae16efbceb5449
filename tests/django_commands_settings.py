"""The Django example's settings with management commands traced: the one line of the opt-in."""

from __future__ import annotations

from examples.django_project.settings import *  # noqa: F403

INSTALLED_APPS = ["bridge.frameworks.django_commands.TraceCommands"]
