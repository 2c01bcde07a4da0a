"""PostgreSQL frontend/backend protocol v3: message framing, and values to and from the text format.

Framing: every backend message is a type byte, an Int32 length (itself
included) and a body; ``read_message(recv)`` returns ``(type, body)``.
Frontend messages are built by the small functions below. Values travel in
the text format: ``encode_param(value)`` gives ``(oid, bytes or None)``,
``decode(oid, text)`` the Python value of a result column.
"""

import datetime
import decimal
import json
import struct

PROTOCOL_V3 = 196608
SSL_REQUEST = 80877103
CANCEL_REQUEST = 80877102
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Type OIDs (pg_type.h) this client knows; any other arrives as text.
BOOL, BYTEA, INT8, INT2, INT4, TEXT, JSON, FLOAT4, FLOAT8, NUMERIC = 16, 17, 20, 21, 23, 25, 114, 700, 701, 1700
TIMESTAMP, TIMESTAMPTZ, JSONB, UNKNOWN, VARCHAR = 1114, 1184, 3802, 0, 1043

_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")


class ProtocolError(Exception):
    """The server sent something this client cannot read; the connection is unusable."""


def cstring(text):
    """A NUL-terminated UTF-8 string; a NUL inside is refused (the protocol cannot carry it)."""
    data = text.encode("utf-8")
    if b"\x00" in data:
        raise ValueError("a NUL character cannot be sent in a PostgreSQL identifier or query text")
    return data + b"\x00"


def message(kind, body=b""):
    """One frontend message."""
    return kind + _I32.pack(len(body) + 4) + body


def startup(user, database, options=None):
    """The StartupMessage (no type byte)."""
    body = _I32.pack(PROTOCOL_V3)
    for key, value in (("user", user), ("database", database), *(options or {}).items()):
        body += cstring(key) + cstring(str(value))
    body += b"\x00"
    return _I32.pack(len(body) + 4) + body


def ssl_request():
    """The SSLRequest that asks to switch to TLS."""
    return _I32.pack(8) + _I32.pack(SSL_REQUEST)


def cancel_request(pid, secret):
    """The CancelRequest, sent on a new connection."""
    return _I32.pack(16) + _I32.pack(CANCEL_REQUEST) + struct.pack("!II", pid, secret)


def parse(sql, oids, name=""):
    """Parse: prepare ``sql`` with parameter types ``oids``."""
    return message(b"P", cstring(name) + cstring(sql) + _I16.pack(len(oids)) + b"".join(_I32.pack(o) for o in oids))


def bind(values, portal="", statement=""):
    """Bind: every parameter and every result column in the text format."""
    body = cstring(portal) + cstring(statement) + _I16.pack(0) + _I16.pack(len(values))
    for value in values:
        body += _I32.pack(-1) if value is None else _I32.pack(len(value)) + value
    return message(b"B", body + _I16.pack(0))


def describe_portal(portal=""):
    """Describe the portal: its row description, or NoData."""
    return message(b"D", b"P" + cstring(portal))


def execute(portal="", max_rows=0):
    """Execute the portal."""
    return message(b"E", cstring(portal) + _I32.pack(max_rows))


SYNC = message(b"S")
TERMINATE = message(b"X")
COPY_DONE = message(b"c")


def query(sql):
    """A simple Query (no parameters: only for statements the client writes itself)."""
    return message(b"Q", cstring(sql))


def copy_data(data):
    """One CopyData message."""
    return message(b"d", data)


def read_message(recv_exact):
    """``(type byte, body)`` of the next backend message; ``recv_exact(n)`` reads exactly n bytes."""
    head = recv_exact(5)
    kind, length = head[:1], _I32.unpack(head[1:])[0]
    if length < 4 or length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a backend message of {length} bytes cannot be right")
    return kind, recv_exact(length - 4)


def fields(body):
    """The fields of an ErrorResponse or NoticeResponse: code letter -> text."""
    out = {}
    for part in body.split(b"\x00"):
        if part:
            out[part[:1].decode("ascii", "replace")] = part[1:].decode("utf-8", "replace")
    return out


def row_description(body):
    """``[(name, type oid)]`` of a RowDescription."""
    count = _I16.unpack_from(body)[0]
    pos, columns = 2, []
    for _ in range(count):
        end = body.index(b"\x00", pos)
        name = body[pos:end].decode("utf-8")
        oid = _I32.unpack_from(body, end + 7)[0]
        columns.append((name, oid))
        pos = end + 19
    return columns


def data_row(body):
    """The raw column values of a DataRow (``None`` for NULL)."""
    count = _I16.unpack_from(body)[0]
    pos, values = 2, []
    for _ in range(count):
        length = _I32.unpack_from(body, pos)[0]
        pos += 4
        if length < 0:
            values.append(None)
        else:
            values.append(body[pos:pos + length])
            pos += length
    return values


def encode_param(value):
    """``(type oid, text bytes or None)`` for one parameter."""
    if value is None:
        return UNKNOWN, None
    if isinstance(value, bool):
        return BOOL, b"t" if value else b"f"
    if isinstance(value, int):
        return INT8, str(value).encode("ascii")
    if isinstance(value, float):
        return FLOAT8, repr(value).encode("ascii")
    if isinstance(value, decimal.Decimal):
        return NUMERIC, str(value).encode("ascii")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BYTEA, b"\\x" + bytes(value).hex().encode("ascii")
    if isinstance(value, datetime.datetime):
        return (TIMESTAMPTZ if value.tzinfo else TIMESTAMP), value.isoformat().encode("ascii")
    if isinstance(value, (dict, list)):
        return JSONB, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("PostgreSQL text cannot hold a NUL character; send it as bytes (bytea)")
        return UNKNOWN, value.encode("utf-8")
    raise TypeError(f"cannot send a {type(value).__name__} to PostgreSQL")


def _timestamp(text):
    # PostgreSQL prints "+00" offsets and up to 6 fractional digits; fromisoformat wants "+00:00".
    if len(text) > 3 and text[-3] in "+-" and text[-2:].isdigit():
        text += ":00"
    return datetime.datetime.fromisoformat(text)


_DECODERS = {
    BOOL: lambda t: t == "t",
    INT2: int, INT4: int, INT8: int,
    FLOAT4: float, FLOAT8: float,
    NUMERIC: decimal.Decimal,
    JSON: json.loads, JSONB: json.loads,
    BYTEA: lambda t: bytes.fromhex(t[2:]) if t.startswith("\\x") else t.encode("latin-1"),
    TIMESTAMP: _timestamp, TIMESTAMPTZ: _timestamp,
}


def decode(oid, raw):
    """The Python value of one text-format column of type ``oid``."""
    if raw is None:
        return None
    text = raw.decode("utf-8")
    decoder = _DECODERS.get(oid)
    return decoder(text) if decoder is not None else text


def copy_text(value):
    """One value in COPY's text format."""
    if value is None:
        return b"\\N"
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = "\\x" + bytes(value).hex()
    else:
        _, encoded = encode_param(value)
        text = encoded.decode("utf-8")
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
            .encode("utf-8"))
