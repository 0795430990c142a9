"""The SuperNode: the long-running node agent of the deployment runtime.

- :class:`SuperNodeConfig` (frozen): the SuperLink's Fleet address, the node config
  (``partition-id``, ...), the data folder (node id + bundle cache), long-poll, backoff and
  heartbeat settings.
- :class:`SuperNode`: ``start()`` registers in the background (rejoining with the id kept in
  the data folder), long-polls for instructions, runs one ClientApp process per active run
  (from the run's app bundle, fetched once and verified), pushes replies (arrays first) and
  heartbeats; ``stop(grace=...)`` leaves within a few seconds.

Inside, :class:`~glade.supernode.connection.Connection` is the seam to the SuperLink
(:class:`~glade.supernode.connection.GrpcConnection` is the gRPC one).

>>> from glade.supernode import SuperNode, SuperNodeConfig
>>> config = SuperNodeConfig(superlink="127.0.0.1:9092", node_config={"partition-id": 0})
>>> node = SuperNode(config)
>>> node.node_id
0
"""

from glade.supernode.config import SuperNodeConfig
from glade.supernode.node import SuperNode

__all__ = ["SuperNode", "SuperNodeConfig"]
