"""Local S3: moto's standalone server on a free localhost port, started and stopped by code."""
from __future__ import annotations

import logging
from typing import Any

from moto.server import ThreadedMotoServer


class LocalS3:
    """A real S3-compatible HTTP endpoint (moto server) for boto3, the AWS CLI and Beam's S3 filesystem.

    Moto keeps its data in process-wide state, so two LocalS3 instances in one process see the
    same buckets; use distinct bucket names when that matters.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> None:
        self._host = host
        self._quiet = quiet
        self._port = port
        self._server: ThreadedMotoServer | None = None
        self._bound: tuple[str, int] | None = None

    @property
    def endpoint_url(self) -> str:
        if self._bound is None:
            raise RuntimeError("LocalS3 is not running; call start() or use it as a context manager")
        host, port = self._bound
        return f"http://{host}:{port}"

    def start(self) -> "LocalS3":
        if self._server is not None:
            return self
        if self._quiet:
            # Moto serves through werkzeug, which logs every request at INFO on its own logger.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        self._server = server
        # port=0 lets the OS pick a free port; ask the bound socket which one it chose.
        self._bound = (self._host, server.get_host_and_port()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._bound = None

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
