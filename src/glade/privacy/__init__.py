"""Privacy: differential privacy (central and local, with accounting) and SecAgg+.

- :class:`CentralDp` wraps a strategy: clip updates (:class:`FixedClipping` or
  :class:`AdaptiveClipping`, on the server or on the nodes with :func:`dp_clipping_mod`),
  add Gaussian noise to their mean, report (epsilon, delta) every round.
- :class:`LocalDpMod` clips and noises each update on the node itself.
- :class:`PrivacyAccountant` / :func:`compute_epsilon`: Renyi-DP accounting (needs the
  ``privacy`` extra: ``pip install 'glade[privacy]'``).
- :class:`SecAggPlus` + :func:`secaggplus_mod`: secure aggregation with dropout recovery.

See ``docs/privacy.md`` for when to use which.
"""

from glade.privacy.accountant import (
    PrivacyAccountant,
    compute_epsilon,
    gaussian_delta,
    gaussian_sigma,
)
from glade.privacy.central import DP_DELTA, DP_EPSILON, CentralDp
from glade.privacy.clipping import AdaptiveClipping, ClippingPolicy, FixedClipping
from glade.privacy.mods import LDP_DELTA, LDP_EPSILON, LocalDpMod, dp_clipping_mod
from glade.privacy.secagg_client import secaggplus_mod
from glade.privacy.secagg_server import SecAggPlus

__all__ = [
    "DP_DELTA",
    "DP_EPSILON",
    "LDP_DELTA",
    "LDP_EPSILON",
    "AdaptiveClipping",
    "CentralDp",
    "ClippingPolicy",
    "FixedClipping",
    "LocalDpMod",
    "PrivacyAccountant",
    "SecAggPlus",
    "compute_epsilon",
    "dp_clipping_mod",
    "gaussian_delta",
    "gaussian_sigma",
    "secaggplus_mod",
]
