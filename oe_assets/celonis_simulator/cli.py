"""``oe-assets celonis-simulator``: run the Celonis stand-in in the foreground until Ctrl+C / SIGTERM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from oe_assets.celonis_simulator.faults import CelonisFaults
from oe_assets.celonis_simulator.schema import ApplyError
from oe_assets.celonis_simulator.server import CelonisSimulatorServer
from oe_assets.core.loopback_http import serve_until_signal

DESCRIPTION = (
    "Serve a Celonis stand-in (OAuth token, Data Push API, pools and data models) on loopback; "
    "the pool's tables go to a DuckDB file you can open with `duckdb` while the server idles."
)


def _faults(text: str) -> CelonisFaults:
    """``--faults``' JSON object as switches; argparse turns the error into a usage message."""
    faults = CelonisFaults()
    try:
        changes = orjson.loads(text)
        if not isinstance(changes, dict):
            raise ValueError("--faults takes a JSON object")
        faults.update(changes)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return faults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The stand-in's options, on its own parser or on ``oe-assets celonis-simulator``'s."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8766, help="port (default: 8766; 0 = any free port)")
    parser.add_argument(
        "--pool-db", default=".oe_celonis_pool.duckdb", help="DuckDB file of the pool (default: %(default)s)"
    )
    parser.add_argument("--pool-id", default="oe-demo-pool", help="the data pool's id (default: %(default)s)")
    parser.add_argument("--client-id", default="celonis-demo-client", help="OAuth client id it accepts")
    parser.add_argument(
        "--client-secret", default="celonis-demo-secret", help="OAuth client secret it accepts"
    )
    parser.add_argument("--api-key", default="celonis-demo-api-key", help="API key it accepts (Bearer)")
    parser.add_argument(
        "--app-key", default="celonis-demo-app-key", help="application key it accepts (AppKey)"
    )
    parser.add_argument(
        "--jobs-per-hour", type=int, default=250, help="push-job executions per UTC hour (default: 250)"
    )
    parser.add_argument(
        "--job-delay", type=float, default=0.05, help="seconds a job or load stays RUNNING (default: 0.05)"
    )
    parser.add_argument(
        "--faults", type=_faults, default=None, help="fault switches as JSON, e.g. '{\"status_429\": 3}'"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oe-assets celonis-simulator", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def serve(args: argparse.Namespace) -> int:
    """Start the stand-in, print how to point the pipeline at it, serve until interrupted."""
    try:
        server = _server(args).start()
    except (OSError, ApplyError) as exc:  # port taken, or the pool file held by another process
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(
            f"error: cannot serve on {args.host}:{args.port} with {args.pool_db}: {reason}", file=sys.stderr
        )
        return 1
    return serve_until_signal(server.stop, lambda: _print_banner(server), "Celonis simulator")


def _server(args: argparse.Namespace) -> CelonisSimulatorServer:
    return CelonisSimulatorServer(
        pool_db=Path(args.pool_db).resolve(),
        pool_id=args.pool_id,
        client_id=args.client_id,
        client_secret=args.client_secret,
        api_key=args.api_key,
        app_key=args.app_key,
        jobs_per_hour=args.jobs_per_hour,
        job_delay=args.job_delay,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        faults=args.faults,
    )


def _print_banner(server: CelonisSimulatorServer) -> None:
    # these are the stand-in's own demo credentials, so printing them is fine
    print(
        f"Celonis simulator at {server.url}  (pool {server.pool_id} in {server.pool_db}, "
        f"connections: {', '.join(server.connection_ids)})\n"
        "Point the pipeline at it:\n"
        f"  export CELONIS_URL={server.url}\n"
        f"  export CELONIS_POOL_ID={server.pool_id}\n"
        f"  export CELONIS_CLIENT_ID={server.client_id}\n"
        f"  export CELONIS_CLIENT_SECRET={server.client_secret}\n"
        f'Admin: GET {server.url}/_admin/pool, POST {server.url}/_admin/faults {{"status_429": 2}}\n'
        f"Look at the pool after stopping (or while idle): duckdb {server.pool_db}\n"
        "Press Ctrl+C to stop.",
        flush=True,
    )
