"""Glade's exception tree.

Every error Glade raises on purpose derives from :class:`GladeError`::

    GladeError
    ├── ConfigError (ValueError)       bad pyproject, run config, federation or option
    ├── AppLoadError (ImportError)     "module:attr" cannot be imported or is the wrong kind
    ├── RecordError (ValueError)       a record/array/message that is malformed
    ├── SerdeError (ValueError)        bytes that cannot be decoded, hash mismatch
    ├── RunError (RuntimeError)        a run failed (its reason says why)
    │   └── NotEnoughNodesError        too few nodes to sample from after waiting
    ├── TransportError (ConnectionError)  a peer is unreachable or answered with an error
    ├── NotFoundError (LookupError)    a run, node, message, object or bundle does not exist
    ├── AccessDeniedError (PermissionError)  not allowed (wrong node id, run token, role)
    │   └── AuthenticationError          no, unknown, expired or forged credentials
    ├── InvalidArgumentError (ValueError)    a malformed request
    ├── InvalidStateError (RuntimeError)     a request that does not fit the current state
    └── LimitExceededError (ValueError)      a request over a configured limit

``glade.transport.status`` maps each to one gRPC status code (one table).

Wrong *types* stored in records raise the builtin :class:`TypeError` with the key and the type.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "AppLoadError",
    "AuthenticationError",
    "ConfigError",
    "GladeError",
    "InvalidArgumentError",
    "InvalidStateError",
    "LimitExceededError",
    "NotEnoughNodesError",
    "NotFoundError",
    "RecordError",
    "RunError",
    "SerdeError",
    "TransportError",
]


class GladeError(Exception):
    """Root of every exception Glade raises on purpose."""


class ConfigError(GladeError, ValueError):
    """A configuration value (pyproject, run config, option) is missing or invalid."""


class AppLoadError(GladeError, ImportError):
    """A ServerApp or ClientApp named as ``module:attribute`` cannot be loaded."""


class RecordError(GladeError, ValueError):
    """A record, array or message is malformed (not a type error: a value error)."""


class SerdeError(GladeError, ValueError):
    """Bytes cannot be decoded into Glade objects (corrupt, truncated, wrong hash)."""


class RunError(GladeError, RuntimeError):
    """A run failed; the message says why and what to do."""


class NotEnoughNodesError(RunError):
    """Fewer nodes than required were available before the timeout."""


class TransportError(GladeError, ConnectionError):
    """A peer could not be reached or answered with an error."""


class NotFoundError(GladeError, LookupError):
    """The request names a run, node, message, object or bundle that does not exist."""


class AccessDeniedError(GladeError, PermissionError):
    """The caller may not do this (wrong node id or run token, another user's run, a role)."""


class AuthenticationError(AccessDeniedError):
    """The caller's identity is not established: no, unknown, expired or forged credentials.

    gRPC UNAUTHENTICATED, where :class:`AccessDeniedError` is PERMISSION_DENIED.
    """


class InvalidArgumentError(GladeError, ValueError):
    """The request is malformed (missing or inconsistent fields, a bad bundle)."""


class InvalidStateError(GladeError, RuntimeError):
    """The request does not fit the current state (e.g. messages for a finished run)."""


class LimitExceededError(GladeError, ValueError):
    """The request is larger than a configured limit (object size, batch length)."""
