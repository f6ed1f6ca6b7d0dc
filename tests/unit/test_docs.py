"""The documentation covers the public API, and its example programs run."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sqla_repo
from sqla_repo import exceptions

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
EXAMPLES_DIR = DOCS / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.rglob("*.py") if "__pycache__" not in p.parts)

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
