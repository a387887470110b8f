"""BackgroundServer: an HTTP server on its own thread, started and stopped by code (both local
endpoints are one)."""
from __future__ import annotations

import abc
import socketserver
import threading
from typing import Any, TypeVar

_Self = TypeVar("_Self", bound="BackgroundServer")

# serve_forever's poll interval: short, so stop() is quick; idle polling costs next to nothing.
POLL_SECONDS = 0.05


class BackgroundServer(abc.ABC):
    """Serves on a daemon thread from start() to stop(); also a context manager.

    Subclasses build their server in ``_make_server`` (port 0 lets the OS pick a free port;
    ``endpoint_url`` asks the bound socket which one) and release what else they hold in
    ``_after_stop``.
    """

    name = "local server"  # the thread's name and the subject of the not-running error

    def __init__(self) -> None:
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _make_server(self) -> socketserver.BaseServer:
        """The server to run, bound and not yet serving."""

    def _after_stop(self) -> None:
        """Called once the server has stopped."""

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"the {self.name} is not running; call start() or use it as a "
                               f"context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self: _Self) -> _Self:
        if self._server is None:
            self._server = self._make_server()
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            args=(POLL_SECONDS,), daemon=True, name=self.name)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._after_stop()

    def __enter__(self: _Self) -> _Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
