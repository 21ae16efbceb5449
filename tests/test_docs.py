"""The documentation site: it builds strictly, the configuration page is generated from ``Options``, and
nothing in the repository points outside it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge import config, options_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _nav_pages(entries: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                pages += _nav_pages(value)
            elif isinstance(value, str):
                pages.append(value)
    return pages


def _mkdocs_config() -> dict[str, object]:
    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml names a Python function for the mermaid fence; reading the nav does not need it.
    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)
    loaded: dict[str, object] = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)  # noqa: S506
    return loaded


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is installed by scripts/venv.sh")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav = _nav_pages(_mkdocs_config()["nav"])  # type: ignore[arg-type]
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if p.name != "README.md")
    assert sorted(nav) == pages


def test_configuration_page_is_generated_from_options() -> None:
    expected = options_reference.render_markdown()
    actual = (DOCS / "configuration.md").read_text()
    assert actual == expected, "stale: run python -m bridge.options_reference > docs/configuration.md"


def test_every_option_has_words_and_a_known_group() -> None:
    fields = {f.name for f in dataclasses.fields(config.Options)} - {"sources"}
    assert set(options_reference.OPTIONS) == fields
    assert {doc.group for doc in options_reference.OPTIONS.values()} <= set(options_reference.GROUPS)


def test_every_variable_the_resolver_reads_is_on_the_page() -> None:
    page = (DOCS / "configuration.md").read_text()
    missing = sorted(name for name in options_reference.variables_read() if f"`{name}`" not in page
                     and name not in page)  # fmt: skip
    assert not missing


def test_readme_is_a_front_page_that_links_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert "docs/quickstart.md" in readme and "docs/configuration.md" in readme
    for line in readme.splitlines():
        if "](docs/" in line:
            target = line.split("](docs/", 1)[1].split(")", 1)[0].split("#", 1)[0]
            assert (DOCS / target).is_file(), target


def test_no_file_points_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    outside = ("../" + "shared", "shared/" + "PEERS.md", "MAPPING" + ".md", "DESIGN" + ".md", "/work" + "/")
    offenders = []
    for name in tracked:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".gz", ".bin", ".pb"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}: {needle}" for needle in outside if needle in text]
    assert not offenders
