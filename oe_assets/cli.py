"""`oe-assets`: run the demo, materialize days, query the warehouse, serve the simulator and the UI."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import shutil
import sys
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from oe_assets.config import settings

if TYPE_CHECKING:
    from oe_assets.celonis_simulator import CelonisSimulatorServer
    from oe_assets.orchestration.runner import GraphRunReport
    from oe_assets.simulator import SimulatorServer

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
DEMO_QUERY = "SELECT status, count(*) AS contexts FROM execution_context GROUP BY status ORDER BY status"
_TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
CELONIS_POOL_FILE = "celonis_pool.duckdb"  # the demo's stand-in pool, beside the warehouse
ENV_FILE = ".env"  # where `dagster dev` (`make ui`) looks, in the folder it runs in


class RunFailed(Exception):
    """A run of the graph failed: its one sentence, and Dagster's whole error for ``--debug``."""

    def __init__(self, sentence: str, details: str | None) -> None:
        super().__init__(sentence)
        self.details = details


def _today() -> date:
    return datetime.now(UTC).date()


def _default_warehouse() -> str:
    """$OE_WAREHOUSE as given (checked by :func:`_warehouse_option`, which argparse applies to it)."""
    return os.environ.get(settings.WAREHOUSE) or settings.DEFAULT_WAREHOUSE


def _warehouse_option(command: str) -> Callable[[str], str]:
    """The ``--warehouse`` values ``command`` takes: a DuckDB file path; a URL is refused in one sentence."""

    def duckdb_file(text: str) -> str:
        name = settings.WAREHOUSE if text == os.environ.get(settings.WAREHOUSE) else "--warehouse"
        try:
            return str(settings.duckdb_warehouse(text, name, command=command))
        except settings.SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return duckdb_file


def _print_rows(rows: Mapping[str, int]) -> None:
    """`name  N rows`, the counts in one column however long the names."""
    width = max((len(name) for name in rows), default=0)
    for name, count in rows.items():
        print(f"  {name:<{width}}  {count:>9} rows")


# ------------------------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from oe_assets.orchestration.dagster_dev import check_port_free
    from oe_assets.orchestration.runner import ensure_dagster_home, run_whole_graph
    from oe_assets.simulator import SimulatorServer

    if args.days < 1:
        raise ValueError(f"--days {args.days}: the demo needs at least one day")
    if args.live:
        check_port_free(args.ui_port)
    home = ensure_dagster_home(Path(args.dagster_home) if args.dagster_home else None)
    warehouse = Path(args.warehouse).resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    # The simulated world ends at the start of today (UTC): the same command gives the same data
    # all day, and the demo's partitions are whole days (today's starts empty).
    today = _today()
    first = today - timedelta(days=args.days)
    server = SimulatorServer(
        seed=args.seed,
        days=args.days,
        contexts_per_day=args.contexts_per_day,
        now=datetime.combine(today, time(0), tzinfo=UTC),
        port=args.port if args.live else 0,
        clock_rate=args.clock_rate if args.live else 0.0,
    ).start()
    celonis = None if args.no_celonis else _start_celonis(warehouse.parent / CELONIS_POOL_FILE)
    try:
        config = settings.Settings(
            api=settings.ApiSettings(api_url=server.url),
            warehouse=warehouse,
            start_date=first,
            celonis=_demo_destination(celonis),
        )
        credentials = _demo_credentials(server, celonis)
        os.environ.update(credentials)
        from oe_assets.definitions import build_definitions

        print(
            f"OE simulator at {server.url}: {args.days} whole days of process contexts "
            f"(created {first} 00:00 .. {today} 00:00 UTC, seed {args.seed}, {args.contexts_per_day} a day)\n"
            + (f"Celonis stand-in at {celonis.url}, its data pool in {celonis.pool_db}\n" if celonis else "")
            + f"Materializing the partitions {first} .. {today} into {warehouse}"
        )
        report = run_whole_graph(build_definitions(config=config), first, today)
        if not report.success:
            raise RunFailed(report.failure or "the run failed", report.failure_details)
        _print_summary(warehouse, report, celonis.pool_counts() if celonis else None)
        recorded = _record_start_date(first)
        if args.live:
            print(f"\n{recorded}")
            return _serve_live(server.url, args, config, credentials, home)
    finally:
        server.stop()
        if celonis is not None:
            celonis.stop()
    _print_next_steps(args, first, today, report.run_ids, home, recorded)
    return 0


def _demo_credentials(server: SimulatorServer, celonis: CelonisSimulatorServer | None) -> dict[str, str]:
    """The resources take the credentials with Dagster's EnvVar, which reads this process's
    environment: the runs' storage then holds the variables' names, never the values."""
    credentials = {settings.CLIENT_ID: server.client_id, settings.CLIENT_SECRET: server.client_secret}
    if celonis is not None:
        credentials[settings.CELONIS_CLIENT_ID] = celonis.client_id
        credentials[settings.CELONIS_CLIENT_SECRET] = celonis.client_secret
    return credentials


def _start_celonis(pool_db: Path) -> CelonisSimulatorServer:
    """The Celonis stand-in for the demo, with an empty pool (as the OE simulator starts afresh)."""
    from oe_assets.celonis_simulator import CelonisSimulatorServer

    for leftover in pool_db.parent.glob(pool_db.name + "*"):
        if leftover.is_file():
            leftover.unlink()
    return CelonisSimulatorServer(pool_db=pool_db).start()


def _demo_destination(celonis: CelonisSimulatorServer | None) -> settings.CelonisSettings:
    if celonis is None:
        return settings.CelonisSettings()
    return settings.CelonisSettings(url=celonis.url, pool_id=celonis.pool_id, auth="oauth")


def _print_summary(warehouse: Path, report: GraphRunReport, pool: Mapping[str, int] | None) -> None:
    from oe_assets.warehouse.reading import reading
    from oe_assets.warehouse.sql import quote_ident

    with reading(warehouse) as conn:
        tables = [str(row[0]) for row in conn.execute(_TABLES).fetchall()]
        rows = {
            name: int(conn.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchall()[0][0])
            for name in tables
        }
    if pool is None:
        print(f"\nWarehouse {warehouse}:")
        _print_rows(rows)
    else:
        print(f"\nWarehouse {warehouse} and the Celonis data pool (rows):")
        _print_rows_beside_pool(rows, pool)
    failed = [c for c in report.checks if not c.passed]
    guarded = len({c.asset for c in report.checks})
    print(f"\nChecks: {len(report.checks) - len(failed)} passed, {len(failed)} failed, on {guarded} tables")
    for check in failed:
        print(f"  FAIL ({check.severity}, {check.offending_rows} rows)  {check.asset} :: {check.name}")


def _print_rows_beside_pool(rows: Mapping[str, int], pool: Mapping[str, int]) -> None:
    """`name  warehouse  pool`; a table that is not delivered shows `-` in the pool's column."""
    width = max((len(name) for name in rows), default=0)
    print(f"  {'table':<{width}}  {'warehouse':>9}  {'pool':>9}")
    for name, count in rows.items():
        in_pool = str(pool[name]) if name in pool else "-"
        print(f"  {name:<{width}}  {count:>9}  {in_pool:>9}")


def _record_start_date(first: date) -> str:
    """`make ui` (`dagster dev`) reads `.env` from the folder it runs in: with the demo's first day
    as OE_START_DATE there, the UI's partitions are the demo's days, all materialized."""
    from oe_assets.orchestration.dagster_dev import record_in_env_file

    record_in_env_file(
        Path.cwd() / ENV_FILE,
        {settings.START_DATE: first.isoformat()},
        "the first day of `oe-assets demo`, so that `make ui` shows the demo's days as the partitions",
    )
    return f"{settings.START_DATE}={first} is recorded in {ENV_FILE}, which `make ui` reads: its partitions are the demo's days."


def _print_next_steps(
    args: argparse.Namespace, first: date, today: date, run_ids: list[str], home: Path, recorded: str
) -> None:
    warehouse = "" if args.warehouse == settings.DEFAULT_WAREHOUSE else f" --warehouse {args.warehouse}"
    print(
        f"\nLoaded {args.days} whole days of process contexts (created {first} 00:00 .. {today} 00:00 UTC) "
        f"into the partitions {first} .. {today}.\n"
        f"Runs {', '.join(run_ids)} are stored in DAGSTER_HOME={home}.\n"
        f"{recorded}\n"
        "Open the UI with `make ui` (dagster dev with the same DAGSTER_HOME), then http://127.0.0.1:3000\n"
        f'Query the warehouse: {_own_command()} sql{warehouse} "{DEMO_QUERY}"'
    )
    if not args.no_celonis:
        pool = Path(args.warehouse).parent / CELONIS_POOL_FILE
        print(f'What Celonis would hold: {_own_command()} sql --warehouse {pool} "{DEMO_QUERY}"')


def _own_command() -> str:
    """How to run `oe-assets` again from here: `.venv/bin/oe-assets` after `make demo`."""
    script = Path(sys.executable).parent / "oe-assets"
    if not script.exists():
        return "oe-assets"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _serve_live(
    simulator_url: str,
    args: argparse.Namespace,
    config: settings.Settings,
    credentials: Mapping[str, str],
    home: Path,
) -> int:
    """Keep the simulator's clock moving and run `dagster dev` with the sensor on, until stopped."""
    from oe_assets.orchestration.dagster_dev import run_dagster_dev

    sensor = settings.SensorSettings(interval_seconds=args.sensor_interval, running=True)
    live = dataclasses.replace(config, sensor=sensor).to_env()
    env = {**os.environ, **live, **credentials, "DAGSTER_HOME": str(home)}
    print(
        f"\nLive: the simulator at {simulator_url} runs {args.clock_rate:g}x faster than real time; "
        f"finished_runs_sensor polls every {args.sensor_interval} s.\n"
        f"Open http://127.0.0.1:{args.ui_port} (Automation -> finished_runs_sensor, Runs). Ctrl-C stops both.",
        flush=True,
    )
    # DAGSTER_HOME as the working folder: a `.env` of the project (whose values would win) cannot
    # point the live demo at another API or warehouse.
    return run_dagster_dev(args.ui_port, cwd=home, env=env)


# ------------------------------------------------------------------------------ materialize, prune


def _day_option(option: str, text: str) -> date:
    """A YYYY-MM-DD option's date (Python alone would also take 20250301 and week dates)."""
    try:
        if not _ISO_DAY.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date: use YYYY-MM-DD") from None


def _check_partitions(first: date, days: list[tuple[str, date]]) -> None:
    """Each day must be a partition: from OE_START_DATE (``first``) to today (UTC)."""
    today = _today()
    for option, day in days:
        if day < first:
            raise ValueError(
                f"{option} {day} is before {settings.START_DATE}={first}, the first partition; "
                f"set {settings.START_DATE} earlier to land it"
            )
        if day > today:
            raise ValueError(f"{option} {day} is after today ({today}, UTC): it is not a partition yet")


def _require_credentials() -> None:
    """Dagster's EnvVar reads the credentials when the run starts; say what is missing before."""
    missing = [name for name in (settings.CLIENT_ID, settings.CLIENT_SECRET) if not os.environ.get(name)]
    if missing:
        names = " and ".join(missing)
        raise ValueError(
            f"{names} {'is' if len(missing) == 1 else 'are'} not set: export the OE API's client credentials "
            "(for the simulator, `make simulator` prints them; see the README, section Configuration)"
        )


def cmd_materialize(args: argparse.Namespace) -> int:
    from oe_assets.orchestration.runner import ensure_dagster_home, run_whole_graph

    start = _day_option("--start", args.start)
    end = _day_option("--end", args.end) if args.end else start
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    config = settings.Settings.from_env()
    _check_partitions(config.start_date, [("--start", start), ("--end", end)])
    _require_credentials()
    ensure_dagster_home()
    from oe_assets.definitions import build_definitions

    report = run_whole_graph(build_definitions(config=config), start, end)
    if not report.success:
        raise RunFailed(report.failure or "the run failed", report.failure_details)
    failed = [c for c in report.checks if not c.passed]
    print(
        f"Materialized {start} .. {end}: {report.materialized} assets, {len(report.checks)} checks, {len(failed)} failed"
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from oe_assets.landing.retention import prune_deleted
    from oe_assets.warehouse import open_warehouse

    before = _day_option("--before", args.before) if args.before else None
    warehouse = Path(args.warehouse)
    if not warehouse.exists():
        raise ValueError(f"--warehouse {warehouse} does not exist")
    with open_warehouse(warehouse) as conn:
        report = prune_deleted(conn, before=before, dry_run=args.dry_run)
    which = "contexts marked deleted" + (f" before {before}" if before else "")
    verb = "Dry run: would remove" if report.dry_run else "Removed"
    print(f"{verb} {report.contexts} {which} from {warehouse}:")
    _print_rows(report.rows_per_table)
    return 0


# ----------------------------------------------------------------------------------- sql, schema


def cmd_sql(args: argparse.Namespace) -> int:
    from oe_assets.warehouse.locking import WarehouseBusyError
    from oe_assets.warehouse.reading import reading

    def announce() -> None:
        print(f"Waiting for the run that writes {args.warehouse} ...", file=sys.stderr, flush=True)

    try:
        with reading(Path(args.warehouse), wait_seconds=args.wait, on_wait=announce) as conn:
            if args.csv:
                _write_csv(conn.execute(args.query))
            else:
                relation = conn.sql(args.query)
                if relation is not None:
                    width = shutil.get_terminal_size().columns
                    relation.show(max_width=width, max_rows=args.max_rows, null_value="NULL")
    except WarehouseBusyError as busy:
        raise WarehouseBusyError(f"{busy}; try again when it has written, or wait longer (--wait)") from None
    return 0


def _write_csv(cursor: object) -> None:
    """Every row of the result, with a header line, as CSV on stdout."""
    description = getattr(cursor, "description", None)
    if not description:
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([column[0] for column in description])
    while batch := cursor.fetchmany(10_000):  # type: ignore[attr-defined]
        writer.writerows(batch)


def cmd_warehouse_copy(args: argparse.Namespace) -> int:
    from oe_assets.warehouse.postgres.copy import copy_warehouse
    from oe_assets.warehouse.reading import reading

    with reading(Path(args.warehouse), wait_seconds=args.wait) as conn:
        report = copy_warehouse(conn, args.to, schema=args.schema)
    rows = sum(report.rows.values())
    print(
        f"Copied {len(report.rows)} tables ({rows:,} rows) from {args.warehouse} into schema "
        f"{report.schema} of {report.target} in {report.seconds:.1f} s"
    )
    for name, physical in sorted(report.physical_names.items()):
        print(f"  {name} is {physical} there (PostgreSQL names have at most 63 bytes)")
    for name in report.dropped:
        print(f"  dropped {name}: the warehouse no longer has it")
    return 0


def _postgres_option(option: str) -> Callable[[str], object]:
    """The converter of ``option``'s value: a postgresql:// URL, refused in one sentence that names
    ``option`` and not the password."""

    def parse(text: str) -> object:
        from oe_assets.warehouse.postgres.url import PostgresUrlError, parse_postgres_url

        try:
            return parse_postgres_url(text, option)
        except PostgresUrlError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def cmd_schema(args: argparse.Namespace) -> int:
    from oe_assets.model.declaration import MODEL_FILE
    from oe_assets.model.schema_file import infer_declared_tables, write_schema_file
    from oe_assets.warehouse.reading import reading

    with reading(Path(args.warehouse)) as conn:
        families = infer_declared_tables(conn)
    out = Path(args.out) if args.out else MODEL_FILE
    write_schema_file(families, out)
    print(f"Wrote {sum(len(v) for v in families.values())} child tables to {out}")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from oe_assets.model.data_model import build_data_model
    from oe_assets.model.declaration import MODEL

    text = json.dumps(build_data_model(MODEL).to_dict(), indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


# ------------------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from oe_assets.exports.ocel import export_ocel, ocel_format
    from oe_assets.exports.xes import export_xes
    from oe_assets.warehouse.reading import reading

    out = Path(args.out)
    if args.what == "ocel":
        ocel_format(out)  # a wrong extension is said before the warehouse is opened
    elif out.suffix.lower() != ".xes":
        raise ValueError(f"{out.name}: an XES export is written to a file ending in .xes")
    with reading(Path(args.warehouse)) as conn:
        report = export_ocel(conn, out) if args.what == "ocel" else export_xes(conn, out)
    objects = ", ".join(f"{n} {kind}" for kind, n in sorted(report.objects_per_type.items()))
    print(f"Wrote {report.path} ({report.bytes} bytes): {report.events} events; objects: {objects}")
    for reason, n in sorted(report.dropped.items()):
        print(f"  {reason}: {n}")
    return 0


# ------------------------------------------------------------------------- simulator, ui, bench


def cmd_simulator(args: argparse.Namespace) -> int:
    from oe_assets.simulator.cli import serve

    return serve(args)


def cmd_celonis_simulator(args: argparse.Namespace) -> int:
    from oe_assets.celonis_simulator.cli import serve

    return serve(args)


def cmd_ui(args: argparse.Namespace) -> int:
    from oe_assets.orchestration.dagster_dev import check_port_free, run_dagster_dev
    from oe_assets.orchestration.runner import ensure_dagster_home

    check_port_free(args.port)
    home = ensure_dagster_home()
    print(
        f"DAGSTER_HOME={home}; the UI will be at http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True
    )
    # The working folder is this one: `dagster dev` reads its `.env` (the demo's OE_START_DATE).
    return run_dagster_dev(args.port, cwd=Path.cwd(), env={**os.environ, "DAGSTER_HOME": str(home)})


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
        skip_push=args.skip_push,
        skip_exports=args.skip_exports,
        copy_to=args.copy_to,
        warehouse=args.warehouse,
        incremental_contexts_per_day=args.api_contexts_per_day,
        extraction_contexts_per_day=args.api_contexts_per_day,
        repeat=args.repeat,
    )
    report = run_bench(config, echo=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_report(report))
    print(f"\nWrote {config.out}")
    return 0


# ---------------------------------------------------------------------------------------- parser

_Commands = argparse._SubParsersAction  # the `oe-assets` parser's commands


def _add_demo(sub: _Commands) -> None:
    demo = sub.add_parser(
        "demo", help="start the simulator and materialize the whole graph for the last N whole days"
    )
    demo.add_argument("--days", type=int, default=7, help="whole days before today (default: 7)")
    demo.add_argument("--warehouse", type=_warehouse_option(demo.prog), default=settings.DEFAULT_WAREHOUSE)
    demo.add_argument("--dagster-home", default=None, help="default: $DAGSTER_HOME or ./dagster_home")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--contexts-per-day", type=int, default=60)
    demo.add_argument(
        "--live", action="store_true", help="then keep the simulator's clock moving and run dagster dev"
    )
    demo.add_argument(
        "--no-celonis", action="store_true", help="do not start the Celonis stand-in nor push to it"
    )
    demo.add_argument("--port", type=int, default=8765, help="simulator port with --live")
    demo.add_argument("--ui-port", type=int, default=3000, help="dagster dev port with --live")
    demo.add_argument(
        "--clock-rate", type=float, default=120.0, help="simulated seconds per real second (--live)"
    )
    demo.add_argument("--sensor-interval", type=int, default=30, help="sensor interval in seconds (--live)")
    demo.set_defaults(func=cmd_demo)


def _add_materialize_and_prune(sub: _Commands) -> None:
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
    _add_warehouse_option(prune)
    prune.set_defaults(func=cmd_prune)


def _add_warehouse_option(parser: argparse.ArgumentParser, *, waiting: bool = False) -> None:
    """``--warehouse`` of a command that reads it, and ``--wait`` if it waits for a run that writes."""
    parser.add_argument(
        "--warehouse",
        type=_warehouse_option(parser.prog),
        default=_default_warehouse(),
        help="default: $OE_WAREHOUSE or data/...",
    )
    if waiting:
        parser.add_argument(
            "--wait",
            type=float,
            default=120.0,
            help="seconds to wait for a run writing the warehouse (default: 120)",
        )


def _add_sql(sub: _Commands) -> None:
    sql = sub.add_parser(
        "sql",
        help="run a read-only SQL query on the warehouse and print the result",
        description="Run a read-only SQL query (DuckDB's dialect) on the warehouse. While a run writes "
        "the warehouse, the query waits for it (DuckDB lets no other process in meanwhile).",
    )
    sql.add_argument("query", help='e.g. "SELECT status, count(*) FROM execution_context GROUP BY status"')
    sql.add_argument("--csv", action="store_true", help="print every row as CSV (with a header line)")
    _add_warehouse_option(sql, waiting=True)
    sql.add_argument("--max-rows", type=int, default=40, help="rows shown in the table (default: 40)")
    sql.set_defaults(func=cmd_sql)


def _add_export(sub: _Commands) -> None:
    export = sub.add_parser(
        "export",
        help="write the warehouse as OCEL 2.0 (.jsonocel/.json, .sqlite, .xmlocel/.xml) or XES (.xes)",
        description="Export for process-mining tools: `ocel` writes the object-centric log (process "
        "contexts, digital processes, accounts, quotes, orders, shipments, …) as OCEL 2.0 in the format "
        "the extension names; `xes` writes the activity log, one trace per process context.",
    )
    export.add_argument("what", choices=["ocel", "xes"])
    export.add_argument("--out", required=True, help="the file to write; its extension picks the format")
    _add_warehouse_option(export)
    export.set_defaults(func=cmd_export)


def _add_warehouse(sub: _Commands) -> None:
    warehouse = sub.add_parser("warehouse", help="copy the whole warehouse into PostgreSQL")
    actions = warehouse.add_subparsers(dest="action", required=True, metavar="ACTION")
    copy = actions.add_parser(
        "copy",
        help="copy every table into a PostgreSQL schema, in one transaction",
        description="Copy every table of the warehouse into a PostgreSQL schema with COPY, in one "
        "transaction: a re-run replaces the previous copy. The password goes in the URL or in "
        "PGPASSWORD; it is never printed.",
    )
    copy.add_argument(
        "--to",
        required=True,
        type=_postgres_option("--to"),
        help="postgresql://user[:password]@host[:port]/database",
    )
    copy.add_argument("--schema", default="public", help="the schema to copy into (default: public)")
    _add_warehouse_option(copy, waiting=True)
    copy.set_defaults(func=cmd_warehouse_copy)


def _add_simulators_and_ui(sub: _Commands) -> None:
    from oe_assets.celonis_simulator import cli as celonis_cli
    from oe_assets.simulator import cli as oe_cli

    for name, what, module, func in (
        ("simulator", "the OE simulator", oe_cli, cmd_simulator),
        ("celonis-simulator", "the Celonis stand-in", celonis_cli, cmd_celonis_simulator),
    ):
        sim = sub.add_parser(name, help=f"serve {what} until interrupted", description=module.DESCRIPTION)
        module.add_arguments(sim)
        sim.set_defaults(func=func)

    ui = sub.add_parser("ui", help="start `dagster dev` with the project's DAGSTER_HOME")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)


def _add_schema_and_model(sub: _Commands) -> None:
    schema = sub.add_parser(
        "schema", help="regenerate the child tables of the data-model file (oe_assets/model/model.json)"
    )
    schema.add_argument("action", choices=["infer"])
    _add_warehouse_option(schema)
    schema.add_argument("--out", default=None)
    schema.set_defaults(func=cmd_schema)

    model = sub.add_parser("model", help="export the data model (tables, keys, relations) as JSON")
    model.add_argument("action", choices=["export"])
    model.add_argument("--out", default=None)
    model.set_defaults(func=cmd_model)


def _add_bench(sub: _Commands) -> None:
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
    bench.add_argument(
        "--skip-push",
        action="store_true",
        help="skip pushing the comparison size's warehouse into the Celonis stand-in",
    )
    bench.add_argument(
        "--skip-exports",
        action="store_true",
        help="do not time the OCEL 2.0 and XES exports of the comparison size",
    )
    _add_bench_postgres(bench)
    bench.set_defaults(func=cmd_bench)


def _add_bench_postgres(bench: argparse.ArgumentParser) -> None:
    """The bench's PostgreSQL measurements (each needs a server, so each is asked for)."""
    bench.add_argument(
        "--copy-to",
        type=_postgres_option("--copy-to"),
        default=None,
        metavar="URL",
        help="also time `oe-assets warehouse copy` of the comparison size into this PostgreSQL database",
    )
    bench.add_argument(
        "--warehouse",
        type=_postgres_option("--warehouse"),
        default=None,
        metavar="URL",
        help="also load the comparison size into a PostgreSQL warehouse in this database (schema "
        "oe_bench_load): one run, then daily runs 1, 2 and 4 at a time",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oe-assets", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the traceback (or the run's whole error)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_demo,
        _add_materialize_and_prune,
        _add_sql,
        _add_export,
        _add_warehouse,
        _add_simulators_and_ui,
        _add_schema_and_model,
        _add_bench,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; an error is one sentence on stderr (its traceback with ``--debug``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"oe-assets {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            details = getattr(error, "details", None)
            print(details or traceback.format_exc(), file=sys.stderr)
        print(f"oe-assets {args.command} failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
