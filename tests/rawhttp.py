"""Raw-socket helpers for tests that need exact bytes on the wire."""

import json
import socket
import time


def connect(port, timeout=5.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_response(sock, deadline_seconds=5.0):
    """Read one HTTP/1.1 response with a Content-Length body; returns (status, headers, body)."""
    buf = b""
    end = time.monotonic() + deadline_seconds
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > end:
            raise TimeoutError("no complete response head")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head; got {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def exchange(port, data, timeout=5.0):
    """Send ``data`` on a fresh connection and read one response."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_response(sock, timeout)


def is_closed(sock, timeout=3.0):
    """True when the peer closes ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def body_json(body):
    return json.loads(body)
