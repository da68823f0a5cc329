"""A stand-in for the release origin: plain HTTP on 127.0.0.1 serving files by path, with faults on demand."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple


class OriginServer:
    """``with OriginServer({'resources/EMO_1M/net.pth': data}) as origin:`` serves at ``origin.url``.

    ``origin.truncate = True`` announces the full length but closes the connection halfway.
    ``origin.trickle = (n, seconds)`` announces the full length, then sends ``n`` bytes every ``seconds``; it
    gives up after ``origin.trickle_for`` seconds, when the client hangs up, or when the server stops, so no
    handler thread outlives the test.
    """

    def __init__(self, files: Dict[str, bytes]):
        self.files = dict(files)
        self.truncate = False
        self.trickle: Optional[Tuple[int, float]] = None
        self.trickle_for = 30.0
        self.requests: List[str] = []
        self._stopped = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                path = self.path.split('?', 1)[0].lstrip('/')
                server.requests.append(path)
                data = server.files.get(path)
                if data is None:
                    self.send_error(404, 'Not Found')
                    return
                self.send_response(200)
                self.send_header('Content-Type', 'application/octet-stream')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                if server.trickle:
                    self._trickle(data, *server.trickle)
                    return
                self.wfile.write(data[: len(data) // 2] if server.truncate else data)
                if server.truncate:
                    self.close_connection = True

            def _trickle(self, data: bytes, n: int, seconds: float) -> None:
                self.close_connection = True
                give_up = time.monotonic() + server.trickle_for
                for i in range(0, len(data), n):
                    if server._stopped.is_set() or time.monotonic() > give_up:
                        return
                    try:
                        self.wfile.write(data[i : i + n])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return
                    server._stopped.wait(seconds)

            def log_message(self, *args):  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self._httpd.server_address[1]}'
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> 'OriginServer':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}'
