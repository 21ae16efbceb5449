"""Real peers for the tests: the places the bridge sends to, each a judge of what arrives.

- ``bugsink``: a real Sentry-compatible server (Bugsink) in its own cached venv, one per test session.
- ``otlp``: an OTLP/HTTP trace receiver on loopback that decodes with the official ``opentelemetry-proto``.
- ``sentry``: a Sentry envelope receiver on loopback that runs every envelope through Relay's normalizer.

The pytest fixtures that start them live in ``tests/conftest.py``.
"""
