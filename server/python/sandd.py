"""SandD control API client for Python (standard library only).

Drives a SandD controller over its HTTP control API (``/api/v1``): list daemons, run commands, spawn processes
and follow their output by byte offset (resuming after a dropped connection), write stdin, send signals, upload
and download files as streams, and watch events.

    from sandd import Client

    with Client("http://127.0.0.1:8765", token="...") as c:
        print([d["id"] for d in c.daemons()])
        r = c.exec("worker-1", ["uname", "-a"], timeout=10)
        print(r.exit_code, r.stdout)

One file on purpose (about 800 lines, over the project's 600-line guideline): a Python user copies it next to a
script. Times are in seconds (floats) on the Python side. A ``Client`` keeps one keep-alive connection for its JSON
calls and opens a connection per stream; it is not thread-safe: use one per thread.

Errors are :class:`SanddError` (or a subclass) carrying the API's stable ``code`` (``DAEMON_NOT_FOUND``,
``UNKNOWN_PROCESS``, ``COMMAND_TIMEOUT``, ``ENOENT``, ...), the HTTP ``status`` and the ``message``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import math
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, Iterable, Iterator, List, Optional, Sequence, Union

__all__ = [
    "Client",
    "ExecResult",
    "Event",
    "EventStream",
    "LogStream",
    "SanddError",
    "BadRequestError",
    "AuthError",
    "NotFoundError",
    "ConflictError",
    "RateLimitedError",
    "DaemonDisconnectedError",
    "TimeoutError",
    "CommandTimeoutError",
    "IntegrityError",
    "UnreachableError",
]

API = "/api/v1"
CHUNK = 256 * 1024
Command = Union[str, Sequence[str]]


# --- errors -------------------------------------------------------------------------------------------------


class SanddError(Exception):
    """An error answered by the control API (or met on the way to it). ``code`` is the API's stable code."""

    def __init__(self, code: str, message: str, status: int = 0, body: Optional[dict] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body or {}


class BadRequestError(SanddError):
    """400: the request was malformed; the message names the field."""


class AuthError(SanddError):
    """401 (no or bad token) or 403 (the token lacks the scope)."""


class NotFoundError(SanddError):
    """404: unknown daemon, process, file or route."""


class ConflictError(SanddError):
    """409: the state does not allow it (stdin closed, process exited, ...)."""


class RateLimitedError(SanddError):
    """429: a rate limit refused the request; ``retry_after`` is in seconds when the controller said."""

    retry_after: Optional[float] = None


class DaemonDisconnectedError(SanddError):
    """503: the daemon dropped and did not come back in time."""


class TimeoutError(SanddError):  # noqa: A001 - the API's TIMEOUT, not the builtin
    """504: a wait or request ran out of time (``TIMEOUT``, ``REQUEST_TIMEOUT``)."""


class CommandTimeoutError(TimeoutError):
    """504 ``COMMAND_TIMEOUT``: the command's timeout killed it; ``partial`` holds what it printed."""

    @property
    def partial(self) -> dict:
        return self.body.get("partial") or {}


class IntegrityError(SanddError):
    """Bytes that arrived do not match what was sent (a cut body, a SHA-256 mismatch)."""


class UnreachableError(SanddError):
    """The controller could not be reached or the connection failed (code ``UNREACHABLE``)."""


_BY_STATUS = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
    503: DaemonDisconnectedError,
    504: TimeoutError,
}


def _error(status: int, raw: bytes, headers: Any = None) -> SanddError:
    try:
        body = json.loads(raw.decode("utf-8"))
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        body = {}
        code, message = f"HTTP_{status}", raw.decode("utf-8", "replace").strip() or f"HTTP status {status}"
    cls = CommandTimeoutError if code == "COMMAND_TIMEOUT" else _BY_STATUS.get(status, SanddError)
    error = cls(code, message, status, body)
    if isinstance(error, RateLimitedError) and headers is not None:
        retry = headers.get("retry-after")
        if retry is not None and retry.isdigit():
            error.retry_after = float(retry)
    return error


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class ExecResult:
    """The result of :meth:`Client.exec`. A non-zero exit is a result, not an error."""

    stdout_bytes: bytes
    stderr_bytes: bytes
    exit_code: int
    signal: Optional[str]
    duration_ms: float
    truncated: Dict[str, bool] = field(default_factory=dict)

    @property
    def stdout(self) -> str:
        """Standard output decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        """Standard error decoded as UTF-8 (invalid bytes replaced)."""
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class Event:
    """One Server-Sent Event: ``type`` is ``connect``, ``disconnect`` or ``exit``; ``data`` its JSON."""

    type: str
    data: Any


# --- the client ---------------------------------------------------------------------------------------------


def _q(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def _seconds_to_ms(name: str, seconds: Optional[float]) -> Optional[int]:
    if seconds is None:
        return None
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return max(1, int(round(seconds * 1000)))


def _command(command: Command) -> Union[str, List[str]]:
    if isinstance(command, str):
        if not command:
            raise ValueError("command must not be empty")
        return command
    argv = list(command)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"command must be a string or a non-empty list of strings, got {command!r}")
    return argv


class LogStream:
    """Output of a process as an iterator of ``bytes`` chunks (from :meth:`Client.logs`).

    ``offset`` is the byte offset after the last chunk yielded: ask again with ``from_=offset`` to continue.
    When the connection drops, the stream asks again from ``offset`` by itself (up to ``retries`` times in a row),
    so no byte is lost or repeated. ``gaps`` lists ``(from, to)`` ranges the daemon no longer retained.
    """

    def __init__(self, client: "Client", daemon: str, proc: str, stream: str, from_: int, follow: bool,
                 retries: int, timeout: Optional[float]):
        self._client = client
        self._path = f"{API}/daemons/{_q(daemon)}/processes/{_q(proc)}/output"
        self._stream = stream
        self._follow = follow
        self._retries = retries
        self._timeout = timeout
        self.offset = from_
        self.gaps: List[tuple] = []
        self.reconnects = 0
        self._conn: Optional[http.client.HTTPConnection] = None
        self._iter = self._run()

    def __iter__(self) -> "LogStream":
        return self

    def __next__(self) -> bytes:
        return next(self._iter)

    def __enter__(self) -> "LogStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading (the process keeps running)."""
        self._iter.close()

    def _run(self) -> Iterator[bytes]:
        failures = 0
        try:
            while True:
                query = urllib.parse.urlencode({
                    "stream": self._stream,
                    "from": str(self.offset),
                    "follow": "true" if self._follow else "false",
                })
                try:
                    conn, response = self._client._open("GET", f"{self._path}?{query}", timeout=self._timeout)
                except (UnreachableError, DaemonDisconnectedError):
                    failures += 1
                    if failures > self._retries:
                        raise
                    time.sleep(min(2.0, 0.1 * 2 ** (failures - 1)))
                    continue
                self._conn = conn
                try:
                    start = int(response.getheader("sandd-offset") or self.offset)
                    if start > self.offset:
                        self.gaps.append((self.offset, start))
                    self.offset = start
                    while True:
                        chunk = response.read1(CHUNK)
                        if not chunk:
                            break
                        self.offset += len(chunk)
                        failures = 0
                        yield chunk
                    if response.length not in (None, 0):
                        raise http.client.IncompleteRead(b"", response.length)
                    return
                except (OSError, http.client.HTTPException) as error:
                    failures += 1
                    if failures > self._retries:
                        raise UnreachableError("UNREACHABLE", f"Output stream cut at offset {self.offset}: {error}")
                    self.reconnects += 1
                    time.sleep(min(2.0, 0.05 * 2 ** (failures - 1)))
                finally:
                    conn.close()
                    self._conn = None
        finally:
            if self._conn is not None:
                self._conn.close()


class Client:
    """A client of one controller's control API.

    :param url: the controller's base URL, e.g. ``http://127.0.0.1:8765`` (``https://`` for TLS).
    :param token: a client token (``Authorization: Bearer``); ``None`` for an open API on loopback.
    :param timeout: socket timeout of JSON calls, in seconds (calls that wait add their own wait to it).
    :param cafile: a PEM CA to trust for ``https`` (besides the system's), or pass ``context``.
    """

    def __init__(self, url: str, token: Optional[str] = None, *, timeout: float = 60.0,
                 cafile: Optional[str] = None, context: Optional[ssl.SSLContext] = None):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be http(s)://host[:port], got {url!r}")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._prefix = parsed.path.rstrip("/")
        self._timeout = timeout
        self._token = token
        if self._https:
            self._context = context or ssl.create_default_context(cafile=cafile)
        else:
            self._context = None
        self._conn: Optional[http.client.HTTPConnection] = None

    # connection plumbing

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the keep-alive connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        headers = {"accept": "application/json"}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
        if extra:
            headers.update(extra)
        return headers

    def _open(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
              timeout: Optional[float] = None, chunked: bool = False):
        """A new connection and its response (status checked) for a streamed call; the caller closes both."""
        conn = self._connection(timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers=self._headers(headers),
                         encode_chunked=chunked)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            raise UnreachableError("UNREACHABLE", f"{method} {path} failed: {error}") from error
        if response.status >= 400:
            raw = response.read()
            conn.close()
            raise _error(response.status, raw, response.headers)
        return conn, response

    def _call(self, method: str, path: str, payload: Any = None, *, wait: Optional[float] = None,
              raw_body: Optional[bytes] = None) -> Any:
        """A JSON call on the keep-alive connection; returns the decoded answer (None for 204)."""
        body = raw_body
        headers: Dict[str, str] = {}
        if payload is not None:
            body = json.dumps(payload).encode("utf-8")
            headers["content-type"] = "application/json"
        # `wait`: how long the call may legitimately take on top of the socket timeout (math.inf: no limit).
        if wait == math.inf or (wait is None and self._timeout is None):
            timeout: Optional[float] = None
        else:
            timeout = (self._timeout or 0) + (wait or 0)
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connection(timeout)
            conn = self._conn
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, self._prefix + path, body=body, headers=self._headers(headers))
                response = conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                # A keep-alive connection the controller had closed: the request never reached it; once more.
                self.close()
                if reused and attempt == 1:
                    continue
                raise UnreachableError("UNREACHABLE", f"{method} {path} failed: {error}") from error
            except socket.timeout as error:
                self.close()
                raise TimeoutError("TIMEOUT", f"{method} {path}: no answer within {timeout} s") from error
            except (OSError, http.client.HTTPException) as error:
                self.close()
                raise UnreachableError("UNREACHABLE", f"{method} {path} failed: {error}") from error
            if response.will_close:
                self.close()
            if response.status >= 400:
                raise _error(response.status, raw, response.headers)
            if response.status == 204 or not raw:
                return None
            return json.loads(raw.decode("utf-8"))
        raise AssertionError("unreachable")

    # daemons

    def daemons(self, labels: Optional[Dict[str, str]] = None, platform: Optional[str] = None) -> List[dict]:
        """Connected daemons, filtered by labels (all must match) and platform."""
        query = [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        if platform is not None:
            query.append(("platform", platform))
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._call("GET", f"{API}/daemons{suffix}")["daemons"]

    def daemon(self, daemon: str) -> dict:
        """One connected daemon (``NotFoundError`` when it is not connected)."""
        return self._call("GET", f"{API}/daemons/{_q(daemon)}")

    def wait_for_daemon(self, daemon: str, timeout: float = 30.0) -> dict:
        """Wait until a daemon is connected (``TimeoutError`` after ``timeout`` seconds)."""
        ms = _seconds_to_ms("timeout", timeout)
        return self._call("GET", f"{API}/daemons/{_q(daemon)}/wait?timeout={ms}", wait=timeout)

    # commands and processes

    def exec(self, daemon: str, command: Command, *, cwd: Optional[str] = None,
             env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None,
             stdin: Union[str, bytes, None] = None, max_output_bytes: Optional[int] = None) -> ExecResult:
        """Run a command to completion. A string runs through ``sh -c``; a list runs the program directly.

        :param timeout: seconds; the process group is killed after it (``CommandTimeoutError`` with ``partial``).
        :param stdin: text or bytes for standard input, then EOF.
        """
        body: Dict[str, Any] = {"command": _command(command), "encoding": "base64"}
        if cwd is not None:
            body["cwd"] = cwd
        if env is not None:
            body["env"] = dict(env)
        ms = _seconds_to_ms("timeout", timeout)
        if ms is not None:
            body["timeout"] = ms
        if isinstance(stdin, str):
            body["stdin"] = stdin
        elif stdin is not None:
            body["stdinBase64"] = base64.b64encode(bytes(stdin)).decode("ascii")
        if max_output_bytes is not None:
            body["maxOutputBytes"] = max_output_bytes
        r = self._call("POST", f"{API}/daemons/{_q(daemon)}/exec", body, wait=timeout if timeout else math.inf)
        decode = base64.b64decode if r.get("encoding") == "base64" else (lambda s: s.encode("utf-8"))
        return ExecResult(
            stdout_bytes=decode(r["stdout"]),
            stderr_bytes=decode(r["stderr"]),
            exit_code=r["exitCode"],
            signal=r.get("signal"),
            duration_ms=r["durationMs"],
            truncated=r.get("truncated", {}),
        )

    def broadcast(self, command: Command, *, labels: Optional[Dict[str, str]] = None,
                  platform: Optional[str] = None, cwd: Optional[str] = None,
                  env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Run a command on every matching daemon: ``{id: ExecResult or SanddError}``."""
        body: Dict[str, Any] = {"command": _command(command)}
        for key, value in (("labels", labels), ("platform", platform), ("cwd", cwd), ("env", env)):
            if value is not None:
                body[key] = value
        ms = _seconds_to_ms("timeout", timeout)
        if ms is not None:
            body["timeout"] = ms
        r = self._call("POST", f"{API}/broadcast", body, wait=timeout if timeout else math.inf)
        out: Dict[str, Any] = {}
        for daemon, result in r["results"].items():
            if "error" in result:
                out[daemon] = SanddError(result["error"]["code"], result["error"]["message"])
            else:
                text = result.get("encoding") != "base64"
                decode = (lambda s: s.encode("utf-8")) if text else base64.b64decode
                out[daemon] = ExecResult(decode(result["stdout"]), decode(result["stderr"]), result["exitCode"],
                                         result.get("signal"), result["durationMs"], result.get("truncated", {}))
        return out

    def spawn(self, daemon: str, command: Command, *, cwd: Optional[str] = None,
              env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None, stdin: bool = False,
              retain_bytes: Optional[int] = None) -> str:
        """Start a process and return its id (for :meth:`logs`, :meth:`write_stdin`, :meth:`signal`, ...).

        :param stdin: open stdin, to write with :meth:`write_stdin` (without it the process reads EOF at once).
        :param retain_bytes: output bytes the daemon keeps per stream for :meth:`logs` by offset.
        """
        body: Dict[str, Any] = {"command": _command(command), "stdin": bool(stdin)}
        if cwd is not None:
            body["cwd"] = cwd
        if env is not None:
            body["env"] = dict(env)
        ms = _seconds_to_ms("timeout", timeout)
        if ms is not None:
            body["timeout"] = ms
        if retain_bytes is not None:
            body["retainBytes"] = retain_bytes
        return self._call("POST", f"{API}/daemons/{_q(daemon)}/processes", body)["id"]

    def processes(self, daemon: str) -> List[dict]:
        """Processes the daemon holds, running or recently exited."""
        return self._call("GET", f"{API}/daemons/{_q(daemon)}/processes")["processes"]

    def process(self, daemon: str, proc: str) -> dict:
        """One process's description."""
        return self._call("GET", f"{API}/daemons/{_q(daemon)}/processes/{_q(proc)}")

    def logs(self, daemon: str, proc: str, *, stream: str = "stdout", from_: int = 0, follow: bool = True,
             retries: int = 10, timeout: Optional[float] = None) -> LogStream:
        """A process's output as an iterator of ``bytes`` chunks, from byte offset ``from_``.

        With ``follow`` (the default) it runs until the output ends (the process exited); without, it ends with
        what is retained now. A dropped connection is resumed from the offset reached (see :class:`LogStream`).
        """
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream must be 'stdout' or 'stderr', got {stream!r}")
        if not isinstance(from_, int) or from_ < 0:
            raise ValueError(f"from_ must be a non-negative integer, got {from_!r}")
        return LogStream(self, daemon, proc, stream, from_, follow, retries, timeout)

    def write_stdin(self, daemon: str, proc: str, data: Union[bytes, str, BinaryIO, Iterable[bytes]], *,
                    eof: bool = True) -> int:
        """Write to a process's stdin (bytes, text, a binary file or an iterable of bytes, streamed), then close
        it unless ``eof=False``. Returns the bytes written."""
        path = f"{API}/daemons/{_q(daemon)}/processes/{_q(proc)}/stdin?eof={'true' if eof else 'false'}"
        body, chunked, headers = _body(data)
        conn, response = self._open("POST", path, body, headers, timeout=self._timeout, chunked=chunked)
        try:
            return json.loads(response.read().decode("utf-8"))["bytes"]
        finally:
            conn.close()

    def signal(self, daemon: str, proc: str, signal: str = "SIGTERM") -> None:
        """Send a signal to the process group (``SIGTERM`` escalates to ``SIGKILL`` after the daemon's grace)."""
        self._call("POST", f"{API}/daemons/{_q(daemon)}/processes/{_q(proc)}/signal", {"signal": signal})

    def status(self, daemon: str, proc: str) -> dict:
        """``{state, exitCode, signal, timedOut}`` now."""
        return self._call("GET", f"{API}/daemons/{_q(daemon)}/processes/{_q(proc)}/status")

    def wait(self, daemon: str, proc: str, timeout: Optional[float] = None) -> dict:
        """Block until the process exits; its status. ``TimeoutError`` after ``timeout`` seconds (None: forever)."""
        path = f"{API}/daemons/{_q(daemon)}/processes/{_q(proc)}/status?wait=true"
        if timeout is None:
            conn, response = self._open("GET", path, timeout=None)
            try:
                return json.loads(response.read().decode("utf-8"))
            finally:
                conn.close()
        try:
            conn, response = self._open("GET", path, timeout=timeout)
            try:
                return json.loads(response.read().decode("utf-8"))
            finally:
                conn.close()
        except (socket.timeout, UnreachableError) as error:
            if isinstance(error, UnreachableError) and not isinstance(error.__cause__, socket.timeout):
                raise
            raise TimeoutError("TIMEOUT", f"Process {proc} did not exit within {timeout} s") from error

    # files

    def upload(self, daemon: str, path: str, data: Union[bytes, BinaryIO, Iterable[bytes]], *,
               mode: Optional[int] = None, mkdirs: bool = False) -> dict:
        """Upload bytes, a binary file or an iterable of bytes to ``path`` on the worker, streamed in chunks.
        The target is replaced atomically, once the daemon has checked the bytes against the SHA-256 sent with
        them (ahead of bytes, after a stream's).
        Returns ``{bytes, sha256}``."""
        query = {"path": path}
        if mode is not None:
            query["mode"] = format(mode, "04o")
        if mkdirs:
            query["mkdirs"] = "true"
        hasher = hashlib.sha256()
        headers: Dict[str, str] = {"content-type": "application/octet-stream"}
        if isinstance(data, (bytes, bytearray, memoryview)):
            hasher.update(data)
            headers["sandd-sha256"] = hasher.hexdigest()
            body: Any = bytes(data)
            headers["content-length"] = str(len(body))
            chunked = False
        else:
            # The digest goes after the body: the daemon checks the bytes against it before the file is in place.
            headers["sandd-sha256"] = "trailing"
            body = _digest_after(_chunks(data), hasher)
            chunked = True
        conn, response = self._open("PUT", f"{API}/daemons/{_q(daemon)}/files?{urllib.parse.urlencode(query)}",
                                    body, headers, timeout=self._timeout, chunked=chunked)
        try:
            result = json.loads(response.read().decode("utf-8"))
        finally:
            conn.close()
        if result.get("sha256") != hasher.hexdigest():
            raise IntegrityError("EINTEGRITY", f"Upload of '{path}': the daemon's SHA-256 {result.get('sha256')} "
                                               f"differs from the bytes sent ({hasher.hexdigest()})")
        return result

    def download(self, daemon: str, path: str, dest: Optional[BinaryIO] = None, *, from_: int = 0,
                 retries: int = 5) -> Union[int, bytes]:
        """Download ``path`` from the worker, streamed into the binary file ``dest`` (returns the bytes written),
        or into memory when ``dest`` is None (returns the bytes). A dropped connection resumes at the byte reached;
        a body cut short (the controller found a SHA-256 mismatch) raises ``IntegrityError``."""
        sink = dest if dest is not None else _Memory()
        offset = from_
        written = 0
        failures = 0
        size: Optional[int] = None
        while True:
            query = urllib.parse.urlencode({"path": path, "from": str(offset)})
            try:
                conn, response = self._open("GET", f"{API}/daemons/{_q(daemon)}/files?{query}",
                                            timeout=self._timeout)
            except (UnreachableError, DaemonDisconnectedError):
                failures += 1
                if failures > retries:
                    raise
                time.sleep(min(2.0, 0.1 * 2 ** (failures - 1)))
                continue
            try:
                header = response.getheader("sandd-size")
                size = int(header) if header is not None else size
                while True:
                    chunk = response.read1(CHUNK)
                    if not chunk:
                        break
                    sink.write(chunk)
                    offset += len(chunk)
                    written += len(chunk)
                    failures = 0
                if response.length not in (None, 0):
                    raise http.client.IncompleteRead(b"", response.length)
                break
            except (OSError, http.client.HTTPException) as error:
                failures += 1
                if failures > retries:
                    raise IntegrityError("EINTEGRITY", f"Download of '{path}' cut at byte {offset}: {error}")
                time.sleep(min(2.0, 0.05 * 2 ** (failures - 1)))
            finally:
                conn.close()
        if size is not None and offset != size:
            raise IntegrityError("EINTEGRITY", f"Download of '{path}' ended at byte {offset} of {size}")
        return sink.getvalue() if dest is None else written

    def stat(self, daemon: str, path: str) -> dict:
        """``{type, size, mode, mtime, uid, gid}`` of a path on the worker."""
        return self._call("GET", f"{API}/daemons/{_q(daemon)}/fs/stat?{urllib.parse.urlencode({'path': path})}")

    def list_dir(self, daemon: str, path: str) -> List[dict]:
        """Entries of a directory on the worker."""
        query = urllib.parse.urlencode({"path": path})
        return self._call("GET", f"{API}/daemons/{_q(daemon)}/fs/list?{query}")["entries"]

    def mkdir(self, daemon: str, path: str, *, recursive: bool = False, mode: Optional[int] = None) -> None:
        body: Dict[str, Any] = {"path": path, "recursive": recursive}
        if mode is not None:
            body["mode"] = mode
        self._call("POST", f"{API}/daemons/{_q(daemon)}/fs/mkdir", body)

    def remove(self, daemon: str, path: str, *, recursive: bool = False) -> None:
        self._call("POST", f"{API}/daemons/{_q(daemon)}/fs/remove", {"path": path, "recursive": recursive})

    def move(self, daemon: str, from_: str, to: str) -> None:
        self._call("POST", f"{API}/daemons/{_q(daemon)}/fs/move", {"from": from_, "to": to})

    # events

    def events(self, timeout: Optional[float] = None) -> "EventStream":
        """Server-Sent Events (``connect``, ``disconnect``, ``exit``) as they happen, as an iterator of
        :class:`Event`. Subscribed when this returns (nothing after it is missed); ``close()`` it (or use ``with``)
        to stop. ``timeout``: seconds without any byte before giving up (keep-alives come every 15 s)."""
        conn, response = self._open("GET", f"{API}/events", headers={"accept": "text/event-stream"},
                                    timeout=timeout)
        return EventStream(conn, response)


class EventStream:
    """An open event subscription (from :meth:`Client.events`): iterate it for :class:`Event` values."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._conn = conn
        self._response = response
        self._iter = self._run()

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> Event:
        return next(self._iter)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe."""
        self._iter.close()
        self._conn.close()

    def _run(self) -> Iterator[Event]:
        try:
            kind, data = "message", []
            while True:
                line = self._response.readline()
                if not line:
                    return
                text = line.decode("utf-8").rstrip("\r\n")
                if text == "":
                    if data:
                        payload = "\n".join(data)
                        try:
                            value: Any = json.loads(payload)
                        except ValueError:
                            value = payload
                        yield Event(kind, value)
                    kind, data = "message", []
                elif text.startswith(":"):
                    continue
                else:
                    name, _, value_text = text.partition(":")
                    value_text = value_text[1:] if value_text.startswith(" ") else value_text
                    if name == "event":
                        kind = value_text
                    elif name == "data":
                        data.append(value_text)
        finally:
            self._conn.close()


# --- bodies -------------------------------------------------------------------------------------------------


class _Memory:
    def __init__(self) -> None:
        self._parts: List[bytes] = []

    def write(self, chunk: bytes) -> None:
        self._parts.append(bytes(chunk))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def _chunks(data: Any) -> Iterator[bytes]:
    if isinstance(data, str):
        yield data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for at in range(0, len(view), CHUNK):
            yield bytes(view[at:at + CHUNK])
    elif hasattr(data, "read"):
        while True:
            chunk = data.read(CHUNK)
            if not chunk:
                return
            if isinstance(chunk, str):
                raise TypeError("Files must be opened in binary mode ('rb')")
            yield chunk
    else:
        for chunk in data:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"Chunks must be bytes, got {type(chunk).__name__}")
            if len(chunk):
                yield bytes(chunk)


def _hashing(chunks: Iterator[bytes], hasher: Any) -> Iterator[bytes]:
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk


def _digest_after(chunks: Iterator[bytes], hasher: Any) -> Iterator[bytes]:
    """The chunks, then their SHA-256 in hex (the body of ``Sandd-Sha256: trailing``)."""
    yield from _hashing(chunks, hasher)
    yield hasher.hexdigest().encode("ascii")


def _body(data: Any):
    """A request body: (body, chunked, headers)."""
    headers = {"content-type": "application/octet-stream"}
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        headers["content-length"] = str(len(data))
        return bytes(data), False, headers
    return _chunks(data), True, headers
