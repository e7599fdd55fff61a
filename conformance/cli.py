"""``conformance-sim serve VENDOR [VENDOR …]``: the vendor simulators, standalone
(docs/sut-contract.md §6).

For daily development and interoperability tests: it writes or reuses the PKI folder, starts
the observer and the named vendors' simulators on 127.0.0.1 or ``--listen`` (ports pinned with ``--port NAME=N``
or each vendor's ``--<vendor>-…-port`` option, else chosen free), prints the environment a SUT
needs as shell-sourceable ``export CONFORMANCE_…=…`` lines on standard output (and to
``--env-file``), logs what happens on standard error, and stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from conformance.options import ADVERTISE_HELP, LISTEN_HELP, MAX_PORT
from conformance.vendors import discover
from simulators.network import Reach

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    vendors = discover()
    parser = argparse.ArgumentParser(
        prog="conformance-sim", description="Vendor notification simulators, standalone."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start simulators and print the environment a SUT needs",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    serve.add_argument(
        "vendors",
        nargs="+",
        metavar="VENDOR",
        choices=list(vendors),
        help=f"one or more of: {', '.join(vendors)}",
    )
    serve.add_argument(
        "--pki-dir",
        default="reports/pki",
        metavar="DIR",
        help="the CA and certificates, written once and reused (default: "
        "reports/pki, the same folder pytest conformance uses)",
    )
    serve.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="pin a port: observer=PORT, or NAME=PORT for a vendor option "
        "--NAME-port (the --*-port options below)",
    )
    serve.add_argument("--observer-port", type=int, default=0, help="pin the observer's port")
    serve.add_argument("--listen", metavar="ADDR", help=LISTEN_HELP)
    serve.add_argument("--advertise", metavar="HOST", help=ADVERTISE_HELP)
    serve.add_argument(
        "--env-file",
        metavar="FILE",
        help="also write the export lines to FILE (source it from a shell)",
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="log only errors")  # fmt: skip
    for plugin in vendors.values():
        plugin.add_options(serve.add_argument)
    return parser


def _apply_ports(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for item in args.port:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit() or not 0 < int(value) <= MAX_PORT:
            parser.error(f"--port {item}: write NAME=PORT with a port from 1 to {MAX_PORT}")
        attr = "observer_port" if name == "observer" else f"{name.replace('-', '_')}_port"
        if not hasattr(args, attr):
            names = sorted(
                "observer" if a == "observer_port" else a.removesuffix("_port").replace("_", "-")
                for a in vars(args)
                if a.endswith("_port")
            )
            parser.error(f"--port {item}: no option --{name}-port (names: {', '.join(names)})")
        setattr(args, attr, int(value))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _apply_ports(args, parser)
    pki_dir = Path(args.pki_dir).resolve()
    try:
        reach = Reach.of(args.listen, args.advertise)
    except ValueError as exc:
        parser.error(str(exc))
    vendors = list(dict.fromkeys(args.vendors))

    def option(flag: str) -> Any:
        return getattr(args, flag.lstrip("-").replace("-", "_"))

    settings = {}
    for name in vendors:
        try:
            settings[name] = discover()[name].settings(option, pki_dir=pki_dir)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        return asyncio.run(_serve(vendors, settings, pki_dir, reach, args))
    except OSError as exc:
        print(f"conformance-sim: could not start: {exc} (is a pinned port busy?)", file=sys.stderr)
        return 4


async def _serve(
    vendors: list[str],
    settings: dict[str, Any],
    pki_dir: Path,
    reach: Reach,
    args: argparse.Namespace,
) -> int:
    from conformance.observer import Observer, Route
    from conformance.vendors import RunningVendor, VendorRun
    from simulators.clock import Clock
    from simulators.evidence import EvidenceEvent, Recorder
    from simulators.pki import PKI

    def log(event: EvidenceEvent) -> None:
        if not args.quiet or event.kind in ("error", "fault"):
            arrow = event.actor if event.direction == "--" else f"{event.actor} -> {event.peer}"
            print(f"[{event.real_s:9.3f}s sim {event.sim_s:9.1f}s] {arrow}: {event.summary}",
                  file=sys.stderr, flush=True)  # fmt: skip

    pki = PKI.load_or_create(pki_dir, reach.certificate_names)
    clock = Clock()
    recorder = Recorder(clock, check_head=0, check_tail=0, run_head=0, run_tail=100, sink=log)
    routes = {
        name: Route(discover()[name].observer_record_model(), discover()[name].observer_keys)
        for name in vendors
    }
    observer = Observer(clock, recorder, routes, port=args.observer_port, reach=reach)
    await observer.start()
    running: list[RunningVendor] = []
    try:
        env = {
            "CONFORMANCE_CA_FILE": str(pki.ca),
            "CONFORMANCE_OBSERVER_URL": observer.base_url,
            "CONFORMANCE_SUT_CERT_FILE": str(pki.sut_server.cert),
            "CONFORMANCE_SUT_KEY_FILE": str(pki.sut_server.key),
        }
        for name in vendors:
            run = VendorRun(
                clock, recorder, pki, observer.base_url, pki_dir, settings[name], None, reach=reach
            )
            started = await discover()[name].start(run)
            running.append(started)
            env.update(started.environment())
        lines = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
        print("\n".join(lines), flush=True)
        if args.env_file:
            await asyncio.to_thread(_write_atomically, Path(args.env_file), "\n".join(lines) + "\n")
        print(f"conformance-sim: serving {', '.join(vendors)}; Ctrl-C or SIGTERM stops",
              file=sys.stderr, flush=True)  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        for started in reversed(running):
            await started.stop()
        await observer.stop()
    errors = [e for started in running for e in started.errors()]
    for error in errors:
        print(f"conformance-sim: simulator error: {error}", file=sys.stderr)
    print("conformance-sim: stopped", file=sys.stderr, flush=True)
    return 1 if errors else 0


def _write_atomically(path: Path, text: str) -> None:
    """Whoever waits for the file never reads half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
