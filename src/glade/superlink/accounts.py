"""User accounts of a SuperLink: password hashing, API keys, login tokens.

Secrets are stored only as hashes. Passwords use scrypt (memory-hard: 32 MiB and about
0.1 s per guess with the default cost); the encoded hash names its parameters, so the cost
can be raised later without breaking stored hashes. API keys and login tokens are 256-bit
random strings, so one SHA-256 is enough to store them safely.

>>> from glade.superlink.sqlite_state import SqliteState
>>> accounts = Accounts(SqliteState(":memory:"), token_ttl_s=60.0)
>>> user, _ = accounts.create_user("root", Role.ADMIN, password="correct horse")
>>> session = accounts.login(username="root", password="correct horse")
>>> accounts.authenticate(session.token).name
'root'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from glade.errors import (
    AuthenticationError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)
from glade.superlink.login_throttle import LoginThrottle, peer_host
from glade.superlink.state import Role, State, TokenInfo, UserInfo

__all__ = [
    "DEFAULT_TOKEN_TTL_S",
    "MIN_PASSWORD_LENGTH",
    "Accounts",
    "Caller",
    "Role",
    "Session",
    "UserSummary",
    "check_user_name",
    "hash_password",
    "secret_hash",
    "verify_password",
]

DEFAULT_TOKEN_TTL_S = 12 * 3600.0
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_SCRYPT = "scrypt"
_SCRYPT_LOG_N = 15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_API_KEY_PREFIX = "glade_ak_"
_TOKEN_PREFIX = "glade_tk_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HASHING_AT_ONCE = 4
"""Password hashes computed at once: bounds the memory a flood of logins can take."""


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r * p,
        dklen=_HASH_BYTES,
    )


def hash_password(password: str, *, log_n: int = _SCRYPT_LOG_N) -> str:
    """``scrypt$LOG_N$R$P$SALT$HASH`` (base64) of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, log_n, _SCRYPT_R, _SCRYPT_P)
    parts = (_SCRYPT, str(log_n), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    return "$".join(parts)


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` result (False if malformed)."""
    try:
        kind, log_n, r, p, salt, digest = encoded.split("$")
        if kind != _SCRYPT or not 10 <= int(log_n) <= 20:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(log_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def secret_hash(secret: str) -> str:
    """SHA-256 hex of an API key or a token: what the state stores."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def check_user_name(name: str) -> str:
    """``name`` if it can name a user (letters, digits, ``._@-``; at most 64)."""
    if not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"bad user name {name!r}: use 1 to 64 letters, digits and '._@-', starting with a "
            "letter or digit"
        )
    return name


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who makes a Control call: a logged-in user, or everyone with authentication off."""

    name: str
    role: str
    token_hash: str = ""
    expires_at: float = 0.0
    authenticated: bool = True
    """False with user authentication off: the caller acts as an admin."""

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def actor(self) -> str:
        """The caller as the audit log names it."""
        return self.name or "anonymous"

    def may_access(self, owner: str) -> bool:
        """Whether the caller may see, follow and stop a run of ``owner``."""
        return self.is_admin or owner == self.name


ANONYMOUS_ADMIN = Caller(name="", role=Role.ADMIN, authenticated=False)
"""The caller of every Control call when user authentication is off."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """The result of a login: the bearer token (shown once) and what it stands for."""

    token: str
    user: str
    role: str
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSummary:
    """A user as the Control API shows it: no hashes, only which logins it has."""

    name: str
    role: str
    created_at: float = 0.0
    has_password: bool = False
    has_api_key: bool = False

    @classmethod
    def of(cls, user: UserInfo) -> UserSummary:
        return cls(
            name=user.name,
            role=user.role,
            created_at=user.created_at,
            has_password=bool(user.password_hash),
            has_api_key=bool(user.api_key_hash),
        )


class Accounts:
    """Users, logins and tokens over a :class:`~glade.superlink.state.State`.

    ``password_log_n`` is scrypt's cost (2**log_n); tests may lower it.
    """

    def __init__(
        self,
        state: State,
        *,
        token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
        clock: Callable[[], float] = time.time,
        password_log_n: int = _SCRYPT_LOG_N,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._state = state
        self._ttl = token_ttl_s
        self._clock = clock
        self._log_n = password_log_n
        self._hashing = threading.BoundedSemaphore(_HASHING_AT_ONCE)
        self._throttle = throttle or LoginThrottle()
        # compared against when the user is unknown, so both cases cost the same
        self._decoy = hash_password(secrets.token_urlsafe(16), log_n=password_log_n)

    # -- users -----------------------------------------------------------------------------
    def create_user(
        self, name: str, role: str, *, password: str = "", api_key: bool = False
    ) -> tuple[UserInfo, str]:
        """Store a new user; returns it and its API key (``""`` unless ``api_key``)."""
        check_user_name(name)
        _check_role(role)
        if not password and not api_key:
            raise InvalidArgumentError(
                f"user {name!r} needs a password or an API key to log in with"
            )
        key = _API_KEY_PREFIX + secrets.token_urlsafe(32) if api_key else ""
        user = UserInfo(
            name=name,
            role=role,
            password_hash=self._password_hash(password) if password else "",
            api_key_hash=secret_hash(key) if key else "",
            created_at=self._clock(),
        )
        self._state.add_user(user)
        return user, key

    def ensure_admin(self, name: str, password: str) -> bool:
        """Create admin ``name`` unless a user of that name exists; True if it was created."""
        if self._state.get_user(check_user_name(name)) is not None:
            return False
        try:
            self.create_user(name, Role.ADMIN, password=password)
        except InvalidStateError:  # created meanwhile
            return False
        return True

    def set_role(self, name: str, role: str) -> UserInfo:
        user = self._state.update_user(name, role=_check_role(role))
        if user is None:
            raise NotFoundError(f"unknown user {name!r} (see 'glade user ls')")
        return user

    def set_password(
        self,
        name: str,
        new_password: str,
        *,
        old_password: str | None = None,
        keep: str = "",
        peer: str = "",
    ) -> int:
        """A new password for ``name``; with ``old_password`` it must be the current one
        (throttled like a login). Every login of the user but the token (hash) ``keep`` ends;
        returns how many did."""
        if old_password is not None:
            self._check_password(name, old_password, peer=peer)
        if self._state.update_user(name, password_hash=self._password_hash(new_password)) is None:
            raise NotFoundError(f"unknown user {name!r} (see 'glade user ls')")
        return self._state.remove_user_tokens(name, keep=keep)

    def remove_user(self, name: str) -> UserInfo:
        user = self._state.remove_user(name)
        if user is None:
            raise NotFoundError(f"unknown user {name!r} (see 'glade user ls')")
        return user

    def _password_hash(self, password: str) -> str:
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise InvalidArgumentError(
                f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, "
                f"got {len(password)}"
            )
        with self._hashing:
            return hash_password(password, log_n=self._log_n)

    # -- sessions --------------------------------------------------------------------------
    def login(
        self, *, username: str = "", password: str = "", api_key: str = "", peer: str = ""
    ) -> Session:
        """A new token for a user name + password, or for an API key.

        Wrong credentials raise :class:`~glade.errors.AuthenticationError` without saying
        which part was wrong; repeated failures of one name from one host (``peer``, a gRPC
        peer string) lock that pair out for a while (:class:`LoginThrottle`).
        """
        if api_key:
            user = self._state.find_user_by_api_key(secret_hash(api_key))
            if user is None:
                raise AuthenticationError("unknown API key: ask an admin for a new one")
        else:
            if not username or not password:
                raise AuthenticationError("log in with a user name and a password, or an API key")
            user = self._check_password(username, password, peer=peer)
        now = self._clock()
        self._state.prune_tokens(expired_at=now)
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(
            token_hash=secret_hash(token),
            user=user.name,
            created_at=now,
            expires_at=now + self._ttl,
        )
        self._state.add_token(info)
        return Session(token=token, user=user.name, role=user.role, expires_at=info.expires_at)

    def _check_password(self, username: str, password: str, *, peer: str) -> UserInfo:
        """The user if the password is right (throttled per name and host), else raises."""
        host = peer_host(peer)
        self._throttle.check(username, host)
        found = self._state.get_user(username)
        stored = found.password_hash if found is not None else ""
        with self._hashing:
            ok = verify_password(password[:MAX_PASSWORD_LENGTH], stored or self._decoy)
        if found is None or not stored or not ok:
            self._throttle.failed(username, host)
            raise AuthenticationError("wrong user name or password")
        self._throttle.succeeded(username, host)
        return found

    def authenticate(self, token: str) -> Caller:
        """The user a bearer token stands for; AuthenticationError if none or expired."""
        if not token:
            raise AuthenticationError("this call needs a login")
        info = self._state.get_token(secret_hash(token))
        if info is None:
            raise AuthenticationError("unknown login token (logged out, or the user was removed)")
        if info.expires_at <= self._clock():
            self._state.remove_token(info.token_hash)
            raise AuthenticationError("the login expired")
        user = self._state.get_user(info.user)
        if user is None:
            raise AuthenticationError("the user of this login was removed")
        return Caller(
            name=user.name, role=user.role, token_hash=info.token_hash, expires_at=info.expires_at
        )

    def logout(self, caller: Caller) -> bool:
        """End the caller's session; False if it had none."""
        return bool(caller.token_hash) and self._state.remove_token(caller.token_hash)


def _check_role(role: str) -> str:
    if role not in Role.ALL:
        raise InvalidArgumentError(f"unknown role {role!r}: use one of {', '.join(Role.ALL)}")
    return role
