"""The README and docs/ link to files and headings that exist, and the README's map names every page of docs/."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """`text` without fenced code blocks, code spans and HTML comments (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`|<!--.*?-->", "", text, flags=re.S)


def anchors(path: Path) -> set[str]:
    """GitHub's anchor for each heading of a Markdown file: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", _prose(path.read_text().replace("`", "")), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    return broken


def test_relative_links_resolve():
    assert [b for page in _pages() for b in broken_links(page)] == []


def test_the_readme_links_every_page_of_docs():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in LINK.findall((REPO / "README.md").read_text())}
    assert [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked] == []


def test_a_broken_link_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr("test_docs_links.REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Top\n\n## The CPU suite\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](a.md#the-cpu-suite) [gone](b.md) [typo](a.md#the-gpu-suite) `[code](c.md)` [web](https://x.y)")
    assert broken_links(page) == ["README.md: b.md (no such file)", "README.md: a.md#the-gpu-suite (no such heading)"]
