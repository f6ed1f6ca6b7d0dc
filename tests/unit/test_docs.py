"""The documentation covers the public API, and its example programs run."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import markdown
import pytest
import yaml

import sqla_repo
from sqla_repo import exceptions

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
EXAMPLES_DIR = DOCS / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.rglob("*.py") if "__pycache__" not in p.parts)
PAGES = sorted(p for p in DOCS.rglob("*.md") if "__pycache__" not in p.parts)

# `::: dotted.path` renders that object (and, for a module, its members) with mkdocstrings.
DIRECTIVE = re.compile(r"^:::\s+(?P<target>[\w.]+)\s*$", re.MULTILINE)
# A heading with an explicit anchor: `## Title { #anchor }`.
HEADING_ANCHOR = re.compile(r"^#{1,6}\s.*\{\s*#(?P<anchor>[\w-]+)\s*\}\s*$", re.MULTILINE)


def _reference_pages() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md"))}


def _rendered_by_directive(name: str, pages: dict[str, str]) -> bool:
    """Whether a `:::` directive on a reference page renders the object exported as *name*."""
    exported = getattr(sqla_repo, name)
    for text in pages.values():
        for match in DIRECTIVE.finditer(text):
            target = match["target"]
            if target == "sqla_repo":
                continue  # the package page renders its docstring only, not its members
            if target.rsplit(".", 1)[-1] == name:
                return True
            try:
                module = importlib.import_module(target)
            except ImportError:
                continue  # a directive for a single object, not a module
            public = getattr(module, "__all__", ())
            if name in public and getattr(module, name, None) is exported:
                return True
    return False


def _exception_classes() -> list[type[exceptions.RepositoryError]]:
    return [
        obj
        for _, obj in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(obj, exceptions.RepositoryError) and obj.__module__ == exceptions.__name__
    ]


class TestReference:
    def test_every_public_name_is_in_the_reference(self):
        """Every name in sqla_repo.__all__ is named or rendered on a reference page."""
        pages = _reference_pages()
        text = "\n".join(pages.values())
        missing = [
            name
            for name in sqla_repo.__all__
            if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
            and not _rendered_by_directive(name, pages)
        ]
        assert missing == [], f"add these to docs/reference/: {missing}"

    def test_directives_name_importable_objects(self):
        """Every `:::` directive on a reference page names an object that exists."""
        broken = []
        for page, text in _reference_pages().items():
            for match in DIRECTIVE.finditer(text):
                module_name, _, attr = match["target"].rpartition(".")
                try:
                    importlib.import_module(match["target"])
                except ImportError:
                    module = importlib.import_module(module_name)
                    if not hasattr(module, attr):
                        broken.append(f"{page}: {match['target']}")
        assert broken == []

    def test_every_exception_code_has_an_anchor(self):
        """Each exception's code is the anchor of a heading on the exceptions page."""
        anchors = set(HEADING_ANCHOR.findall((REFERENCE / "exceptions.md").read_text("utf-8")))
        missing = {
            cls.__name__: cls.code for cls in _exception_classes() if cls.code not in anchors
        }
        assert missing == {}, f"add headings with these anchors to exceptions.md: {missing}"

    def test_exception_codes_are_unique(self):
        """No two exception classes share a code."""
        codes = [cls.code for cls in _exception_classes()]
        assert len(codes) == len(set(codes))
        assert len(codes) >= 10  # the whole hierarchy was found


def _example_param(path: Path) -> object:
    name = path.relative_to(EXAMPLES_DIR).with_suffix("").as_posix()
    needs_fastapi = "fastapi" in path.read_text(encoding="utf-8")
    return pytest.param(path, id=name, marks=[pytest.mark.fastapi] if needs_fastapi else [])


@pytest.mark.parametrize("example", [_example_param(p) for p in EXAMPLES])
def test_example_runs(example: Path, tmp_path: Path):
    """Each program in docs/examples/ runs in an empty directory and prints its recorded output."""
    env = {**os.environ, "PYTHONWARNINGS": "error", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(  # noqa: S603 - runs this repository's own files
        [sys.executable, str(example)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Pages show the output from the .txt file next to the program, so it cannot drift.
    expected = example.with_suffix(".txt")
    if expected.exists():
        assert result.stdout == expected.read_text(encoding="utf-8")


def test_examples_are_shown():
    """Every example program, and every recorded output, is included in some page."""
    included = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
    files = [*EXAMPLES, *EXAMPLES_DIR.rglob("*.txt")]
    orphans = [
        path.relative_to(ROOT).as_posix()
        for path in files
        if f'"{path.relative_to(ROOT).as_posix()}' not in included
    ]
    assert orphans == [], f"include these in a page with --8<--: {orphans}"


# --- Pages: every page parses, and no code block shows runs of blank lines ------------------

# An opening or closing code fence, possibly indented (inside an admonition or a tab).
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
# A snippet include: `--8<-- "path"`, `--8<-- "path:section"` or `--8<-- "path:first:last"`.
SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^":]+)(?::(?P<spec>[^"]+))?"\s*$')
# A section marker inside an included file, removed from what the page shows.
SECTION_MARKER = re.compile(r"--8<--\s+\[(?P<kind>start|end):(?P<name>[\w-]+)\]")
# Python code may hold two blank lines (PEP 8, and `ruff format`, put two between top-level
# definitions); any other block at most one. More is an artefact, such as the blank lines
# left around section markers, and reads as a gap on the page.
PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "pycon"})


def _page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def _snippet_lines(path: str, spec: str | None) -> list[str]:
    """Return the lines a snippet include shows, as the snippets extension renders them."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    if spec is not None and re.fullmatch(r"\d+(:\d+)?", spec):
        first, _, last = spec.partition(":")
        lines = lines[int(first) - 1 : int(last or len(lines))]
    elif spec is not None:
        inside, selected = False, []
        for line in lines:
            marker = SECTION_MARKER.search(line)
            if marker and marker["name"] == spec:
                inside = marker["kind"] == "start"
            elif inside:
                selected.append(line)
        assert selected, f"{path} has no section {spec!r}"
        lines = selected
    return [line for line in lines if not SECTION_MARKER.search(line)]


def _code_blocks(page: Path) -> list[tuple[int, str, list[str]]]:
    """Return ``(line number, language, lines shown)`` for each fenced block of *page*."""
    blocks: list[tuple[int, str, list[str]]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        index += 1
        if not opening:
            continue
        start, indent, fence = index, opening["indent"], opening["fence"]
        words = re.findall(r"[\w+-]+", opening["info"].removeprefix("{"))
        language = words[0].lower().lstrip(".") if words else ""
        shown: list[str] = []
        while index < len(lines):
            line = lines[index]
            index += 1
            closing = FENCE.match(line)
            if closing and closing["fence"].startswith(fence) and not closing["info"]:
                break
            line = line.removeprefix(indent)
            snippet = SNIPPET.match(line)
            if snippet:
                shown.extend(_snippet_lines(snippet["path"], snippet["spec"]))
            else:
                shown.append(line)
        blocks.append((start, language, shown))
    return blocks


def _blank_runs(lines: list[str]) -> list[tuple[int, int]]:
    """Return ``(length, first line)`` of each run of blank lines between non-blank lines."""
    runs, run = [], 0
    for number, line in enumerate(lines, start=1):
        if line.strip():
            if run and number > run + 1:
                runs.append((run, number - run))
            run = 0
        else:
            run += 1
    return runs


def _markdown_renderer() -> markdown.Markdown:
    """A Markdown renderer with the extensions (and settings) mkdocs.yml configures."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    extensions: list[str] = []
    settings: dict[str, dict[str, object]] = {}
    for entry in config["markdown_extensions"]:
        name, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        extensions.append(name)
        settings[name] = dict(options or {})
    if "pymdownx.snippets" in settings:
        settings["pymdownx.snippets"]["base_path"] = [str(ROOT)]
    return markdown.Markdown(extensions=extensions, extension_configs=settings)


def test_pages_are_found():
    """The page checks below see every page, including the home page and the new guides."""
    names = {_page_id(page) for page in PAGES}
    assert {"index.md", "cheatsheet.md", "faq.md", "how-to/adopt.md"} <= names
    assert len(PAGES) >= 40


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_renders(page: Path):
    """Each page converts with the configured extensions, and every snippet it includes exists."""
    renderer = _markdown_renderer()
    html = renderer.convert(page.read_text(encoding="utf-8"))
    assert html.strip()
    assert "--8<--" not in html, "a snippet include was not expanded"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_code_blocks_have_no_runs_of_blank_lines(page: Path):
    """No code block, with its included snippets expanded, shows a gap of blank lines."""
    gaps = []
    for start, language, shown in _code_blocks(page):
        allowed = 2 if language in PYTHON_LANGUAGES else 1
        gaps.extend(
            f"block at line {start}: {length} blank lines at its line {where}"
            for length, where in _blank_runs(shown)
            if length > allowed
        )
    assert gaps == [], f"{_page_id(page)}: {gaps}"


def test_blank_run_check_sees_gaps_left_by_section_markers():
    """The check finds the gap that section markers leave in a whole-file include."""
    source = "def a():\n    pass\n\n\n# --8<-- [end:a]\n\n\n# --8<-- [start:b]\ndef b():\n"
    shown = [line for line in source.splitlines() if not SECTION_MARKER.search(line)]
    assert _blank_runs(shown) == [(4, 3)]
    assert _blank_runs(["x", "", "", "y", "", "z"]) == [(2, 2), (1, 5)]
    assert _blank_runs(["", "", "x", "", ""]) == []  # leading and trailing blanks


def test_cheatsheet_is_complete():
    """The cheat sheet names every repository method, operator, mixin and FastAPI helper."""
    from sqla_repo import mixins  # noqa: PLC0415
    from sqla_repo.ext import fastapi  # noqa: PLC0415
    from sqla_repo.filters import ALIASES, OPERATORS  # noqa: PLC0415
    from sqla_repo.repository import BaseRepository  # noqa: PLC0415

    text = (DOCS / "cheatsheet.md").read_text(encoding="utf-8")
    methods = [
        name
        for name, member in inspect.getmembers(BaseRepository)
        if not name.startswith("_") and callable(member)
    ]
    assert "search" in methods
    missing = [f"BaseRepository.{name}" for name in methods if f".{name}(" not in text]
    missing += [f"operator {op}" for op in (*OPERATORS, *ALIASES) if op not in text]
    missing += [name for name in (*mixins.__all__, *fastapi.__all__) if name not in text]
    assert missing == [], f"add these to docs/cheatsheet.md: {missing}"
