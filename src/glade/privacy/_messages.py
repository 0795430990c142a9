"""Small helpers that rebuild messages with changed content (the originals stay untouched)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from glade.keys import ARRAYS, CONFIG, METRICS
from glade.message import Message
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

__all__ = ["metric", "with_arrays", "with_config"]


def _content(message: Message) -> RecordDict:
    if message.content is None:
        raise ValueError("cannot rebuild an error message")
    return message.content.copy()


def with_config(message: Message, values: Mapping[str, Any]) -> Message:
    """``message`` with ``values`` merged into its ``"config"`` record."""
    content = _content(message)
    config = content.get(CONFIG)
    merged = ConfigRecord({**(config if isinstance(config, ConfigRecord) else {}), **values})
    content[CONFIG] = merged
    return Message(content, metadata=message.metadata)


def with_arrays(
    reply: Message,
    arrays: ArrayRecord | None,
    *,
    drop_metrics: Iterable[str] = (),
    drop_records: Iterable[str] = (),
) -> Message:
    """``reply`` with its ``"arrays"`` replaced (``None``: removed) and some entries dropped."""
    content = _content(reply)
    for key in drop_records:
        content.pop(key, None)
    if arrays is None:
        content.pop(ARRAYS, None)
    else:
        content[ARRAYS] = arrays
    metrics = content.get(METRICS)
    if isinstance(metrics, MetricRecord):
        for key in drop_metrics:
            metrics.pop(key, None)
    return Message(content, metadata=reply.metadata)


def metric(message: Message, name: str) -> float | None:
    """A numeric metric of a reply, or ``None`` when it is missing or not a number."""
    if message.content is None:
        return None
    metrics = message.content.get(METRICS)
    if not isinstance(metrics, MetricRecord):
        return None
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
