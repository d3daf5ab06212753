"""The documentation stays usable: a short README, no dead links between the pages, no mention of research data
outside the repository, and only trainers a user can actually pass to ``-tr``. Text checks only, no network."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 150
# Every page whose links must resolve: the README, the changelog, the plans guide and the guides in docs/.
LINKED_PAGES = [README, REPO / "CHANGELOG.md", REPO / "plans" / "README.md", *sorted(DOCS.rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)  # [label]: target
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...
TRAINER_NAME = re.compile(r"(M2SNetTrainer\w*|nnUNetTrainer\w*)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets and '#' lines are not Markdown."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _links(page: Path) -> Iterator[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    yield from INLINE_LINK.findall(prose)
    yield from REFERENCE_DEF.findall(prose)


def _local_links(page: Path) -> Iterator[tuple[str, Path, str]]:
    """(link as written, file it points at, anchor or '') for every link that is not external."""
    for link in _links(page):
        if EXTERNAL.match(link):
            continue
        path, _, anchor = link.partition("#")
        yield link, (page.parent / path).resolve() if path else page, anchor


def _github_anchors(page: Path) -> set[str]:
    """The anchors GitHub generates for the page's headings: lower case, punctuation dropped, spaces to '-', and
    '-1', '-2', ... for repeated headings."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details to a guide in docs/"


@pytest.mark.parametrize("page", LINKED_PAGES, ids=_name)
def test_every_relative_link_points_to_an_existing_file(page: Path):
    assert page.is_file(), f"{_name(page)} is missing"
    dead = [link for link, target, _ in _local_links(page) if not target.exists()]
    assert not dead, f"{_name(page)}: links to missing files: {dead}"


@pytest.mark.parametrize("page", LINKED_PAGES, ids=_name)
def test_every_anchor_into_a_markdown_page_exists(page: Path):
    dead = [link for link, target, anchor in _local_links(page)
            if anchor and target.suffix == ".md" and target.is_file() and anchor not in _github_anchors(target)]
    assert not dead, f"{_name(page)}: links to headings that do not exist: {dead}"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.rglob("*.md"))], ids=_name)
def test_the_docs_do_not_point_outside_the_repository(page: Path):
    assert "../shared" not in page.read_text(encoding="utf-8"), (
        f"{_name(page)} mentions ../shared: say 'the project's research data, where present' instead")


def test_the_readme_names_only_trainers_that_exist():
    import m2s_nnunet.training as training

    known = {name for name in training.__all__ if TRAINER_NAME.fullmatch(name)} | {"nnUNetTrainer"}
    named = set(TRAINER_NAME.findall(README.read_text(encoding="utf-8")))
    assert named <= known, f"README.md names trainers that m2s_nnunet.training does not export: {named - known}"


def test_the_quick_start_runs_on_a_cpu_as_written():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```", text, re.M | re.S)
    assert block, "README.md has no ```bash block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 5, f"the quick start should be five lines, has {len(lines)}"
    assert lines[0].startswith('eval "$(m2s-nnunet env)"'), "the quick start must set nnU-Net's variables first"
    train = next((line for line in lines if line.startswith("nnUNetv2_train ")), "")
    predict = next((line for line in lines if line.startswith("nnUNetv2_predict ")), "")
    assert re.match(r"nnUNetv2_train \S+ \S+ \d ", train), f"train needs a fold: {train!r}"
    assert re.search(r" -f \d", predict), f"predict needs the trained fold(s): {predict!r}"
    for command in (train, predict):
        assert "-device cpu" in command, f"no -device cpu: {command!r}"
