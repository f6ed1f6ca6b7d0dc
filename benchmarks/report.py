"""Render a results file as the Markdown tables of docs/performance.md.

    python benchmarks/report.py                      # print the reference results' tables
    python benchmarks/report.py --summary            # print only the one-screen summary
    python benchmarks/report.py --write docs/performance.md

With ``--write``, the text between ``<!-- results:start -->`` and ``<!-- results:end -->``
in the given file is replaced, so the page's figures always come from one results file;
so is the text between ``<!-- summary:start -->`` and ``<!-- summary:end -->`` when the
file has those markers (the summary table the page opens with). The synchronous
contenders, where the run measured them, get rows of their own in the summary and a
table of their own under each backend.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from operations import ASYNC_CONTENDERS, SYNC_CONTENDERS
from run import SYNC_TARGETS, TARGETS, evaluate_targets

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "reference-results.json"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"

# How the summary names each ratio target's operation and its yardstick.
SUMMARY_OPS = {
    "get": "`get(id)`",
    "create": "`create()`",
    "create_tx": "`create()`, one transaction per call",
    "update": "`update(id, values)`",
    "delete": "`delete(id)`",
    "bulk_create": "`bulk_create()`",
    "bulk_create_returning": "`bulk_create()`",
    "bulk_insert": "`bulk_insert()`",
    "search": "`search()`, page and total",
    "keyset_deep": "keyset page at 90 % depth",
}
SUMMARY_AGAINST = {
    ("bulk_create_returning", "orm"): "ORM `insert().returning()`",
    ("bulk_insert", "core"): "Core `insert()`, executemany",
    ("get", "orm_sync"): "hand-written sync ORM",
    ("create", "orm_sync"): "hand-written sync ORM",
    ("create_tx", "orm_sync"): "hand-written sync ORM",
    ("update", "orm_sync"): "hand-written sync ORM",
    ("delete", "orm_sync"): "hand-written sync ORM",
    ("search", "orm_sync"): "hand-written sync ORM",
}
# The sync repository's targets name its class: the async rows keep their names.
SUMMARY_SYNC_OPS = {
    "get": "`SyncBaseRepository.get(id)`",
    "create": "`SyncBaseRepository.create()`",
    "create_tx": "`SyncBaseRepository.create()`, one transaction per call",
    "update": "`SyncBaseRepository.update(id, values)`",
    "delete": "`SyncBaseRepository.delete(id)`",
    "search": "`SyncBaseRepository.search()`, page and total",
}
# How the summary names the targets judged per operation, by kind.
SUMMARY_GROUPS = {
    "statements": "no more statements than hand-written",
    "faster:advanced_alchemy": "faster than advanced-alchemy",
    "faster:fastcrud": "faster than FastCRUD",
    "statements:sync": "`SyncBaseRepository`: no more statements than hand-written sync",
    "faster:advanced_alchemy_sync": (
        "`SyncBaseRepository` faster than advanced-alchemy's `SQLAlchemySyncRepository`"
    ),
}

LABELS = {
    "core": "Core",
    "orm": "hand-written ORM",
    "orm_guarded": "hand-written ORM, savepoint per write",
    "orm_utc": "hand-written ORM on sqla_repo's model",
    "orm_ordered": "hand-written ORM, objects in input order",
    "sqla_repo": "sqla_repo",
    "sqla_repo_nosp": "sqla_repo, no savepoints",
    "advanced_alchemy": "advanced-alchemy",
    "fastcrud": "FastCRUD",
    "orm_sync": "hand-written sync ORM",
    "sqla_repo_sync": "`SyncBaseRepository`",
    "advanced_alchemy_sync": "advanced-alchemy `SQLAlchemySyncRepository`",
}
SYNC_DRIVERS = {"pysqlite": "sqlite3", "psycopg": "psycopg 3", "pymysql": "PyMySQL"}
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}
TIMES, DASH, MINUS = "\u00d7", "\u2013", "\u2212"  # typographic signs for the tables


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}{TIMES}"


def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def server_name(result: dict[str, Any]) -> str:
    server = str(result["server"])
    match = re.match(r"PostgreSQL [\d.]+", server)
    if match:
        return match.group(0)
    if "MariaDB" in server:
        return "MariaDB " + server.split("-", 1)[0]
    return server


def has_sync(results: dict[str, Any]) -> bool:
    """Whether any backend of the run measured a sync contender."""
    return any(
        c in op["contenders"]
        for result in results["backends"].values()
        for op in result.get("operations", {}).values()
        for c in SYNC_CONTENDERS
    )


def operations_table(result: dict[str, Any]) -> list[str]:
    ops = result["operations"]
    present = [c for c in ASYNC_CONTENDERS if any(c in op["contenders"] for op in ops.values())]
    rows = []
    for op in ops.values():
        row = [op["label"]]
        for contender in present:
            stats = op["contenders"].get(contender)
            if stats is None:
                row.append(DASH)
                continue
            row.append(
                f"{fmt_ratio(stats['ratio_to_orm'])} · {fmt_time(stats['median_s'])} · "
                f"{stats['statements']}"
            )
        repo = op["contenders"].get("sqla_repo")
        row.append(fmt_ratio(repo["ratio_to_core"]) if repo else DASH)
        rows.append(row)
    return table(["operation", *(LABELS[c] for c in present), "sqla_repo ÷ Core"], rows)


def sync_operations_table(result: dict[str, Any]) -> list[str]:
    """The sync contenders' operations: ratios to the hand-written sync ORM, and the sync
    repository's time divided by the async one's."""
    ops = [op for op in result["operations"].values() if "orm_sync" in op["contenders"]]
    present = [c for c in SYNC_CONTENDERS if any(c in op["contenders"] for op in ops)]
    rows = []
    for op in ops:
        row = [op["label"]]
        for contender in present:
            stats = op["contenders"].get(contender)
            if stats is None:
                row.append(DASH)
                continue
            row.append(
                f"{fmt_ratio(stats['ratio_to_orm_sync'])} · {fmt_time(stats['median_s'])} · "
                f"{stats['statements']}"
            )
        mine, theirs = op["contenders"].get("sqla_repo_sync"), op["contenders"].get("sqla_repo")
        row.append(fmt_ratio(mine["median_s"] / theirs["median_s"]) if mine and theirs else DASH)
        rows.append(row)
    return table(["operation", *(LABELS[c] for c in present), "sync ÷ async sqla_repo"], rows)


def targets_table(results: dict[str, Any]) -> list[str]:
    backends = list(results["backends"])
    by_target: dict[str, dict[str, dict[str, Any]]] = {}
    for target in evaluate_targets(results):  # judged again: full precision, current rules
        by_target.setdefault(target["target"], {})[target["backend"]] = target
    rows = []
    for name, per_backend in by_target.items():
        row = [name.replace("<=", "≤").replace("x ", f"{TIMES} ").replace("x)", f"{TIMES})")]
        for backend in backends:
            target = per_backend.get(backend)
            if target is None:
                row.append(DASH)
                continue
            figure = target["figure"]
            shown = fmt_ratio(figure) if isinstance(figure, float) else str(figure)
            row.append(f"{'met' if target['met'] else '**missed**'} ({shown})")
        rows.append(row)
    return table(["target", *(BACKENDS[b] for b in backends)], rows, "l" + "l" * len(backends))


def _judged(met: bool, shown: str) -> str:
    return f"met {shown}" if met else f"**missed** {shown}"


def _ratio_name(op: str, against: str, limit: float, contender: str = "sqla_repo") -> str:
    yardstick = SUMMARY_AGAINST.get((op, against), "Core" if against == "core" else "hand-written")
    names = SUMMARY_SYNC_OPS if contender == "sqla_repo_sync" else SUMMARY_OPS
    return f"{names.get(op, op)} ≤ {limit:.2f}{TIMES} {yardstick}"


def summary_table(results: dict[str, Any]) -> list[str]:
    """One row per target with the verdict and the figure on each backend.

    Ratio targets show the ratio; "faster than" and "no more statements" targets, which
    are judged per operation, show how many operations meet them and name the misses.
    """
    backends = list(results["backends"])
    # Every ratio target has a row, in the order; a dash where it was not measured
    # (an operation left out with --ops, or a method this version does not have yet).
    # The sync repository's rows follow the async ones, in a run that measured it.
    rows: dict[str, dict[str, str]] = {
        _ratio_name(op, against, limit): {} for op, against, limit, _ in TARGETS
    }
    sync_rows: dict[str, dict[str, str]] = {}
    if has_sync(results):
        sync_rows = {
            _ratio_name(op, against, limit, "sqla_repo_sync"): {}
            for op, against, limit, _ in SYNC_TARGETS
        }
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    streams: dict[str, str] = {}
    for target in evaluate_targets(results):
        kind, backend = target.get("kind", "ratio"), target["backend"]
        if kind == "ratio":
            contender = target.get("contender", "sqla_repo")
            name = _ratio_name(target["op"], target["against"], target["limit"], contender)
            shown = fmt_ratio(target["figure"])
            into = sync_rows if contender == "sqla_repo_sync" else rows
            into.setdefault(name, {})[backend] = _judged(target["met"], shown)
        elif kind == "keyset_vs_page1":
            name = f"keyset page at 90 % depth ≤ {target['limit']:.2f}{TIMES} its page 1"
            shown = fmt_ratio(target["figure"])
            rows.setdefault(name, {})[backend] = _judged(target["met"], shown)
        elif kind == "stream":
            streams[backend] = _judged(target["met"], "").strip()
        else:
            grouped.setdefault(kind, {}).setdefault(backend, []).append(target)
    for kind, per_backend in grouped.items():
        counts = {len(items) for items in per_backend.values()}
        many = f"{max(counts)} operations" if len(counts) == 1 else "each operation"
        label = f"{SUMMARY_GROUPS.get(kind, kind)} ({many})"
        into = sync_rows if kind.endswith("sync") else rows
        for backend, items in per_backend.items():
            missed = [t["op"] for t in items if not t["met"]]
            shown = f"{len(items) - len(missed)} of {len(items)}"
            if missed:
                shown += " (" + ", ".join(missed) + ")"
            into.setdefault(label, {})[backend] = _judged(not missed, shown)
    if streams:
        rows["`stream()` at constant memory"] = streams
    rows.update(sync_rows)
    body = [[name, *(cells.get(b, DASH) for b in backends)] for name, cells in rows.items()]
    return table(["target", *(BACKENDS[b] for b in backends)], body, "l" * (len(backends) + 1))


def render_summary(results: dict[str, Any]) -> str:
    """The summary table between its markers, with the run it comes from."""
    source = results.get("source", {})
    commit = source.get("commit")
    where = f" at commit `{commit[:12]}`" if commit else ""
    out = [
        SUMMARY_START,
        "",
        (
            f"Ratios of medians from one run{where} ({results.get('created', 'date unknown')}); "
            '"met" or "**missed**" judges each against its target.'
        ),
        "",
        *summary_table(results),
        "",
        SUMMARY_END,
    ]
    return "\n".join(out) + "\n"


def _replace(page: str, start: str, end: str, text: str) -> str:
    before, rest = page.split(start, 1)
    _, after = rest.split(end, 1)
    return before + text.rstrip("\n") + after


def count_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for backend, result in results["backends"].items():
        for figures in result.get("count_strategy", {}).values():
            rows.append(  # noqa: PERF401 - reads better
                [
                    BACKENDS[backend],
                    f"{figures['matching_rows']:,}",
                    fmt_time(figures["window_s"]),
                    fmt_time(figures["separate_count_s"]),
                    fmt_ratio(figures["window_over_separate"]),
                ]
            )
    return table(
        [
            "backend",
            "matching rows",
            "page with COUNT(*) OVER ()",
            "page + separate COUNT",
            "window ÷ separate",
        ],
        rows,
    )


def pages_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for backend, result in results["backends"].items():
        ops = result["operations"]
        needed = ("page_first", "offset_deep", "keyset_first", "keyset_deep")
        if not all(name in ops for name in needed):
            continue
        for contender in ("orm", "sqla_repo"):
            med = {name: ops[name]["contenders"][contender]["median_s"] for name in needed}
            rows.append(
                [
                    BACKENDS[backend],
                    LABELS[contender],
                    fmt_time(med["page_first"]),
                    fmt_time(med["offset_deep"]),
                    fmt_time(med["keyset_first"]),
                    fmt_time(med["keyset_deep"]),
                    fmt_ratio(med["offset_deep"] / med["keyset_deep"]),
                    fmt_ratio(med["keyset_deep"] / med["page_first"]),
                ]
            )
    return table(
        [
            "backend",
            "contender",
            "offset page 1",
            "offset at depth",
            "keyset page 1",
            "keyset at depth",
            "offset ÷ keyset at depth",
            "keyset at depth ÷ offset page 1",
        ],
        rows,
        "ll" + "r" * 6,
    )


def stream_table(results: dict[str, Any]) -> list[str]:
    rows = []
    labels = dict(LABELS, orm_all="hand-written ORM, `.all()` (not a stream)")
    for backend, result in results["backends"].items():
        for contender, sizes in result.get("stream", {}).items():
            for size, figures in sorted(sizes.items(), key=lambda item: int(item[0])):
                rows.append(
                    [
                        BACKENDS[backend],
                        labels[contender],
                        f"{int(size):,}",
                        f"{figures['seconds']:.2f} s",
                        f"{figures['rss_growth_kib'] / 1024:.1f} MiB",
                        f"{figures['rss_peak_kib'] / 1024:.0f} MiB",
                    ]
                )
    return table(
        ["backend", "contender", "rows", "time", "peak RSS growth", "peak RSS"],
        rows,
        "llrrrr",
    )


def import_table(results: dict[str, Any]) -> list[str]:
    figures = results.get("import_time", {})
    rows = [
        [
            f"`{label}`" if " " not in label else label,
            fmt_time(values["wall_minus_interpreter_s"]),
            fmt_time(values["importtime_cumulative_s"]),
        ]
        for label, values in figures.items()
        if isinstance(values, dict)
    ]
    out = table(
        ["import", f"wall clock {MINUS} bare interpreter", "`-X importtime`, cumulative"], rows
    )
    bare = figures.get("interpreter_start_s")
    if bare is not None:
        out += ["", f"A bare interpreter starts in {fmt_time(bare)}."]
    return out


def environment(results: dict[str, Any]) -> list[str]:
    machine, versions = results["machine"], results["versions"]
    source = results.get("source", {})
    rows = [
        ["CPU", f"{machine['cpu']}, {machine['cores']} cores"],
        ["memory", f"{machine['ram_gib']} GiB"],
        ["OS", machine["os"]],
        ["Python", versions["python"]],
    ]
    for dist in (
        "sqlalchemy",
        "greenlet",
        "aiosqlite",
        "asyncpg",
        "asyncmy",
        "psycopg",
        "pymysql",
        "advanced-alchemy",
        "fastcrud",
        "pydantic",
    ):
        # The sync drivers only where the run recorded them (older runs did not).
        if dist in versions or dist not in {"psycopg", "pymysql"}:
            rows.append([dist, versions.get(dist, DASH)])  # noqa: PERF401 - reads better
    for backend, result in results["backends"].items():
        rows.append([BACKENDS[backend], server_name(result)])
    if source.get("commit"):
        dirty = " (with local changes)" if source.get("modified_files") else ""
        rows.append(
            ["sqla_repo", f"{versions['sqla_repo']}, commit `{source['commit'][:12]}`{dirty}"]
        )
    rows.append(["run", f"{results['created']}, {results['seconds'] / 60:.0f} minutes"])
    loads = [
        f"{BACKENDS[b]} {r['load_average_before'][0]:.1f}{DASH}{r['load_average_after'][0]:.1f}"
        for b, r in results["backends"].items()
        if "load_average_before" in r
    ]
    if loads:
        rows.append([f"1-minute load average (start{DASH}end)", ", ".join(loads)])
    params = results["params"]
    rows.append(
        [
            "sizes",
            (
                f"{params['rows']:,} rows; bulk {params['bulk_rows']:,}; upsert "
                f"{params['upsert_rows']:,}; stream {params['stream_rows']:,}; "
                f"{params['reps']} samples ({params['heavy_reps']} for bulk writes)"
            ),
        ]
    )
    return table(["", ""], rows, "ll")


def render(results: dict[str, Any]) -> str:
    out: list[str] = [START, "", "### Machine and versions", ""]
    out += environment(results)
    out += ["", "### Targets", ""]
    out += targets_table(results)
    for backend, result in results["backends"].items():
        out += ["", f"### {BACKENDS[backend]} ({server_name(result)})", ""]
        out += operations_table(result)
        if any("orm_sync" in op["contenders"] for op in result["operations"].values()):
            driver = str(result.get("sync_url", "")).split("://", 1)[0].partition("+")[2]
            out += ["", f"Synchronous, on a `Session` with {SYNC_DRIVERS.get(driver, driver)}:", ""]
            out += sync_operations_table(result)
    out += ["", "### Count strategy for `search()`", ""]
    out += count_table(results)
    out += ["", "### Deep pages", ""]
    out += pages_table(results)
    if any("stream" in r for r in results["backends"].values()):
        out += ["", "### Streaming", ""]
        out += stream_table(results)
    if "import_time" in results:
        out += ["", "### Import time", ""]
        out += import_table(results)
    out += ["", END]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--write", type=Path, help="replace the results section of this file")
    parser.add_argument(
        "--summary", action="store_true", help="print only the one-screen summary table"
    )
    args = parser.parse_args()
    results = json.loads(args.input.read_text())
    if args.write is None:
        print(render_summary(results) if args.summary else render(results), end="")
        return
    page = _replace(args.write.read_text(), START, END, render(results))
    if SUMMARY_START in page and SUMMARY_END in page:
        page = _replace(page, SUMMARY_START, SUMMARY_END, render_summary(results))
    args.write.write_text(page)
    print(f"updated {args.write}")


if __name__ == "__main__":
    main()
