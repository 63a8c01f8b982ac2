"""`oe-assets`: run the demo, materialize days, serve the simulator, manage the schema file."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from oe_assets import settings


def _today() -> date:
    return datetime.now(UTC).date()


def _print_summary(warehouse: Path, report: object) -> None:
    import duckdb

    from oe_assets.defs.runner import GraphRunReport

    assert isinstance(report, GraphRunReport)
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()
        print(f"\nWarehouse {warehouse}:")
        for (name,) in tables:
            count = conn.execute(
                f'SELECT count(*) FROM "{str(name).replace(chr(34), chr(34) * 2)}"'
            ).fetchone()
            print(f"  {name:<70} {count[0] if count else 0:>9} rows")
    finally:
        conn.close()
    failed = [c for c in report.checks if not c.passed]
    print(f"\nChecks: {len(report.checks) - len(failed)} passed, {len(failed)} failed")
    for check in report.checks:
        mark = "ok  " if check.passed else f"FAIL ({check.severity}, {check.offending_rows} rows)"
        print(f"  {mark:<28} {check.asset} :: {check.name}")


def cmd_demo(args: argparse.Namespace) -> int:
    from oe_assets.defs.runner import ensure_dagster_home, run_whole_graph
    from oe_assets.simulator import SimulatorServer

    home = ensure_dagster_home(Path(args.dagster_home) if args.dagster_home else None)
    warehouse = Path(args.warehouse).resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    server = SimulatorServer(seed=args.seed, days=args.days, contexts_per_day=args.contexts_per_day).start()
    try:
        os.environ.update(
            {
                settings.API_URL: server.url,
                settings.AUTH_URL: server.url,
                settings.CLIENT_ID: server.client_id,
                settings.CLIENT_SECRET: server.client_secret,
                settings.WAREHOUSE: str(warehouse),
                settings.DIGITAL_PROCESS_IDS: "",
            }
        )
        start = _today() - timedelta(days=args.days)
        os.environ.setdefault(settings.START_DATE, start.isoformat())
        from oe_assets.definitions import build_definitions

        print(f"OE simulator at {server.url}; materializing {start} .. {_today()} into {warehouse}")
        report = run_whole_graph(build_definitions(), start, _today())
    finally:
        server.stop()
    if not report.success:
        print(f"oe-assets demo failed: {report.failure}", file=sys.stderr)
        return 1
    _print_summary(warehouse, report)
    print(
        f"\nRuns {', '.join(report.run_ids)} are stored in DAGSTER_HOME={home}.\n"
        "Open the UI with `make ui` (dagster dev with the same DAGSTER_HOME), then http://127.0.0.1:3000"
    )
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    from oe_assets.defs.runner import ensure_dagster_home, run_whole_graph

    try:
        start = date.fromisoformat(args.start)
        end = date.fromisoformat(args.end) if args.end else start
        if end < start:
            raise ValueError(f"--end {end} is before --start {start}")
        ensure_dagster_home()
        from oe_assets.definitions import build_definitions

        report = run_whole_graph(build_definitions(), start, end)
    except Exception as error:  # one line, never a traceback, for a command-line user
        print(f"oe-assets materialize failed: {error}", file=sys.stderr)
        return 1
    if not report.success:
        print(f"oe-assets materialize failed: {report.failure}", file=sys.stderr)
        return 1
    failed = [c for c in report.checks if not c.passed]
    print(
        f"Materialized {start} .. {end}: {report.materialized} assets, {len(report.checks)} checks, {len(failed)} failed"
    )
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from oe_assets.simulator.cli import run_simulator_cli

    return run_simulator_cli(args.rest)


def cmd_schema(args: argparse.Namespace) -> int:
    import duckdb

    from oe_assets.model.schema_file import SCHEMA_FILE, infer_declared_tables, write_schema_file

    conn = duckdb.connect(args.warehouse, read_only=True)
    try:
        families = infer_declared_tables(conn)
    finally:
        conn.close()
    write_schema_file(families, Path(args.out) if args.out else SCHEMA_FILE)
    print(f"Wrote {sum(len(v) for v in families.values())} child tables to {args.out or SCHEMA_FILE}")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from oe_assets.model.data_model import build_data_model
    from oe_assets.model.schema_file import load_declared_tables

    text = json.dumps(build_data_model(load_declared_tables()).to_dict(), indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from oe_assets.defs.runner import PROJECT_ROOT, ensure_dagster_home

    home = ensure_dagster_home()
    print(f"DAGSTER_HOME={home}")
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-p",
        str(args.port),
    ]
    return subprocess.call(command, cwd=PROJECT_ROOT)  # noqa: S603 - our own interpreter and arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oe-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="start the simulator and materialize the whole graph for the last N days"
    )
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--warehouse", default=settings.DEFAULT_WAREHOUSE)
    demo.add_argument("--dagster-home", default=None, help="default: $DAGSTER_HOME or ./dagster_home")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--contexts-per-day", type=int, default=60)
    demo.set_defaults(func=cmd_demo)

    mat = sub.add_parser("materialize", help="materialize days start..end against the API in OE_* variables")
    mat.add_argument("--start", required=True, help="YYYY-MM-DD")
    mat.add_argument("--end", default=None, help="YYYY-MM-DD (inclusive; default: start)")
    mat.set_defaults(func=cmd_materialize)

    sim = sub.add_parser("simulator", help="serve the OE simulator until interrupted", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_simulator)

    schema = sub.add_parser("schema", help="regenerate oe_assets/schema/tables.json from a warehouse")
    schema.add_argument("action", choices=["infer"])
    schema.add_argument("--warehouse", default=os.environ.get(settings.WAREHOUSE, settings.DEFAULT_WAREHOUSE))
    schema.add_argument("--out", default=None)
    schema.set_defaults(func=cmd_schema)

    model = sub.add_parser("model", help="export the data model (tables, keys, relations) as JSON")
    model.add_argument("action", choices=["export"])
    model.add_argument("--out", default=None)
    model.set_defaults(func=cmd_model)

    ui = sub.add_parser("ui", help="start `dagster dev` with the project's DAGSTER_HOME")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
