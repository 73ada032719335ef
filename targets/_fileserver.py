"""A loopback file server for services that take the image by URL (``GET .../smart/<image URL>``).

``target=thumbnail`` with ``body: none`` serves each image it asks about here, under a name nobody can
guess (a random folder per server, a random name per image), for as long as that image's requests
take, then forgets it. It binds 127.0.0.1 by default; the service must reach that address (a
service in a container or on another host needs ``file_host`` set to an address it can reach).
Images live in memory only. Standard library only (``http.server``).
"""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FileServer"]


class FileServer:
    """Serves bytes put into it at ``http://<host>:<port>/<random folder>/<random name><suffix>``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._folder = secrets.token_urlsafe(12)
        self.served = 0  # files sent, for the target's counters
        files, lock, server_self = self._files, self._lock, self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet: the target counts what it serves
                pass

            def do_GET(self) -> None:
                with lock:
                    found = files.get(self.path.split("?", 1)[0])
                    if found:
                        server_self.served += 1
                body, kind = found if found else (b"not found", "text/plain")
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise ValueError(
                f"target.file_host/file_port: cannot serve images on {host}:{port} ({error}); "
                "use a free port (0 picks one) on an address of this machine"
            ) from None
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="files"
        )
        self._thread.start()

    def put(self, data: bytes, *, suffix: str = ".png", content_type: str = "image/png") -> str:
        """Serve ``data``; returns its URL. Each call gets a new name (services cache by URL)."""
        path = f"/{self._folder}/{secrets.token_urlsafe(12)}{suffix}"
        with self._lock:
            self._files[path] = (data, content_type)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def remove(self, url: str) -> None:
        """Stop serving the file at ``url`` (unknown URLs are ignored)."""
        path = "/" + url.split("/", 3)[-1]
        with self._lock:
            self._files.pop(path, None)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        with self._lock:
            self._files.clear()
