"""The README's Python examples run as written (transformer-lens 4.x environment)."""

import re
from pathlib import Path

import pytest

from icl_interp.backend import tl_major

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

_ONLY4 = pytest.mark.skipif(tl_major() < 4, reason="the examples use transformer-lens 4.x")


@_ONLY4
def test_readme_has_an_example_per_section():
    assert len(BLOCKS) >= 10


@pytest.mark.slow
@_ONLY4
@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # what an example saves (figures, folders) lands there, not in the checkout
    exec(compile(code, str(README), "exec"), {})


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
