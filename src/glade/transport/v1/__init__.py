"""Generated protobuf code of the ``glade.v1`` wire protocol.

Do not edit: regenerate with ``python scripts/gen_proto.py`` from ``proto/glade/v1/*.proto``.
"""
