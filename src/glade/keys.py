"""Names of the standard entries in message content, shared by strategies and apps.

Use these instead of string literals: ``msg.content[keys.ARRAYS]``.
"""

ARRAYS = "arrays"
"""ArrayRecord with the model arrays (sent by the server, returned by train)."""
CONFIG = "config"
"""ConfigRecord with instructions for the node (``server-round``, learning rate, ...)."""
METRICS = "metrics"
"""MetricRecord returned by train/evaluate (must hold ``num-examples``)."""
NUM_EXAMPLES = "num-examples"
"""Metric: number of examples a node used; the aggregation weight."""
SERVER_ROUND = "server-round"
"""Config: the current round number (1-based)."""
PROXIMAL_MU = "proximal-mu"
"""Config: FedProx's proximal coefficient mu, sent to nodes by ``FedProx``."""
CLIENT_LR = "client-lr"
"""Config: the client learning rate some strategies send (FedOpt's eta_l, q-FedAvg)."""
