"""descend's stochastic line searches: one backtracking engine (:mod:`.engine`: direction × acceptance rule ×
step-size update) and three thin algorithms over it, each registering itself.

* :class:`SLS` (``"sls"``): SGD + stochastic Armijo/Goldstein, Vaswani et al. 2019;
* :class:`LayerwiseAdamSLS` (``"adam_sls"``): Adam direction, one Armijo search per layer, Kenneweg et al. 2023;
* :class:`SaLSA` (``"salsa"``): Adam direction, smoothed Armijo, searches skipped while stable, Kenneweg et al. 2024.
"""

from .adam_sls import LayerwiseAdamSLS
from .salsa import SaLSA
from .sls import SLS

__all__ = ["SLS", "LayerwiseAdamSLS", "SaLSA"]
