"""`ClientApp`: handlers per message type, wrapped by mods."""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Sequence
from typing import TypeAlias

from glade.context import Context
from glade.message import Error, ErrorCode, Message, MessageType
from glade.records import RecordDict

__all__ = ["CallNext", "ClientApp", "Handler", "Mod"]

logger = logging.getLogger(__name__)

Handler: TypeAlias = Callable[[Message, Context], "Message | RecordDict"]
"""A user handler: returns a reply Message, or a RecordDict that becomes the reply content."""
CallNext: TypeAlias = Callable[[Message, Context], Message]
"""What a mod calls to run the rest of the chain; always returns a Message."""
Mod: TypeAlias = Callable[[Message, Context, CallNext], "Message | RecordDict"]


class ClientApp:
    """The code that runs on each node, next to the data.

    Register one handler per message type; each gets ``(msg, context)`` and returns a reply.
    A handler may return a :class:`~glade.RecordDict`, which becomes the reply's content.
    Mods are functions ``(msg, context, call_next) -> Message`` that wrap every handler.

    >>> from glade import ClientApp, Message, MetricRecord, RecordDict
    >>> app = ClientApp()
    >>> @app.query()
    ... def query(msg, context):
    ...     return RecordDict({"metrics": MetricRecord({"answer": 42})})
    >>> sorted(app.message_types)
    ['query']
    """

    def __init__(self, *, mods: Sequence[Mod] = ()) -> None:
        self._handlers: dict[str, Handler] = {}
        self._mods: list[Mod] = list(mods)

    # -- registration ----------------------------------------------------------------
    def on(self, message_type: str) -> Callable[[Handler], Handler]:
        """Register a handler for a custom message type (e.g. ``"fit-head"``)."""

        def register(handler: Handler) -> Handler:
            if not callable(handler):
                raise TypeError(f"handler for {message_type!r} must be callable")
            if message_type in self._handlers:
                raise ValueError(f"a handler for message type {message_type!r} already exists")
            self._handlers[message_type] = handler
            return handler

        # Validate the name now, with the same rule as Metadata.
        Message(RecordDict(), message_type=message_type)
        return register

    def train(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register the ``train`` handler (or ``train.<name>`` for a variant)."""
        return self.on(_typed(MessageType.TRAIN, name))

    def evaluate(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register the ``evaluate`` handler (or ``evaluate.<name>``)."""
        return self.on(_typed(MessageType.EVALUATE, name))

    def query(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register the ``query`` handler (or ``query.<name>``)."""
        return self.on(_typed(MessageType.QUERY, name))

    def mod(self, mod: Mod) -> Mod:
        """Add a mod (outermost last) - usable as a decorator."""
        self._mods.append(mod)
        return mod

    @property
    def message_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    # -- dispatch --------------------------------------------------------------------
    def __call__(self, message: Message, context: Context) -> Message:
        """Handle one message; never raises: failures become error replies."""
        handler = functools.partial(_guarded, self._dispatch)
        for mod in reversed(self._mods):
            handler = functools.partial(_guarded_mod, mod, handler)
        return handler(message, context)

    def _dispatch(self, message: Message, context: Context) -> Message:
        handler = self._handlers.get(message.metadata.message_type)
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            return Message.error_reply(
                message,
                Error(
                    code=ErrorCode.UNKNOWN_MESSAGE_TYPE,
                    reason=f"this ClientApp has no handler for message type "
                    f"{message.metadata.message_type!r} (it handles: {known})",
                ),
            )
        reply = handler(message, context)
        return _as_reply(message, reply)


def _typed(base: str, name: str | None) -> str:
    return base if name is None else f"{base}.{name}"


def _as_reply(message: Message, reply: object) -> Message:
    if isinstance(reply, RecordDict):
        return Message.reply(message, reply)
    if not isinstance(reply, Message):
        return Message.error_reply(
            message,
            Error(
                code=ErrorCode.INVALID_REPLY,
                reason=f"the {message.metadata.message_type!r} handler returned "
                f"{type(reply).__name__}; return a Message (Message.reply(msg, content)) "
                "or a RecordDict",
            ),
        )
    if reply.metadata.reply_to_message_id != message.metadata.message_id:
        # A handler that built a fresh Message: route it as a reply to what it answers.
        if reply.error is not None:
            return Message.error_reply(message, reply.error)
        assert reply.content is not None
        return Message.reply(message, reply.content)
    return reply


def _exception_reply(message: Message, where: str) -> Message:
    tb = traceback.format_exc()
    logger.warning("%s raised while handling %r:\n%s", where, message.metadata.message_type, tb)
    return Message.error_reply(
        message,
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{where} raised:\n{tb}"),
    )


def _guarded(inner: CallNext, message: Message, context: Context) -> Message:
    try:
        return inner(message, context)
    except Exception:
        return _exception_reply(message, "ClientApp handler")


def _guarded_mod(mod: Mod, call_next: CallNext, message: Message, context: Context) -> Message:
    try:
        return _as_reply(message, mod(message, context, call_next))
    except Exception:
        name = getattr(mod, "__name__", type(mod).__name__)
        return _exception_reply(message, f"mod {name!r}")
