"""A stand-in for the release origin: plain HTTP on 127.0.0.1 serving files by path, with faults on demand."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List


class OriginServer:
    """``with OriginServer({'resources/EMO_1M/net.pth': data}) as origin:`` serves at ``origin.url``.

    ``origin.truncate = True`` announces the full length but closes the connection halfway.
    """

    def __init__(self, files: Dict[str, bytes]):
        self.files = dict(files)
        self.truncate = False
        self.requests: List[str] = []
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
                self.wfile.write(data[: len(data) // 2] if server.truncate else data)
                if server.truncate:
                    self.close_connection = True

            def log_message(self, *args):  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self._httpd.server_address[1]}'
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> 'OriginServer':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}'
