"""Development sessions: ``nox -l`` lists them, ``nox`` runs the default ones.

Sessions install the project and its PEP 735 dependency groups from ``pyproject.toml``.
Interpreters this machine lacks are skipped rather than failing the run.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"  # nox.project.dependency_groups
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lint", "typecheck", "tests"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]
ALL_EXTRAS = ".[sqlite,postgres,mysql,fastapi]"
BACKEND_EXTRAS = {"postgresql": "postgres", "mariadb": "mysql"}

# Run inside the freshly built wheel's own environment: the core must import without
# the optional FastAPI/Pydantic stack installed or imported.
WHEEL_CHECK = """
import importlib.util, sys
import sqla_repo
for name in ("fastapi", "pydantic"):
    assert importlib.util.find_spec(name) is None, f"{name} is installed"
    assert name not in sys.modules, f"import sqla_repo imported {name}"
print("sqla_repo", sqla_repo.__version__, "imports without fastapi and pydantic")
"""


def groups(*names: str) -> list[str]:
    """Return the requirements of the named dependency groups."""
    return list(nox.project.dependency_groups(PYPROJECT, *names))


def print_sqlalchemy_version(session: nox.Session, expected_prefix: str | None = None) -> None:
    """Show (and optionally check) the SQLAlchemy release the session runs against."""
    code = "import sqlalchemy; print('SQLAlchemy', sqlalchemy.__version__)"
    if expected_prefix is not None:
        code += f"; assert sqlalchemy.__version__.startswith({expected_prefix!r})"
    session.run("python", "-c", code)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on SQLite (no server needed)."""
    session.install("-e", ".[sqlite,fastapi]", *groups("test"))
    session.run("pytest", "--backend", "sqlite", *session.posargs)


@nox.session
@nox.parametrize("db", list(BACKEND_EXTRAS), ids=list(BACKEND_EXTRAS))
def backend(session: nox.Session, db: str) -> None:
    """Run the test suite on one database server (see DEVELOPERS.md for the URLs)."""
    session.install("-e", f".[sqlite,{BACKEND_EXTRAS[db]},fastapi]", *groups("test"))
    session.run("pytest", "--backend", db, *session.posargs)


@nox.session
def sqla20(session: nox.Session) -> None:
    """Run the whole suite, on every backend, against SQLAlchemy 2.0."""
    session.install("-e", ALL_EXTRAS, *groups("test"), "sqlalchemy[asyncio]~=2.0.30")
    print_sqlalchemy_version(session, "2.0.")
    session.run("pytest", *session.posargs)


@nox.session
def sqla21(session: nox.Session) -> None:
    """Run the whole suite, on every backend, against SQLAlchemy 2.1."""
    session.install("-e", ALL_EXTRAS, *groups("test"), "sqlalchemy[asyncio]~=2.1.0")
    print_sqlalchemy_version(session, "2.1.")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install(*groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check with mypy (strict; settings in pyproject.toml)."""
    session.install("-e", ALL_EXTRAS, *groups("typing"))
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; warnings are errors."""
    session.install("-e", ".", *groups("docs"))
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build sdist and wheel, then install the wheel alone into a fresh environment."""
    session.install("build", "twine")
    tmp = Path(session.create_tmp())
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    session.run("twine", "check", "--strict", *(str(p) for p in sorted(dist.iterdir())))

    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("sqla_repo/__init__.py", "sqla_repo/py.typed"):
        if required not in names:
            session.error(f"{wheel.name} lacks {required}")
    strays = sorted({n.split("/")[0] for n in names} - {"sqla_repo", wheel_dist_info(wheel)})
    if strays:
        session.error(f"{wheel.name} contains unexpected top-level entries: {strays}")

    venv = tmp / "wheel-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv))
    bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = str(bindir / "python")
    session.run(python, "-m", "pip", "install", "--quiet", str(wheel), external=True)
    session.run(python, "-c", WHEEL_CHECK, external=True)


# Run inside the docs_browser session's environment (with playwright): serve the built site
# on 127.0.0.1, load every page in headless Chromium at each width, and report any element
# that sticks out to the right of the viewport outside a scroll container (code blocks and
# tables scroll on their own; a page that scrolls sideways as a whole is the failure).
OVERFLOW_CHECK = r"""
import functools, http.server, sys, threading
from pathlib import Path
from playwright.sync_api import sync_playwright

site, chromium = Path(sys.argv[1]), sys.argv[2]
widths = [int(w) for w in sys.argv[3].split(",")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
FIND = '''() => {
  const width = window.innerWidth, found = [];
  const clipping = ["auto", "scroll"];
  const clips = (el) => clipping.includes(getComputedStyle(el).overflowX);
  const inside = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (clips(a)) return true;
    }
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
      + (typeof el.className === "string" && el.className.trim()
         ? "." + el.className.trim().split(/\s+/).join(".") : "");
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= width + 1) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.position === "fixed" || inside(el)) continue;
    found.push(name(el) + " ends at " + Math.round(box.right) + "px: "
               + (el.textContent || "").trim().slice(0, 60));
    if (found.length >= 5) break;
  }
  const page = document.documentElement.scrollWidth;
  if (page > width) found.unshift("the page is " + page + "px wide");
  return found;
}'''

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
handler.func.log_message = lambda *args: None
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}/"
pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
failures = 0
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
    for width in widths:
        page = browser.new_page(viewport={"width": width, "height": 900})
        for path in pages:
            page.goto(base + path.removesuffix("index.html"), wait_until="load")
            problems = page.evaluate(FIND)
            if problems:
                failures += 1
                print(f"{width}px {path}:", *problems, sep="\n    ")
        page.close()
    browser.close()
server.shutdown()
print(f"{len(pages)} pages at {widths} px: {failures} overflowing")
sys.exit(1 if failures else 0)
"""
BROWSER_WIDTHS = "1280,390"


@nox.session
def docs_browser(session: nox.Session) -> None:
    """Build the site and load every page in headless Chromium at 1280 and 390 px.

    Fails when a page scrolls sideways, or an element sticks out of the viewport outside
    a scroll container. Needs Chromium (Debian: ``apt-get install chromium``) at
    ``/usr/bin/chromium`` or at the path in ``CHROMIUM``; Playwright drives it and
    downloads no browser. Arguments after ``--`` go to ``mkdocs build``.
    """
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        session.error("Chromium is missing: apt-get install chromium, or set CHROMIUM")
    session.install("-e", ".", *groups("docs"), "playwright")
    site = Path(session.create_tmp()).resolve() / "site"
    # mkdocs.yml sets strict: true; a config given after -- decides for itself.
    session.run("mkdocs", "build", "--site-dir", str(site), *session.posargs)
    script = site.parent / "overflow_check.py"
    script.write_text(OVERFLOW_CHECK, encoding="utf-8")
    session.run("python", str(script), str(site), chromium, BROWSER_WIDTHS)


def wheel_dist_info(wheel: Path) -> str:
    """Return the ``.dist-info`` directory name of *wheel*."""
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"
