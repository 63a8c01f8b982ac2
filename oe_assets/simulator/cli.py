"""``oe-assets simulator``: run the OE simulator in the foreground until Ctrl+C / SIGTERM."""

from __future__ import annotations

import argparse
import sys

import orjson

from oe_assets.core.loopback_http import serve_until_signal
from oe_assets.simulator.faults import FaultSwitches
from oe_assets.simulator.server import SimulatorServer

DESCRIPTION = "Serve a simulated Emporix Orchestration Engine API (process contexts) on loopback."


def _fault_switches(text: str) -> FaultSwitches:
    """``--faults``' JSON object as switches; argparse turns the error into a usage message."""
    try:
        return FaultSwitches.from_dict(orjson.loads(text))
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options, on its own parser or on ``oe-assets simulator``'s."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 = any free port)")
    parser.add_argument("--seed", type=int, default=42, help="data seed (default: 42)")
    parser.add_argument("--days", type=int, default=14, help="days of history to generate (default: 14)")
    parser.add_argument(
        "--contexts-per-day", type=int, default=60, help="process contexts created per day (default: 60)"
    )
    parser.add_argument(
        "--clock-rate",
        type=float,
        default=0.0,
        help="simulated seconds per real second; 0 keeps the clock still (default: 0)",
    )
    parser.add_argument("--client-id", default="oe-demo-client", help="client id the simulator accepts")
    parser.add_argument(
        "--client-secret", default="oe-demo-secret", help="client secret the simulator accepts"
    )
    parser.add_argument(
        "--faults",
        type=_fault_switches,
        default=None,
        help='fault switches as JSON, e.g. \'{"rate_429": 0.05, "rate_5xx": 0.02}\'',
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oe-assets simulator", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def run_simulator_cli(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv``) and serve."""
    return serve(build_parser().parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Start the simulator, print how to point the pipeline at it, serve until interrupted."""
    server = SimulatorServer(
        seed=args.seed,
        days=args.days,
        contexts_per_day=args.contexts_per_day,
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        clock_rate=args.clock_rate,
        faults=args.faults,
        verbose=args.verbose,
    )
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return serve_until_signal(server.stop, lambda: _print_banner(server, args), "OE simulator")


def _print_banner(server: SimulatorServer, args: argparse.Namespace) -> None:
    state = server.world.state()
    # these are the simulator's own demo credentials, so printing them is fine
    print(
        f"OE simulator at {server.url}  (seed {args.seed}, {state['contexts']} process contexts over "
        f"{args.days} days, now {state['now']}, clock rate {args.clock_rate:g})\n"
        "Point the pipeline at it:\n"
        f"  export OE_API_URL={server.url}\n"
        f"  export OE_AUTH_URL={server.url}\n"
        f"  export OE_CLIENT_ID={server.client_id}\n"
        f"  export OE_CLIENT_SECRET={server.client_secret}\n"
        f'Admin: GET {server.url}/_admin/state, POST {server.url}/_admin/advance {{"seconds": 3600}}\n'
        "Press Ctrl+C to stop.",
        flush=True,
    )
