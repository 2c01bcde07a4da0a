"""Bearer-key authentication: a key maps to a user id and a role."""

import hashlib
import hmac
import os
import re

from ..errors import ConfigError, Forbidden, Unauthorized

ROLES = ("user", "admin")
USER_ID = re.compile(r"^[A-Za-z0-9._@:-]{1,128}$")


class Principal:
    """The authenticated caller."""

    __slots__ = ("user", "role")

    def __init__(self, user, role="user"):
        self.user = user
        self.role = role

    @property
    def is_admin(self):
        return self.role == "admin"


# In open development mode (no keys) every caller may do everything: the anonymous caller is an admin.
OPEN_MODE_ADMIN = Principal("anonymous", "admin")
# With keys configured, a caller of an open route (health, metrics, the console) who sent no valid key.
ANONYMOUS_USER = Principal("anonymous", "user")


def _digest(key):
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class Authenticator:
    """Maps bearer keys to principals; with no keys configured, runs open.

    Keys are kept only as SHA-256 digests and every presented key is compared
    against every stored digest with ``hmac.compare_digest``, so the time taken
    does not depend on which key, or how much of it, matched.
    """

    def __init__(self, entries, environ=None):
        environ = os.environ if environ is None else environ
        self._keys = []
        for i, entry in enumerate(entries):
            where = f"auth.api_keys[{i}]"
            if not isinstance(entry, dict):
                raise ConfigError(f"config key '{where}' must be an object with key (or key_env) and user")
            unknown = set(entry) - {"key", "key_env", "user", "role"}
            if unknown:
                raise ConfigError(f"unknown config key '{where}.{sorted(unknown)[0]}'")
            key = entry.get("key")
            if key is None and entry.get("key_env"):
                key = environ.get(entry["key_env"])
                if not key:
                    raise ConfigError(f"config key '{where}.key_env': environment variable {entry['key_env']} is not set")
            if not isinstance(key, str) or not key:
                raise ConfigError(f"config key '{where}' needs a non-empty 'key' or 'key_env'")
            user = entry.get("user")
            if not isinstance(user, str) or not USER_ID.match(user):
                raise ConfigError(f"config key '{where}.user' must be 1-128 characters of letters, digits and . _ @ : -")
            role = entry.get("role", "user")
            if role not in ROLES:
                raise ConfigError(f"config key '{where}.role' must be 'user' or 'admin', got {role!r}")
            self._keys.append((_digest(key), Principal(user, role)))

    @property
    def open_mode(self):
        """True when no keys are configured and every caller is let in."""
        return not self._keys

    def authenticate(self, headers):
        """Return the caller's principal or raise 401."""
        if not self._keys:
            user = headers.get("x-user-id")
            if user is None:
                return OPEN_MODE_ADMIN
            if not USER_ID.match(user):
                raise Unauthorized("X-User-ID must be 1-128 characters of letters, digits and . _ @ : -",
                                   type="invalid_user_id")
            return Principal(user, "admin")
        header = headers.get("authorization")
        if not header:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", type="missing_api_key",
                               headers={"WWW-Authenticate": 'Bearer realm="bmad-api"'})
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <key>'", type="invalid_api_key",
                               headers={"WWW-Authenticate": 'Bearer realm="bmad-api"'})
        digest = _digest(key.strip())
        found = None
        for stored, principal in self._keys:
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise Unauthorized("invalid API key", type="invalid_api_key",
                               headers={"WWW-Authenticate": 'Bearer realm="bmad-api", error="invalid_token"'})
        return found

    def authorize(self, principal, needed):
        """Raise 403 unless ``principal`` may use a route that needs ``needed``."""
        if needed == "admin" and not principal.is_admin:
            raise Forbidden("this endpoint needs an admin key")
