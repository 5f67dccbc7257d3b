"""The Python examples of the README and of the documentation pages run as written (transformer-lens 4.x)."""

import re
from pathlib import Path

import pytest

from icl_interp.core.backend import tl_major

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
#: the hand-written documentation pages; docs/report*/ are the report's own output (no code blocks)
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if not p.relative_to(ROOT / "docs").parts[0].startswith("report"))


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


BLOCKS = [(path, i, code) for path in [README, *PAGES] for i, code in enumerate(_blocks(path))]

_ONLY4 = pytest.mark.skipif(tl_major() < 4, reason="the examples use transformer-lens 4.x")


@_ONLY4
def test_readme_has_the_tour_and_the_docs_an_example_per_section():
    assert len(_blocks(README)) >= 1
    assert sum(1 for path, _, _ in BLOCKS if path != README) >= 15
    for section in ("tasks", "models", "baselines", "training"):  # each guide page shows its API in code
        assert _blocks(ROOT / "docs" / "guide" / f"{section}.md"), section
    for tool in ("masking", "importance", "pruning", "patching", "probing", "attention", "gd-alignment", "attach", "clean-run"):
        assert _blocks(ROOT / "docs" / "tools" / f"{tool}.md"), tool


@pytest.mark.slow
@_ONLY4
@pytest.mark.parametrize("path, i, code", BLOCKS, ids=[f"{p.relative_to(ROOT)}-block{i}" for p, i, _ in BLOCKS])
def test_example_runs(path, i, code, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # what an example saves (figures, folders) lands there, not in the checkout
    exec(compile(code, f"{path}:block{i}", "exec"), {})


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_and_image_resolves_to_a_tracked_file():
    import subprocess

    root = README.parent
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split("\n"))
    text = README.read_text()
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}
    missing, bad_anchors = [], []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        if not path:
            if fragment not in anchors:
                bad_anchors.append(target)
            continue
        if path.rstrip("/") not in tracked and not any(t.startswith(path.rstrip("/") + "/") for t in tracked):
            missing.append(target)
    assert not missing, f"README links to files git does not track: {missing}"
    assert not bad_anchors, f"README links to headings that do not exist: {bad_anchors}"


def test_readme_links_into_the_docs():
    """The README is short and points into the documentation: every docs page it names exists."""
    targets = [t for t in LINK.findall(README.read_text()) if t.startswith("docs/")]
    assert len({t for t in targets if t.endswith(".md")}) >= 20
    assert all((ROOT / t.partition("#")[0]).is_file() for t in targets)
