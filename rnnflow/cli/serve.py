"""`rnnflow serve RUN_DIR|CKPT [--host 127.0.0.1] [--port 8000]`: a local page to draw an input
and watch the model read it step by step (image runs), or write a poem character by character
with each step's candidates (poem runs), with its JSON API (docs/SERVE.md).

Binds 127.0.0.1 by default; any other address is warned about (the page has no login). Needs
the ``serve`` extra (Starlette, uvicorn), imported only when the command runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

LOOPBACK = ("localhost",)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="a local web page (and JSON API) to watch a model read a drawing or write a poem",
        description=(
            "Serve a run folder on a local web page: draw or upload an image and watch an image "
            "classifier read it row by row, upload a .csv/.npz series and watch a sequence "
            "classifier read it step by step, or generate a poem character by character. "
            "JSON API: POST /api/predict, POST /api/generate (docs/SERVE.md)."
        ),
    )
    parser.add_argument("model", metavar="RUN_DIR|CKPT", help="run folder or .safetensors file")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free port)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the model serves (auto: cuda when available; default: cpu)",
    )
    parser.set_defaults(func=run)
    return parser


def _fail(message: str, status: int = 1) -> int:
    print(f"rnnflow serve: {message}", file=sys.stderr)
    return status


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def shown_host(host: str) -> str:
    """``host`` as it appears in a URL and a Host header (IPv6 addresses in brackets)."""
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be in [0, 65535], got {args.port}", 2)
    try:
        import uvicorn

        from rnnflow.serve import create_app, load_run
    except ImportError as exc:
        return _fail(f"needs the serve extra: pip install 'rnnflow[serve]' ({exc})")
    from rnnflow.training import CheckpointError

    try:
        served = load_run(args.model, device=args.device)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        return _fail(str(exc))
    host = args.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), args.port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        sock.close()
        return _fail(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}")
    port = sock.getsockname()[1]
    allowed = ["localhost", "127.0.0.1", "[::1]", shown_host(host)]
    if not is_loopback(host):
        print(
            f"rnnflow serve: WARNING: listening on {host}, reachable from other machines; the "
            "page has no login and anyone who can reach it can use the model",
            file=sys.stderr,
        )
        allowed = ["*"]
    shown = shown_host(host)
    print(f"rnnflow serve: {served.kind} run {served.checkpoint.path}", flush=True)
    print(f"rnnflow serve: open http://{shown}:{port}/  (Ctrl-C stops)", flush=True)
    app = create_app(served, allowed_hosts=allowed)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
