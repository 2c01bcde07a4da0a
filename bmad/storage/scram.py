"""PostgreSQL password authentication: SCRAM-SHA-256 (RFC 5802, RFC 7677) and md5.

``ScramClient(password)`` walks the three SASL messages: ``first()`` ->
``final(server_first)`` -> ``verify(server_final)`` (which raises when the
server cannot prove it knows the password too). The password is never part
of an error message.
"""

import base64
import hashlib
import hmac
import secrets

MECHANISM = "SCRAM-SHA-256"
GS2_HEADER = "n,,"  # no channel binding


class AuthenticationError(Exception):
    """The server's SCRAM messages were malformed or its signature was wrong."""


def _hmac(key, message):
    return hmac.new(key, message, hashlib.sha256).digest()


def _fields(message):
    out = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


class ScramClient:
    """The client side of one SCRAM-SHA-256 exchange."""

    def __init__(self, password, nonce=None):
        self.password = password.encode("utf-8")
        self.nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode("ascii")
        self.first_bare = f"n=,r={self.nonce}"  # PostgreSQL takes the user from the startup message
        self._server_signature = None

    def first(self):
        """The client-first message (bytes)."""
        return (GS2_HEADER + self.first_bare).encode("ascii")

    def final(self, server_first):
        """The client-final message for the server-first message (both bytes)."""
        text = server_first.decode("ascii", "replace")
        fields = _fields(text)
        nonce, salt, iterations = fields.get("r", ""), fields.get("s"), fields.get("i", "")
        if not nonce.startswith(self.nonce) or salt is None or not iterations.isdigit():
            raise AuthenticationError("the server's SCRAM first message is malformed")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(salt), int(iterations))
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={base64.b64encode(GS2_HEADER.encode()).decode()},r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode("ascii")
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode("ascii")

    def verify(self, server_final):
        """Check the server's signature; raises ``AuthenticationError`` when it is wrong."""
        fields = _fields(server_final.decode("ascii", "replace"))
        if "e" in fields:
            raise AuthenticationError(f"the server refused the SCRAM exchange: {fields['e']}")
        given = base64.b64decode(fields.get("v", ""))
        if self._server_signature is None or not hmac.compare_digest(given, self._server_signature):
            raise AuthenticationError("the server's SCRAM signature is wrong")


def md5_password(user, password, salt):
    """The answer to an md5 password request (``md5`` + hex)."""
    inner = hashlib.md5(password.encode("utf-8") + user.encode("utf-8")).hexdigest()
    return b"md5" + hashlib.md5(inner.encode("ascii") + salt).hexdigest().encode("ascii")
