"""Shared by Omega's test MCP servers: a request log the tests read as proof of what reached
the server, raw output for the hostile ones, and the server's start.

The log is the file named by env MCP_REQUEST_LOG: every line the server receives on stdin is
appended to it before the MCP SDK sees it. The SDK diverts fd 1 to stderr while it serves (so
a stray print cannot corrupt the wire); `inject_line` writes past it, between the SDK's lines.
"""

import os
import sys
import threading


def _tee_stdin(log_path: str) -> None:
    """Replaces fd 0 with a pipe fed by a thread that logs each line it copies."""
    read_end, write_end = os.pipe()
    real_stdin = os.dup(0)
    os.dup2(read_end, 0)
    os.close(read_end)

    def copy() -> None:
        with open(real_stdin, "rb", buffering=0) as src, open(write_end, "wb", buffering=0) as dst:
            pending = b""
            while chunk := src.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if lines:
                    with open(log_path, "ab") as log:
                        log.write(b"".join(line + b"\n" for line in lines))
                    dst.write(b"".join(line + b"\n" for line in lines))

    threading.Thread(target=copy, daemon=True).start()


_wire_lock = threading.Lock()
_wire_fd = None


def _pump_stdout() -> None:
    """Replaces fd 1 with a pipe whose whole lines a thread copies to the real stdout."""
    global _wire_fd
    read_end, write_end = os.pipe()
    _wire_fd = os.dup(1)
    os.dup2(write_end, 1)
    os.close(write_end)

    def copy() -> None:
        with open(read_end, "rb", buffering=0) as src:
            pending = b""
            while chunk := src.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if lines:
                    with _wire_lock:
                        os.write(_wire_fd, b"".join(line + b"\n" for line in lines))

    threading.Thread(target=copy, daemon=True).start()


def inject_line(raw: bytes) -> None:
    """Writes `raw` + newline to the client as if the SDK had, between two of its lines."""
    with _wire_lock:
        os.write(_wire_fd, raw + b"\n")


def run(app) -> None:
    """Runs an MCPServer on stdio, logging requests when MCP_REQUEST_LOG is set."""
    log_path = os.environ.get("MCP_REQUEST_LOG")
    if log_path:
        _tee_stdin(log_path)
    _pump_stdout()
    print(f"{app.name}: starting on stdio", file=sys.stderr, flush=True)
    app.run("stdio")
