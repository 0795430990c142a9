"""The wire: ``glade.v1`` protobuf code, the codec, and object chunking.

Only this package (and the SuperLink/SuperNode adapters) touches protobuf objects; the domain
types in :mod:`glade` never do. Generated code lives in :mod:`glade.transport.v1`
(regenerate with ``python scripts/gen_proto.py``).
"""

from glade.transport.chunks import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_OBJECT_SIZE,
    ChunkAssembler,
    assemble_chunks,
    iter_chunks,
)
from glade.transport.codec import (
    ObjectSource,
    context_from_proto,
    context_to_proto,
    message_from_bytes,
    message_from_proto,
    message_to_bytes,
    message_to_proto,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_OBJECT_SIZE",
    "ChunkAssembler",
    "ObjectSource",
    "assemble_chunks",
    "context_from_proto",
    "context_to_proto",
    "iter_chunks",
    "message_from_bytes",
    "message_from_proto",
    "message_to_bytes",
    "message_to_proto",
]
