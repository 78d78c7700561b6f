"""A tiny raw-socket HTTP server for the faults an HTTP framework cannot produce.

Each connection gets the same script: its request is read in full, then every step runs in
order. A ``bytes`` (or ``memoryview``) step is sent as is; ``DRAIN`` waits until the client's
kernel has every byte sent so far; ``RESET`` closes with ``SO_LINGER`` 0, which sends an RST;
``CLOSE`` closes normally; ``STALL`` sends nothing more until the client hangs up (or the server
stops), and ``stalls`` records which ended it. A script that ends without ``RESET`` or ``STALL``
closes normally. Every wait is bounded in time and count.
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

DRAIN = "drain"
RESET = "reset"
CLOSE = "close"
STALL = "stall"
_ACTIONS = (DRAIN, RESET, CLOSE, STALL)
HUNG_UP = "client hung up"
STOPPED = "server stopped"
RAN_OUT = "stall ran out"
"""How a ``STALL`` ended, as recorded in ``RawServer.stalls``."""
_POLL = 0.05
_IO_SECONDS = 10.0
_MAX_HEAD = 64 * 1024


def http_response(
    body: bytes,
    *,
    status: str = "200 OK",
    content_type: str = "application/json",
    content_length: int | None = None,
) -> bytes:
    """Status line and headers (``Connection: close``) for ``body``; the length may lie."""
    length = len(body) if content_length is None else content_length
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nx-request-id: req_raw\r\nConnection: close\r\n\r\n"
    ).encode()


class RawServer:
    """Answer each connection on ``127.0.0.1:<port>`` with ``script``; at most ``max_connections``.

    :param script: ``bytes`` to send, and the actions ``DRAIN``, ``RESET``, ``CLOSE``, ``STALL``.
    :param max_connections: connections answered before the server stops accepting.
    :param stall_seconds: the longest a ``STALL`` lasts.
    """

    def __init__(
        self,
        script: Sequence[bytes | memoryview | str],
        *,
        max_connections: int = 4,
        stall_seconds: float = 10.0,
    ) -> None:
        unknown = [step for step in script if isinstance(step, str) and step not in _ACTIONS]
        if unknown:
            raise ValueError(f"unknown script steps {unknown}; use bytes or {_ACTIONS}")
        self.script = list(script)
        self.max_connections = max_connections
        self.stall_seconds = stall_seconds
        self.requests: list[bytes] = []  # the head of each request, in order
        self.errors: list[str] = []  # what went wrong on the server's side, if anything
        self.stalls: list[str] = []  # how each stall ended: HUNG_UP, STOPPED or RAN_OUT
        self.stalling = threading.Event()  # set once a stall has begun
        self._stall_ended = threading.Condition()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"rawserver-{self.port}")

    @property
    def url(self) -> str:
        """The base URL to put in a connection's host."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, end any stall, and wait for the thread; raise if it does not end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=_IO_SECONDS + 1)
        self._listener.close()
        if self._thread.is_alive():
            raise RuntimeError(f"{self._thread.name} did not stop")

    def stall_endings(self, count: int) -> list[str]:
        """``stalls`` once ``count`` stalls have ended (waiting at most ``_IO_SECONDS``)."""
        with self._stall_ended:
            self._stall_ended.wait_for(lambda: len(self.stalls) >= count, _IO_SECONDS)
            return list(self.stalls)

    def _serve(self) -> None:
        served = 0
        while served < self.max_connections and not self._stop.is_set():
            readable, _, _ = select.select([self._listener], [], [], _POLL)
            if not readable:
                continue
            conn, _ = self._listener.accept()
            served += 1
            try:
                conn.settimeout(_IO_SECONDS)
                self.requests.append(self._read_request(conn))
                self._play(conn)
            except OSError as exc:  # the client went away first: fine, note it
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

    def _read_request(self, conn: socket.socket) -> bytes:
        """Read the head and the whole body (by ``Content-Length`` or chunked)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk or len(data) > _MAX_HEAD:
                raise ConnectionError("no complete request head")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        fields = {name.strip().lower(): value.strip() for name, value in fields.items()}
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            while not body.endswith(b"0\r\n\r\n"):
                body += self._recv(conn)
        else:
            remaining = int(fields.get(b"content-length", b"0")) - len(body)
            while remaining > 0:
                remaining -= len(self._recv(conn))
        return head

    @staticmethod
    def _recv(conn: socket.socket) -> bytes:
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the client closed mid-request")
        return chunk

    def _play(self, conn: socket.socket) -> None:
        for step in self.script:
            if not isinstance(step, str):
                conn.sendall(step)
            elif step == DRAIN:
                self._drain(conn)
            elif step == RESET:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif step == CLOSE:
                conn.shutdown(socket.SHUT_RDWR)
                return
            elif step == STALL:
                self._stall(conn)
                return

    def _drain(self, conn: socket.socket) -> None:
        """Wait until every byte sent has been acknowledged by the client's kernel."""
        deadline = time.monotonic() + _IO_SECONDS
        unsent = bytearray(4)
        while time.monotonic() < deadline and not self._stop.is_set():
            fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, unsent)
            if struct.unpack("i", unsent)[0] == 0:
                return
            time.sleep(_POLL / 5)

    def _stall(self, conn: socket.socket) -> None:
        """Send nothing until the client hangs up, the server stops or the stall times out."""
        self.stalling.set()
        deadline = time.monotonic() + self.stall_seconds
        ending = RAN_OUT
        while time.monotonic() < deadline:
            if self._stop.is_set():
                ending = STOPPED
                break
            readable, _, _ = select.select([conn], [], [], _POLL)
            if readable and not _recv_or_reset(conn):
                ending = HUNG_UP
                break
        with self._stall_ended:
            self.stalls.append(ending)
            self._stall_ended.notify_all()


def _recv_or_reset(conn: socket.socket) -> bytes:
    """What the client sent; ``b""`` once it has closed or reset the connection."""
    try:
        return conn.recv(65536)
    except ConnectionResetError:
        return b""
