"""Starting service processes from an interpreter that has already imported the shared stack.

Every Accord service imports the same heavy third-party stack (a2a-sdk, mcp, gRPC, SQLAlchemy, FastAPI,
pydantic, Redis, OpenTelemetry): about 3 s of CPU per process on a 2-core machine, and a local mesh is 17
processes. The fork server imports that stack once; each service is then forked from it and becomes an
ordinary process of its own: its own session (so its process group can be signalled as a whole), its own
environment, working directory, log file and `python -m <module>` entry point (`runpy`), its own event
loop and sockets. Only the fork server's read-only pages are shared. No `accord` module is preloaded, so
nothing reads an `ACCORD_*` setting before the child's own environment is in place, and no event loop,
thread, channel or socket exists at the fork.

Protocol (one JSON object per line): the parent writes `{"module", "env", "log", "cwd"}` to the server's
stdin and reads `{"pid": n}` (or `{"error": "..."}`) back on its stdout; whenever a child exits the server
writes `{"exited": pid, "code": returncode}` (negative for a signal, as `subprocess` reports it). The
server exits when its stdin closes; its children live on in their own sessions, as `Popen` children would.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

PRELOAD = (
    "grpc",
    "grpc.aio",
    "a2a.client",
    "a2a.server.routes",
    "a2a.server.request_handlers",
    "a2a.server.tasks",
    "a2a.types",
    "mcp",
    "mcp.client.streamable_http",
    "mcp.server.fastmcp",
    "sqlalchemy.ext.asyncio",
    "fastapi",
    "starlette.applications",
    "uvicorn",
    "httpx",
    "redis.asyncio",
    "pydantic",
    "pydantic_settings",
    "joserfc.jws",
    "opentelemetry.sdk.trace",
    "yaml",
)


def preload(modules: Iterable[str] = PRELOAD) -> None:
    """Import what is installed of `modules`; a missing optional one only costs its children time."""
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _run_child(request: dict[str, Any], inherited_fds: Iterable[int], ready: int) -> None:
    """In the forked child: become the service described by `request`; never returns. Once it leads its
    own session and writes to its log, it says so on `ready` (the server answers the spawn only then)."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        # Undo only what the server changed: every other disposition is the one Python starts with
        # (SIGPIPE ignored, so a write to a closed socket raises instead of killing the service).
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.write(ready, b"1")
        for fd in (devnull, log, ready, *inherited_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        # Fresh stream objects: the server's ones (and any lock state in them) are not the service's.
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        extra_paths = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:0] = [p for p in extra_paths if p not in sys.path]
        sys.argv = [request["module"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _selector_fds(selector: selectors.BaseSelector) -> tuple[int, ...]:
    fileno = getattr(selector, "fileno", None)
    return (fileno(),) if callable(fileno) else ()


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    """The server loop: fork on each request line, report each child's exit, stop at end of input."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD reaches the wakeup fd
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ, "request")
    selector.register(wake_read, selectors.EVENT_READ, "child")

    def reply(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    def reap() -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(wake_read, 512)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply({"exited": pid, "code": _returncode(status)})

    while True:
        for key, _ in selector.select():
            if key.data == "child":
                reap()
                continue
            line = stdin.readline()
            if not line:
                return
            try:
                request = json.loads(line)
                ready_read, ready_write = os.pipe()
                pid = os.fork()
            except (ValueError, OSError) as error:
                reply({"error": f"{type(error).__name__}: {error}"})
                continue
            if pid == 0:
                os.close(ready_read)
                _run_child(request, (wake_read, wake_write, *_selector_fds(selector)), ready_write)
            os.close(ready_write)
            # As `Popen(start_new_session=True)` does: answer once the child has its own session and its
            # log (one byte), or has died trying (end of file), so the caller can signal its group at once.
            os.read(ready_read, 1)
            os.close(ready_read)
            reply({"pid": pid})


class ForkedProcess:
    """A service forked by a `ForkServer`: the part of `subprocess.Popen` the mesh runner uses."""

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._server = server
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode


class ForkServer:
    """The parent's handle on a fork server process (started lazily, stopped with `close`)."""

    def __init__(self, log_path: Path) -> None:
        self._log_path = log_path
        self._process: subprocess.Popen[str] | None = None
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._replies: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._reader: threading.Thread | None = None

    def _ensure_started(self) -> subprocess.Popen[str]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "accord.forkserver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
        self._reader.start()
        return self._process

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            message = json.loads(line)
            with self._lock:
                if "exited" in message:
                    pid, code = int(message["exited"]), int(message["code"])
                    child = self._children.get(pid)
                    if child is not None:
                        child._set_exit(code)
                    else:
                        self._early_exits[pid] = code
                else:
                    self._replies.append(message)
                self._lock.notify_all()
        with self._lock:  # the server is gone: nobody will report these children any more
            self._replies.append({"error": "the fork server exited"})
            self._lock.notify_all()

    def spawn(
        self, module: str, env: dict[str, str], log_path: Path, cwd: Path, timeout_s: float = 60.0
    ) -> ForkedProcess:
        """Fork `python -m module` with exactly `env`, output appended to `log_path`."""
        process = self._ensure_started()
        assert process.stdin is not None
        request = {"module": module, "env": env, "log": str(log_path), "cwd": str(cwd)}
        with self._lock:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            deadline = time.monotonic() + timeout_s
            while not self._replies:
                if not self._lock.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("the fork server did not answer")
            reply = self._replies.pop(0)
            if "error" in reply:
                raise RuntimeError(f"cannot start {module}: {reply['error']}")
            child = ForkedProcess(int(reply["pid"]), self)
            self._children[child.pid] = child
            if child.pid in self._early_exits:
                child._set_exit(self._early_exits.pop(child.pid))
        return child

    def close(self) -> None:
        """Stop the server (its children are stopped by their owner, by process group)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def main() -> None:
    preload()
    serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
