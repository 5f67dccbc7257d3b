"""The documentation site builds in strict mode, its generated parts come from the project's files, the README is short."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
REPORT = ROOT / "docs" / "report"


def _pages():
    """docs/hooks/pages.py, the site's generator, loaded by path (it is a MkDocs hook, not a package module)."""
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "docs" / "hooks" / "pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


def test_readme_claims_table_is_the_reports():
    """The README's claims table equals docs/report/report.md's, row for row (`make claims-table` refreshes it)."""
    pages = _pages()
    table = pages.claims_table((REPORT / "report.md").read_text())
    assert pages.readme_claims_table(README.read_text()) == table
    # the table is the report's decisions: one row per claim of report.json, with its verdict
    claims = json.loads((REPORT / "report.json").read_text())["claims"]
    rows = table.split("\n")[2:]
    assert [r.split(" | ")[0].strip("| `") for r in rows] == [c["id"] for c in claims]
    assert [r.split(" | ")[2].strip("*") for r in rows] == [c["verdict"] for c in claims]


def test_refresh_readme_copies_the_table_between_the_markers(tmp_path):
    pages = _pages()
    report = tmp_path / "report.md"
    report.write_text("# r\n\n| id | claim | verdict | the number that decides |\n|---|---|---|---|\n| `a` | A | **mixed** | 1 |\n\nmore\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{pages.README_START}\n| id | claim | verdict | old |\n{pages.README_END}\nbottom\n")
    assert pages.refresh_readme(readme, report) is True
    text = readme.read_text()
    assert text.startswith("top\n") and text.endswith("bottom\n") and "old" not in text
    assert pages.readme_claims_table(text) == pages.claims_table(report.read_text())
    assert pages.refresh_readme(readme, report) is False  # already equal: untouched
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        pages.refresh_readme(readme, report)
    with pytest.raises(ValueError, match="claims table"):
        pages.claims_table("# a report without claims\n")


def test_an_unknown_generated_section_is_an_error():
    with pytest.raises(ValueError, match="unknown generated section 'nope'"):
        _pages().expand("text\n<!-- generated: nope -->\n")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """mkdocs build --strict; never -q, which silences the warnings strict mode counts (the build would pass)."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)


def test_site_builds_strictly_with_its_generated_pages(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    done = _build(ROOT / "mkdocs.yml", site)
    assert done.returncode == 0, done.stdout + done.stderr
    html = {p: (site / p / "index.html").read_text() for p in ("zoo", "recipes", "science", "science/default-model", "api/tools")}
    for folder in (ROOT / "icl_interp" / "zoo").glob("*/config.json"):  # every shipped model has a row
        assert f"<code>{folder.parent.name}</code>" in html["zoo"]
    for claim in json.loads((REPORT / "report.json").read_text())["claims"]:
        assert f"<code>{claim['id']}</code>" in html["science"]
    for recipe in (ROOT / "recipes").glob("*.py"):
        assert f"<code>{recipe.stem}</code>" in html["recipes"]
    quality = json.loads((REPORT / "report.json").read_text())["quality_bar"]
    assert f"{quality['ratio_to_best_ridge_at_largest_n']:.3f}x" in html["science/default-model"]
    assert "icl_interp.tools.masking.mask_heads" in html["api/tools"]  # the API reference is rendered from the docstrings
    assert "<!-- generated:" not in "".join(html.values())


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The site's own configuration turns a link to a missing page into a failed build."""
    pytest.importorskip("mkdocs")
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](nowhere.md).\n")
    config.update(docs_dir=str(docs), nav=[{"Home": "index.md"}], plugins=["search"],
                  hooks=[str(ROOT / "docs" / "hooks" / "pages.py")])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0 and "nowhere.md" in done.stdout + done.stderr
    (docs / "index.md").write_text("# Home\n\nNo links.\n")
    assert _build(tmp_path / "mkdocs.yml", tmp_path / "site").returncode == 0  # the same config builds a clean page
