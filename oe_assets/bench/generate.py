"""Write N generated process contexts as JSONL (one document per line, createdAt order).

Run as ``python -m oe_assets.bench.generate --out FILE --contexts N``; prints one JSON line
(contexts, bytes, seconds, first and last day). Documents are the simulator's
(:func:`oe_assets.simulator.iter_generated_contexts`): event keys with dots, nested objects,
arrays of objects, arrays inside arrays, arrays of scalars, empty objects and arrays.
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from oe_assets.bench.measure import print_summary
from oe_assets.simulator import iter_generated_contexts

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_DAYS = 30
DEFAULT_SEED = 7


@dataclass(frozen=True)
class GenerateReport:
    contexts: int
    bytes: int
    seconds: float
    days: int
    start: str


def generate_jsonl(
    path: Path,
    contexts: int,
    *,
    seed: int = DEFAULT_SEED,
    start: datetime = DEFAULT_START,
    days: int = DEFAULT_DAYS,
) -> GenerateReport:
    """Stream ``contexts`` documents into ``path`` (nothing is kept in memory)."""
    began = time.perf_counter()
    # The generator allocates many small, short-lived objects: the cyclic GC only costs time here.
    gc.collect()
    gc.freeze()
    gc.disable()
    written = 0
    try:
        with path.open("wb", buffering=1 << 20) as out:
            buffer: list[bytes] = []
            for doc in iter_generated_contexts(contexts, seed=seed, start=start, days=days):
                buffer.append(orjson.dumps(doc))
                if len(buffer) >= 2000:
                    buffer.append(b"")
                    data = b"\n".join(buffer)
                    out.write(data)
                    written += len(data)
                    buffer.clear()
            if buffer:
                buffer.append(b"")
                data = b"\n".join(buffer)
                out.write(data)
                written += len(data)
    finally:
        gc.enable()
        gc.unfreeze()
    return GenerateReport(
        contexts=contexts,
        bytes=written,
        seconds=round(time.perf_counter() - began, 3),
        days=days,
        start=start.date().isoformat(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oe_assets.bench.generate", description=__doc__)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--contexts", required=True, type=int)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--start", default=DEFAULT_START.date().isoformat(), help="YYYY-MM-DD (UTC)")
    args = parser.parse_args(argv)
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    return print_summary(
        lambda: asdict(generate_jsonl(args.out, args.contexts, seed=args.seed, start=start, days=args.days))
    )


if __name__ == "__main__":
    raise SystemExit(main())
