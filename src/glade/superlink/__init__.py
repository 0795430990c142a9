"""The SuperLink: the long-running coordinator of the deployment runtime.

Entry points:

- :class:`SuperLinkConfig` (frozen): addresses of the Control (users), Fleet (SuperNodes) and
  ServerAppIO (ServerApp processes) APIs (port 0 = any free port), the state ``database``
  (a SQLite file, or ``":memory:"``), ``object_dir`` (object store + extracted bundles),
  ``max_concurrent_runs``, ``heartbeat_interval_s`` / ``node_offline_timeout_s``,
  ``message_lease_s``, ``run_timeout_s``, ``insecure`` and ``ready_file``.
  ``SuperLinkConfig.in_data_dir(path, **options)`` keeps the database and objects under
  one folder.
- :class:`SuperLink`: ``start()`` binds the three servers and returns ``addresses``
  (``{"control", "fleet", "serverappio"} -> "host:port"``), also written as JSON to
  ``ready_file``; ``stop(grace=...)`` ends active runs (failed) and shuts down within a few
  seconds; ``wait(timeout)`` blocks until stopped. It is a context manager too.

Inside, :class:`~glade.superlink.state.State` (SQLite) stores nodes, runs, messages and logs;
:class:`~glade.superlink.object_store.ObjectStore` stores arrays and bundles on disk by
SHA-256; :class:`~glade.superlink.delivery.Delivery` routes messages (leases, de-duplicated
replies, error replies for offline nodes and expired messages, long-polls);
:class:`~glade.superlink.runs.RunManager` queues runs and supervises one ServerApp process
per run (``python -m glade.superlink.serverapp``), whose
:class:`~glade.superlink.grid.ServerAppIoGrid` talks to the ServerAppIO API.

>>> from glade.superlink import SuperLink, SuperLinkConfig
>>> link = SuperLink(SuperLinkConfig(control_address="127.0.0.1:0",
...                                  fleet_address="127.0.0.1:0",
...                                  serverappio_address="127.0.0.1:0"))
>>> addresses = link.start()
>>> link.stop(grace=1.0)
"""

from glade.superlink.config import MEMORY_DATABASE, SuperLinkConfig
from glade.superlink.service import SuperLink

__all__ = ["MEMORY_DATABASE", "SuperLink", "SuperLinkConfig"]
