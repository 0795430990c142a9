"""`Message`: metadata plus either content (a RecordDict) or an error."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from glade.records import RecordDict

__all__ = ["DEFAULT_TTL", "Error", "ErrorCode", "Message", "MessageType", "Metadata"]

DEFAULT_TTL = 12 * 3600.0  # seconds a message may wait for its reply
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_\-]*(\.[a-z0-9_\-]+)?$")


class MessageType:
    """Names of the built-in message types; custom names are any other ``[a-z][a-z0-9_-]*``."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"


class ErrorCode(IntEnum):
    """Why a reply carries an error instead of content."""

    UNKNOWN = 0
    CLIENT_APP_RAISED_EXCEPTION = 1
    UNKNOWN_MESSAGE_TYPE = 2
    LOAD_CLIENT_APP = 3
    NODE_UNAVAILABLE = 4
    REPLY_TIMEOUT = 5
    INVALID_REPLY = 6
    CLIENT_APP_CRASHED = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """An error reply: a code and a human-readable reason (may hold a remote traceback)."""

    code: int
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.code, int):
            raise TypeError(f"Error.code must be int, got {type(self.code).__name__}")
        if not isinstance(self.reason, str):
            raise TypeError(f"Error.reason must be str, got {type(self.reason).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Metadata:
    """Where a message comes from, goes to, and what it answers.

    ``group_id`` groups messages of one step (the strategies use the round number);
    ``reply_to_message_id`` is empty for instructions and set on replies.
    """

    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    reply_to_message_id: str
    group_id: str
    message_type: str
    ttl: float
    created_at: float

    def __post_init__(self) -> None:
        for name in ("run_id", "src_node_id", "dst_node_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Metadata.{name} must be int, got {type(value).__name__}")
        if not isinstance(self.message_type, str) or not _TYPE_RE.match(self.message_type):
            raise ValueError(
                f"invalid message type {self.message_type!r}: use 'train', 'evaluate', "
                "'query' or a lowercase name like 'my-task' (optionally 'train.my-variant')"
            )
        if not self.ttl > 0:
            raise ValueError(f"Metadata.ttl must be > 0 seconds, got {self.ttl}")


def new_message_id() -> str:
    return uuid.uuid4().hex


class Message:
    """A message between the ServerApp and a ClientApp.

    Instructions are built with the constructor; replies with :meth:`reply` or
    :meth:`error_reply`, which copy the routing from the message they answer.

    >>> from glade import ConfigRecord, RecordDict
    >>> msg = Message(RecordDict({"config": ConfigRecord({"lr": 0.1})}),
    ...               dst_node_id=7, message_type="train", group_id="1")
    >>> reply = Message.reply(msg, RecordDict())
    >>> reply.metadata.reply_to_message_id == msg.metadata.message_id
    True
    """

    __slots__ = ("content", "error", "metadata")

    def __init__(
        self,
        content: RecordDict | None = None,
        *,
        dst_node_id: int = 0,
        message_type: str = MessageType.TRAIN,
        group_id: str = "",
        ttl: float = DEFAULT_TTL,
        run_id: int = 0,
        src_node_id: int = 0,
        metadata: Metadata | None = None,
        error: Error | None = None,
    ) -> None:
        if (content is None) == (error is None):
            raise ValueError("a Message carries exactly one of content or error")
        if content is not None and not isinstance(content, RecordDict):
            raise TypeError(f"Message content must be a RecordDict, got {type(content).__name__}")
        if error is not None and not isinstance(error, Error):
            raise TypeError(f"Message error must be an Error, got {type(error).__name__}")
        self.content = content
        self.error = error
        self.metadata = metadata or Metadata(
            run_id=run_id,
            message_id=new_message_id(),
            src_node_id=src_node_id,
            dst_node_id=dst_node_id,
            reply_to_message_id="",
            group_id=str(group_id),
            message_type=message_type,
            ttl=ttl,
            created_at=time.time(),
        )

    @classmethod
    def reply(cls, to: Message, content: RecordDict) -> Message:
        """A reply to ``to`` carrying ``content``."""
        return cls(content, metadata=_reply_metadata(to))

    @classmethod
    def error_reply(cls, to: Message, error: Error) -> Message:
        """A reply to ``to`` carrying ``error`` instead of content."""
        return cls(error=error, metadata=_reply_metadata(to))

    @property
    def has_content(self) -> bool:
        return self.content is not None

    @property
    def has_error(self) -> bool:
        return self.error is not None

    @property
    def message_type(self) -> str:
        return self.metadata.message_type

    def with_metadata(self, **changes: Any) -> Message:
        """A shallow copy with some metadata fields replaced (the content is shared)."""
        return Message(self.content, metadata=replace(self.metadata, **changes), error=self.error)

    def __repr__(self) -> str:
        md = self.metadata
        body = f"error={self.error!r}" if self.error else f"content={list(self.content or {})}"
        return (
            f"Message(type={md.message_type!r}, {md.src_node_id}->{md.dst_node_id}, "
            f"group={md.group_id!r}, {body})"
        )


def _reply_metadata(to: Message) -> Metadata:
    md = to.metadata
    return Metadata(
        run_id=md.run_id,
        message_id=new_message_id(),
        src_node_id=md.dst_node_id,
        dst_node_id=md.src_node_id,
        reply_to_message_id=md.message_id,
        group_id=md.group_id,
        message_type=md.message_type,
        ttl=md.ttl,
        created_at=time.time(),
    )
