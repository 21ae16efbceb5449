"""Session fixtures for the real judges live here (see ../shared/DESIGN.md, "Tests")."""
from __future__ import annotations
