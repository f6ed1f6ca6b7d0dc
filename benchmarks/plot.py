"""Draw the benchmark ratios of a results file as a PNG (needs matplotlib).

    python benchmarks/plot.py                                   # the reference results
    python benchmarks/plot.py benchmarks/results/<time>.json out.png

One panel per backend: for each operation, every contender's median time divided by the
hand-written ORM version's (below 1 is faster), on a logarithmic axis.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
from operations import ASYNC_CONTENDERS

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "reference-results.json"
DEFAULT_OUTPUT = HERE.parent / "docs" / "assets" / "benchmarks.png"

# The async contenders, in the tables' order; not SQLAlchemy's ordered bulk INSERT, which
# on SQLite sends one statement per row and would dwarf every other bar.
ORDER = tuple(c for c in ASYNC_CONTENDERS if c != "orm_ordered")
LABELS = {
    "core": "SQLAlchemy Core",
    "orm": "hand-written ORM",
    "orm_guarded": "hand-written ORM, savepoint per write",
    "orm_utc": "hand-written ORM on sqla_repo's model",
    "sqla_repo": "sqla_repo",
    "sqla_repo_nosp": "sqla_repo, use_savepoints=False",
    "advanced_alchemy": "advanced-alchemy",
    "fastcrud": "FastCRUD",
}
COLORS = {
    "core": "#9e9e9e",
    "orm": "#424242",
    "orm_guarded": "#8d6e63",
    "orm_utc": "#78909c",
    "sqla_repo": "#3f51b5",
    "sqla_repo_nosp": "#9fa8da",
    "advanced_alchemy": "#e65100",
    "fastcrud": "#2e7d32",
}
SHORT = {
    "get": "get",
    "create": "create",
    "update": "update",
    "delete": "delete",
    "bulk_create": "bulk\ncreate",
    "bulk_create_returning": "bulk\ncreate\nvs ORM\nINSERT",
    "upsert": "upsert",
    "search": "search",
    "search_filters": "search\nfilters=",
    "page_first": "offset\npage 1",
    "offset_deep": "offset\ndeep",
    "keyset_first": "keyset\npage 1",
    "keyset_deep": "keyset\ndeep",
}


def plot(results: dict, output: Path) -> None:
    backends = list(results["backends"].items())
    # Drawn for a content column about 780 px wide (the docs at 1280 px): 8 inches at
    # 180 dpi is scaled down about 0.55 times, so 9-point text shows at about 12 px.
    fig, axes = plt.subplots(len(backends), 1, figsize=(8, 3.4 * len(backends)), squeeze=False)
    present = [
        c
        for c in ORDER
        if any(c in op["contenders"] for _, r in backends for op in r["operations"].values())
    ]
    width = 0.8 / len(present)
    low, high = 1.0, 1.0
    for (name, result), ax in zip(backends, axes[:, 0], strict=True):
        ops = list(result["operations"])
        for index, contender in enumerate(present):
            xs, ys = [], []
            for position, op in enumerate(ops):
                stats = result["operations"][op]["contenders"].get(contender)
                if stats is None:
                    continue
                xs.append(position - 0.4 + width * (index + 0.5))
                ys.append(stats["ratio_to_orm"])
            if ys:
                low, high = min(low, *ys), max(high, *ys)
            ax.bar(xs, ys, width, color=COLORS[contender], label=LABELS[contender])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(ops)))
        ax.set_xticklabels([SHORT.get(op, op) for op in ops], fontsize=9)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_ylabel("time ÷ hand-written ORM", fontsize=9)
        ax.set_title(f"{name}: {result['server'].split(' on ')[0]}", fontsize=11, loc="left")
        ax.grid(axis="y", which="both", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylim(10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high)))
    axes[0, 0].legend(ncol=3, fontsize=9, loc="lower center", bbox_to_anchor=(0.5, 1.12))
    versions = results["versions"]
    fig.text(
        0.01,
        0.005,
        f"median of interleaved samples; {results['params']['rows']:,} rows; "
        f"{results['machine']['cpu']}, {results['machine']['cores']} cores\n"
        f"sqla_repo {versions['sqla_repo']}, SQLAlchemy {versions['sqlalchemy']}, "
        f"advanced-alchemy {versions['advanced-alchemy']}, FastCRUD {versions['fastcrud']}, "
        f"Python {versions['python']}",
        fontsize=8,
        color="#555555",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    plot(json.loads(args.input.read_text()), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
