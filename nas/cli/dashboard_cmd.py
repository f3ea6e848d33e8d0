"""``nas dashboard RUN_DIR``: a live page of a run, served on this machine only."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from nas.errors import UsageError

__all__ = ["register", "cmd_dashboard"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dashboard``."""
    p = sub.add_parser("dashboard", help="serve a live page of a run (progress, trials, front, "
                       "learning curves) on 127.0.0.1")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (results/<run>)")
    p.add_argument("--port", type=int, default=8080, metavar="P",
                   help="port to listen on (8080; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="a loopback address to listen on (127.0.0.1, ::1 or localhost)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (exit 0); a bad folder, host or port exits 2 before serving."""
    from nas.dashboard.server import is_loopback, make_server

    if not is_loopback(args.host):
        raise UsageError(f"--host {args.host}: not a loopback address; the dashboard serves this "
                         "machine only (127.0.0.1, ::1 or localhost)")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: must be from 0 to 65535 (0: a free port)")
    if not args.run_dir.is_dir():
        raise UsageError(f"run folder {str(args.run_dir)!r}: no such folder")
    server = make_server(args.run_dir, port=args.port, host=args.host)
    print(f"serving {args.run_dir} at {server.url} (read-only; Ctrl-C stops)", flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops the server even where the shell started us with SIGINT ignored
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return 0
