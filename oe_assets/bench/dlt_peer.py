"""Load a JSONL file of process contexts with dlt, in its own process (the peer we compare with).

``python -m oe_assets.bench.dlt_peer --input FILE --db OUT.duckdb --work DIR`` prints one JSON line.

What a dlt user would write for "nested JSON into DuckDB": one resource yielding the parsed
documents (lists of 1,000, orjson, like ours), ``dlt.pipeline(destination="duckdb")``, the
parquet loader file format and dlt's default nesting (every array becomes a child table), the
default ``append`` write disposition. The three steps (extract, normalize, load) are run and
timed one after the other; together they are ``pipeline.run``.

Needs the ``bench`` extra (``pip install -e '.[bench]'``); nothing else in the project imports dlt.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from oe_assets.bench.measure import loader_arguments, print_summary

DATASET = "oe_bench"
TABLE = "execution_context"
INSTALL_HINT = "pip install -e '.[bench]'  (or: make bench)"


def dlt_available() -> bool:
    """True when dlt (with its duckdb destination) can be imported."""
    import importlib.util

    return importlib.util.find_spec("dlt") is not None


def _documents(path: Path, batch: int = 1000) -> Iterator[list[Any]]:
    with path.open("rb") as f:
        docs: list[Any] = []
        for line in f:
            if line.strip():
                docs.append(orjson.loads(line))
                if len(docs) >= batch:
                    yield docs
                    docs = []
        if docs:
            yield docs


def load_jsonl(path: Path, db: Path, work: Path) -> dict[str, Any]:
    """Load ``path`` into the DuckDB file ``db`` with dlt; a summary dict."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DLT_DATA_DIR", str(work / "dlt_data"))
    import dlt

    @dlt.resource(name=TABLE)
    def contexts() -> Iterator[list[Any]]:
        yield from _documents(path)

    pipeline = dlt.pipeline(
        pipeline_name="oe_bench",
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name=DATASET,
        pipelines_dir=str(work / "pipelines"),
    )
    began = time.perf_counter()
    pipeline.extract(contexts(), loader_file_format="parquet")
    extracted = time.perf_counter()
    pipeline.normalize()
    normalized = time.perf_counter()
    info = pipeline.load()
    loaded = time.perf_counter()
    info.raise_on_failed_jobs()
    return {
        "loader": "dlt",
        "dlt_version": dlt.__version__,
        "loader_file_format": "parquet",
        "dataset": DATASET,
        "seconds": round(loaded - began, 3),
        "seconds_extract": round(extracted - began, 3),
        "seconds_normalize": round(normalized - extracted, 3),
        "seconds_load": round(loaded - normalized, 3),
        "peak_rss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = loader_arguments("dlt_peer", __doc__, profile=True)
    parser.add_argument("--work", required=True, type=Path, help="dlt's pipelines folder goes here")
    args = parser.parse_args(argv)
    if not dlt_available():
        sys.stderr.write(f"dlt is not installed: {INSTALL_HINT}\n")
        return 3
    return print_summary(lambda: load_jsonl(args.input, args.db, args.work), args.profile)


if __name__ == "__main__":
    raise SystemExit(main())
