"""Command line: ``python -m airflow_provider_cometapi.emulator`` or ``cometapi-emulator``."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING

from airflow_provider_cometapi.emulator.drift import parse_drift
from airflow_provider_cometapi.emulator.faults import FileFaults
from airflow_provider_cometapi.emulator.server import EmulatorServer

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def _fault_for(value: str) -> tuple[str, str]:
    """Split and check one ``--fault-for NAME=SPEC`` (at the first ``=``)."""
    name, sep, spec = value.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"{value!r} must look like NAME=SPEC, e.g. b3.png=status=400"
        )
    try:
        FileFaults({name: spec})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, spec


def _drift(value: str) -> float:
    """Check one ``--drift SHARE``."""
    try:
        return parse_drift(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cometapi-emulator",
        description="Serve a local emulator of CometAPI's /v1/images/edits and /v1/models.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--api-key", help="the one Bearer key accepted (default: any)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each edit")
    parser.add_argument(
        "--fault",
        help="fault for every edit, e.g. 'status=429;retry_after=2', 'reset'; add 'billed' to"
        " do and bill the edit first, then lose its answer, e.g. 'truncate;billed'",
    )
    parser.add_argument(
        "--fault-for",
        action="append",
        type=_fault_for,
        default=[],
        metavar="NAME=SPEC",
        help="fault for edits uploading the image NAME (exact file name, or its name without"
        " extension), e.g. 'b3.png=status=400'; repeatable",
    )
    parser.add_argument("--random-faults", help="random status rates, e.g. '429=0.1,500=0.05'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    parser.add_argument(
        "--honour-idempotency",
        action="store_true",
        help="replay a billed edit's response for a repeated Idempotency-Key, unbilled",
    )
    parser.add_argument(
        "--drift",
        type=_drift,
        default=0.0,
        metavar="SHARE",
        help="share (0 to 1) of the pixels a mask keeps that each edit changes anyway, as real"
        " models do (default 0); the header x-emulator-drift sets it per request",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM.

    :param argv: command-line arguments; ``None`` reads ``sys.argv``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    file_faults: dict[str, str] = {}
    for name, spec in args.fault_for:
        if name in file_faults:
            parser.error(f"argument --fault-for: {name!r} is given twice")
        file_faults[name] = spec
    try:
        server = EmulatorServer(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            latency=args.latency,
            fault=args.fault,
            file_faults=file_faults,
            random_faults=args.random_faults,
            seed=args.seed,
            honour_idempotency=args.honour_idempotency,
            drift=args.drift,
        )
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with server:
        print(f"CometAPI emulator listening on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
