"""A tiny web application for a VM: ``GET /`` answers the VM's name (standard library).

HTTP/1.1 with keep-alive (a thread per connection), on ``0.0.0.0:8080`` by default, so
HAProxy's health checks and the load generator see which VM answered. ``GET /?delay=S``
waits S seconds (at most 10) before answering, to make long requests for drain tests.

    python -m netsim.invm.webapp [--port 8080] [--name web1]

Without ``--name`` the name comes from ``/metadata/v1/InstanceInfo`` (the 2015 API,
not rate limited). It refuses to run in the host's own namespace.
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from netsim.invm.imds import Imds, ImdsError, start_in_vm

MAX_DELAY = 10.0
IDLE_TIMEOUT = 30.0  # seconds an idle keep-alive connection is kept


def make_handler(name: str, quiet: bool = True) -> type[BaseHTTPRequestHandler]:
    """A request handler class that answers with ``name``."""
    body = (name + "\n").encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless the client says otherwise
        server_version = "netsim-webapp/1"
        timeout = IDLE_TIMEOUT

        def _answer(self, send_body: bool) -> None:
            url = urlsplit(self.path)
            if url.path != "/":
                self.send_error(404, "Not Found")
                return
            try:
                delay = min(float(parse_qs(url.query).get("delay", ["0"])[0]), MAX_DELAY)
            except ValueError:
                self.send_error(400, "delay must be a number of seconds")
                return
            if delay > 0:
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Served-By", name)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            if not quiet:
                super().log_message(format, *args)

    return Handler


class WebServer(ThreadingHTTPServer):
    """A threading HTTP server whose threads never keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of new connections (a whole
    # backend's clients moving here when another server drains) overflows it, the kernel
    # drops their SYNs and each waits a second to retry. Real servers queue hundreds
    # (nginx 511).
    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        """A peer that goes away mid-answer (HAProxy's health checks close as soon as
        they have the status line) is normal, not an error to print."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def instance_id(imds: Imds) -> str:
    """This VM's name from the seed's ``/metadata/v1/InstanceInfo``."""
    info = imds.instance_info()
    if not info.get("ID"):
        raise ImdsError(f"InstanceInfo has no ID: {info!r}")
    return info["ID"]


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.invm.webapp [--bind 0.0.0.0] [--port 8080] [--name NAME]``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.invm.webapp", description=__doc__.split("\n")[0])
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--name", help="the answer (default: this VM's name from the metadata service)")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)

    try:
        _, name = start_in_vm("webapp", args.name, name_of=instance_id)
    except (ImdsError, ValueError) as exc:
        print(f"webapp: cannot learn this VM's name: {exc}", file=sys.stderr)
        return 1
    server = WebServer((args.bind, args.port), make_handler(name, quiet=not args.verbose))
    print(f"webapp: {name} serving on {args.bind}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
