"""`oe-assets`: run the demo, materialize days, serve the simulator, manage the schema file."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from oe_assets.config import settings

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _today() -> date:
    return datetime.now(UTC).date()


def _print_summary(warehouse: Path, report: object) -> None:
    import duckdb

    from oe_assets.orchestration.runner import GraphRunReport

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
    guarded = len({c.asset for c in report.checks})
    print(f"\nChecks: {len(report.checks) - len(failed)} passed, {len(failed)} failed, on {guarded} tables")
    for check in failed:
        print(f"  FAIL ({check.severity}, {check.offending_rows} rows)  {check.asset} :: {check.name}")


def cmd_demo(args: argparse.Namespace) -> int:
    from oe_assets.orchestration.runner import ensure_dagster_home, run_whole_graph
    from oe_assets.simulator import SimulatorServer

    home = ensure_dagster_home(Path(args.dagster_home) if args.dagster_home else None)
    warehouse = Path(args.warehouse).resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    server = SimulatorServer(
        seed=args.seed,
        days=args.days,
        contexts_per_day=args.contexts_per_day,
        port=args.port if args.live else 0,
        clock_rate=args.clock_rate if args.live else 0.0,
    ).start()
    try:
        start = _today() - timedelta(days=args.days)
        config = settings.Settings(
            api=settings.ApiSettings(api_url=server.url),
            warehouse=warehouse,
            start_date=settings.Settings.from_env().start_date
            if settings.START_DATE in os.environ
            else start,
        )
        # The resources take the credentials with Dagster's EnvVar, which reads this process's
        # environment: the runs' storage then holds the variables' names, never the values.
        credentials = {settings.CLIENT_ID: server.client_id, settings.CLIENT_SECRET: server.client_secret}
        os.environ.update(credentials)
        from oe_assets.definitions import build_definitions

        print(f"OE simulator at {server.url}; materializing {start} .. {_today()} into {warehouse}")
        report = run_whole_graph(build_definitions(config=config), start, _today())
        if report.success:
            _print_summary(warehouse, report)
        if report.success and args.live:
            return _serve_live(server.url, args, {**config.to_env(), **credentials})
    finally:
        server.stop()
    if not report.success:
        print(f"oe-assets demo failed: {report.failure}", file=sys.stderr)
        return 1
    print(
        f"\nRuns {', '.join(report.run_ids)} are stored in DAGSTER_HOME={home}.\n"
        "Open the UI with `make ui` (dagster dev with the same DAGSTER_HOME), then http://127.0.0.1:3000"
    )
    return 0


def _dagster_dev_command(port: int) -> list[str]:
    from oe_assets.orchestration.runner import PROJECT_ROOT

    return [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-p",
        str(port),
    ]


def _serve_live(simulator_url: str, args: argparse.Namespace, demo_env: dict[str, str]) -> int:
    """Keep the simulator's clock moving and run `dagster dev` with the sensor on, until Ctrl-C."""
    import signal

    from oe_assets.orchestration.runner import PROJECT_ROOT

    sensor = {settings.SENSOR_RUNNING: "1", settings.SENSOR_INTERVAL: str(args.sensor_interval)}
    env = {**os.environ, **demo_env, **sensor}
    command = _dagster_dev_command(args.ui_port)
    print(
        f"\nLive: the simulator at {simulator_url} runs {args.clock_rate:g}x faster than real time; "
        f"finished_runs_sensor polls every {args.sensor_interval} s.\n"
        f"Open http://127.0.0.1:{args.ui_port} (Automation -> finished_runs_sensor, Runs). Ctrl-C stops both."
    )
    ui = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)  # noqa: S603 - our interpreter, our arguments
    signal.signal(signal.SIGTERM, lambda *_: ui.send_signal(signal.SIGINT))
    try:
        return ui.wait()
    except KeyboardInterrupt:
        ui.send_signal(signal.SIGINT)  # SIGINT lets dagster dev stop its children cleanly
        return ui.wait(timeout=60)


def _day_option(option: str, text: str) -> date:
    """A YYYY-MM-DD option's date (Python alone would also take 20250301 and week dates)."""
    try:
        if not _ISO_DAY.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date: use YYYY-MM-DD") from None


def _check_partitions(days: list[tuple[str, date]]) -> None:
    """Each day must be a partition: from OE_START_DATE to today (UTC)."""
    first, today = settings.Settings.from_env().start_date, _today()
    for option, day in days:
        if day < first:
            raise ValueError(
                f"{option} {day} is before {settings.START_DATE}={first}, the first partition; "
                f"set {settings.START_DATE} earlier to land it"
            )
        if day > today:
            raise ValueError(f"{option} {day} is after today ({today}, UTC): it is not a partition yet")


def cmd_materialize(args: argparse.Namespace) -> int:
    from oe_assets.orchestration.runner import ensure_dagster_home, run_whole_graph

    try:
        start = _day_option("--start", args.start)
        end = _day_option("--end", args.end) if args.end else start
        if end < start:
            raise ValueError(f"--end {end} is before --start {start}")
        _check_partitions([("--start", start), ("--end", end)])
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


def cmd_prune(args: argparse.Namespace) -> int:
    from oe_assets.landing.retention import prune_deleted
    from oe_assets.warehouse.connection import connect
    from oe_assets.warehouse.locking import exclusive_file_lock, lock_path_for

    try:
        before = _day_option("--before", args.before) if args.before else None
        warehouse = Path(args.warehouse)
        if not warehouse.exists():
            raise ValueError(f"--warehouse {warehouse} does not exist")
        with exclusive_file_lock(lock_path_for(warehouse)):
            conn = connect(warehouse)
            try:
                report = prune_deleted(conn, before=before, dry_run=args.dry_run)
            finally:
                conn.close()
    except Exception as error:  # one line, never a traceback, for a command-line user
        print(f"oe-assets prune failed: {error}", file=sys.stderr)
        return 1
    which = "contexts marked deleted" + (f" before {before}" if before else "")
    verb = "Dry run: would remove" if report.dry_run else "Removed"
    print(f"{verb} {report.contexts} {which} from {warehouse}:")
    for table, rows in report.rows_per_table.items():
        print(f"  {table:<70} {rows:>9} rows")
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
    from oe_assets.orchestration.runner import PROJECT_ROOT, ensure_dagster_home

    home = ensure_dagster_home()
    print(f"DAGSTER_HOME={home}")
    command = _dagster_dev_command(args.port)
    return subprocess.call(command, cwd=PROJECT_ROOT)  # noqa: S603 - our own interpreter and arguments


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 10000,100000, got {text!r}"
        ) from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def cmd_bench(args: argparse.Namespace) -> int:
    from oe_assets.bench.runner import BenchConfig, format_report, run_bench

    config = BenchConfig(
        contexts=args.contexts,
        scale=args.scale,
        skip_dlt=args.skip_dlt,
        dlt_max_contexts=args.dlt_max_contexts,
        out=Path(args.out),
        work_dir=Path(args.work_dir),
        keep_files=args.keep_files,
        seed=args.seed,
        days=args.days,
        incremental=not args.skip_incremental,
        extraction=not args.skip_extraction,
        probe=not args.skip_probe,
        writer_alone=not args.skip_writer_alone,
        incremental_contexts_per_day=args.api_contexts_per_day,
        extraction_contexts_per_day=args.api_contexts_per_day,
        repeat=args.repeat,
    )
    try:
        report = run_bench(config, echo=lambda line: print(line, file=sys.stderr, flush=True))
    except Exception as error:  # one paragraph, never a traceback, for a command-line user
        print(f"oe-assets bench failed: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"\nWrote {config.out}")
    return 0


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
    demo.add_argument(
        "--live", action="store_true", help="then keep the simulator's clock moving and run dagster dev"
    )
    demo.add_argument("--port", type=int, default=8765, help="simulator port with --live")
    demo.add_argument("--ui-port", type=int, default=3000, help="dagster dev port with --live")
    demo.add_argument(
        "--clock-rate", type=float, default=120.0, help="simulated seconds per real second (--live)"
    )
    demo.add_argument("--sensor-interval", type=int, default=30, help="sensor interval in seconds (--live)")
    demo.set_defaults(func=cmd_demo)

    mat = sub.add_parser("materialize", help="materialize days start..end against the API in OE_* variables")
    mat.add_argument("--start", required=True, help="YYYY-MM-DD")
    mat.add_argument("--end", default=None, help="YYYY-MM-DD (inclusive; default: start)")
    mat.set_defaults(func=cmd_materialize)

    prune = sub.add_parser(
        "prune", help="remove contexts the API no longer returns (kept, marked deleted) from every table"
    )
    prune.add_argument(
        "--deleted", action="store_true", required=True, help="the contexts marked deleted (deleted_at)"
    )
    prune.add_argument("--before", default=None, help="YYYY-MM-DD: only those marked before this day")
    prune.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    prune.add_argument("--warehouse", default=os.environ.get(settings.WAREHOUSE, settings.DEFAULT_WAREHOUSE))
    prune.set_defaults(func=cmd_prune)

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

    bench = sub.add_parser(
        "bench", help="benchmark our flatten + load against dlt, side by side (see README, Benchmarks)"
    )
    bench.add_argument("--contexts", type=int, default=100_000, help="size of the ours-vs-dlt comparison")
    bench.add_argument(
        "--scale",
        type=_sizes,
        default=[10_000, 100_000, 1_000_000],
        help="comma-separated sizes also loaded with ours (default 10000,100000,1000000; '' for none)",
    )
    bench.add_argument("--skip-dlt", action="store_true", help="load with ours only")
    bench.add_argument(
        "--dlt-max-contexts", type=int, default=100_000, help="largest size also loaded with dlt"
    )
    bench.add_argument("--out", default="bench_results/latest.json", help="where the JSON report goes")
    bench.add_argument("--work-dir", default="bench_results/work", help="JSONL files and warehouses")
    bench.add_argument("--keep-files", action="store_true", help="keep the JSONL files and warehouses")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--days", type=int, default=30, help="creation days the generated contexts span")
    bench.add_argument("--repeat", type=int, default=5, help="repeats of the incremental/extraction timings")
    bench.add_argument(
        "--api-contexts-per-day", type=int, default=1000, help="simulator size for incremental/extraction"
    )
    bench.add_argument("--skip-incremental", action="store_true")
    bench.add_argument("--skip-extraction", action="store_true")
    bench.add_argument(
        "--skip-probe",
        action="store_true",
        help="skip the DuckDB-only probe (read_json + unnest) of the comparison size",
    )
    bench.add_argument(
        "--skip-writer-alone",
        action="store_true",
        help="skip timing our writer alone (batches flattened beforehand) on the comparison size",
    )
    bench.set_defaults(func=cmd_bench)

    ui = sub.add_parser("ui", help="start `dagster dev` with the project's DAGSTER_HOME")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
