"""Citations of the project's documents resolve: every ``<path>.md`` named in code, comments,
the catalogue and the documents themselves exists in the repository, and every section it
cites (``§3``, ``§4.2``, ``§2–9``, ``§1, §5``, or a quoted heading after a comma) is a heading
of that document. A reader with only the repository can follow every reference."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_FOLDERS = ("simulators", "conformance", "fixtures", "tests", "benchmarks")
SCANNED_SUFFIXES = (".py", ".toml", ".md", ".j2")

# A document path (``docs/vendors/pelion.md``, ``README.md``), then what it cites.
PATH = re.compile(r"(?<![\w/.*-])((?:[\w.-]+/)*[\w-][\w.-]*\.md)\b")
SECTION = r"(\d+(?:\.\d+)*)"
SECTIONS = re.compile(rf"\s*,?\s*§{SECTION}((?:\s*[–-]\s*§?{SECTION}|\s*,\s*§{SECTION})*)")
MORE = re.compile(rf"\s*[–-]\s*§?{SECTION}|\s*,\s*§{SECTION}")
TITLE = re.compile(r'\s*,\s*"([^"\n]+)"')
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$")
NUMBERED = re.compile(rf"^{SECTION}\.?\s+(.+)$")


@dataclass(frozen=True)
class Citation:
    where: str  # file:line
    source: Path  # the citing file
    target: str  # the path as written
    sections: tuple[tuple[str, str], ...]  # (first, last) per cited section or range
    title: str | None


def _scanned_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml", *(ROOT / "docs").rglob("*.md")]
    for folder in CODE_FOLDERS:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in SCANNED_SUFFIXES]
    me = Path(__file__).resolve()
    return sorted({p for p in files if p.is_file() and p.resolve() != me})


def _citations() -> list[Citation]:
    found = []
    for path in _scanned_files():
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            for match in PATH.finditer(line):
                rest = line[match.end() :]
                sections: list[tuple[str, str]] = []
                title = None
                if cited := SECTIONS.match(rest):
                    sections.append((cited.group(1), cited.group(1)))
                    pending = sections[0]
                    for more in MORE.finditer(cited.group(2)):
                        if more.group(1):  # a range: the previous section up to this one
                            sections[-1] = (pending[0], more.group(1))
                        else:
                            pending = (more.group(2), more.group(2))
                            sections.append(pending)
                elif named := TITLE.match(rest):
                    title = named.group(1)
                found.append(
                    Citation(
                        f"{path.relative_to(ROOT)}:{number}",
                        path,
                        match.group(1),
                        tuple(sections),
                        title,
                    )
                )
    return found


def _resolve(citation: Citation) -> Path | None:
    for base in (ROOT, citation.source.parent):
        candidate = (base / citation.target).resolve()
        if candidate.is_file() and ROOT in candidate.parents:
            return candidate
    return None


def _headings(document: Path) -> tuple[set[str], set[str]]:
    """The section numbers and the heading titles (without their numbers) of a document."""
    numbers: set[str] = set()
    titles: set[str] = set()
    in_code = False
    for line in document.read_text("utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not (heading := HEADING.match(line)):
            continue
        text = heading.group(1)
        titles.add(text)
        if numbered := NUMBERED.match(text):
            numbers.add(numbered.group(1))
            titles.add(numbered.group(2))
    return numbers, titles


def _problems(citation: Citation) -> list[str]:
    document = _resolve(citation)
    if document is None:
        return [f"{citation.where}: {citation.target} is not in the repository"]
    if not citation.sections and citation.title is None:
        return []
    numbers, titles = _headings(document)
    problems = []
    if citation.title is not None and citation.title not in titles:
        problems.append(f'{citation.where}: {citation.target} has no heading "{citation.title}"')
    for first, last in citation.sections:
        wanted = list(dict.fromkeys([first, last]))
        if first.isdigit() and last.isdigit():
            wanted = [str(n) for n in range(int(first), int(last) + 1)]
        missing = [f"§{n}" for n in wanted if n not in numbers]
        if missing:
            problems.append(f"{citation.where}: {citation.target} has no {', '.join(missing)}")
    return problems


def test_the_scan_finds_the_citations() -> None:
    """The scanner sees the citations the code makes (so the test below cannot pass vacuously)."""
    citations = _citations()
    targets = {c.target for c in citations}
    assert {"docs/sut-contract.md", "docs/architecture.md", "docs/requirements.md"} <= targets
    assert {"docs/vendors/apple.md", "docs/vendors/pelion.md", "docs/vendors/ivanti.md"} <= targets
    assert sum(bool(c.sections) for c in citations) >= 30
    assert any(c.title for c in citations)


def test_every_cited_document_and_section_exists() -> None:
    problems = [problem for citation in _citations() for problem in _problems(citation)]
    assert problems == [], "citations that lead nowhere:\n" + "\n".join(problems)


def test_the_docs_index_lists_every_document() -> None:
    index = (ROOT / "docs" / "README.md").read_text("utf-8")
    documents = sorted(p.relative_to(ROOT / "docs") for p in (ROOT / "docs").rglob("*.md"))
    unlisted = [str(d) for d in documents if d.name != "README.md" and f"({d})" not in index]
    assert unlisted == [], f"docs/README.md does not list: {unlisted}"
