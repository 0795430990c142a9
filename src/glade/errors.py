"""Glade's exception tree.

Every error Glade raises on purpose derives from :class:`GladeError`::

    GladeError
    ├── ConfigError (ValueError)       bad pyproject, run config, federation or option
    ├── AppLoadError (ImportError)     "module:attr" cannot be imported or is the wrong kind
    ├── RecordError (ValueError)       a record/array/message that is malformed
    ├── SerdeError (ValueError)        bytes that cannot be decoded, hash mismatch
    ├── RunError (RuntimeError)        a run failed (its reason says why)
    │   └── NotEnoughNodesError        too few nodes to sample from after waiting
    └── TransportError (ConnectionError)  a peer is unreachable or answered with an error

Wrong *types* stored in records raise the builtin :class:`TypeError` with the key and the type.
"""

from __future__ import annotations

__all__ = [
    "AppLoadError",
    "ConfigError",
    "GladeError",
    "NotEnoughNodesError",
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
