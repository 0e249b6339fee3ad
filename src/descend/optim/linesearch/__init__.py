"""descend's stochastic line searches: one backtracking engine (:mod:`.engine`: direction × acceptance rule ×
step-size update) and three thin algorithms over it, each registering itself.

* :class:`SLS` (``"sls"``): SGD + stochastic Armijo/Goldstein, Vaswani et al. 2019;
* :class:`LayerwiseAdamSLS` (``"adam_sls"``): Adam direction, one Armijo search per layer, Kenneweg et al. 2023;
* :class:`SaLSA` (``"salsa"``): Adam direction, smoothed Armijo, searches skipped while stable, Kenneweg et al. 2024.

The closure may or may not call ``backward()`` (the first is the cheaper: trials run without autograd):

>>> import torch
>>> from descend.optim import SLS
>>> model = torch.nn.Linear(3, 1)
>>> x, y = torch.randn(8, 3), torch.randn(8, 1)
>>> opt = SLS(model.parameters())
>>> loss = opt.step(lambda: ((model(x) - y) ** 2).mean())   # descend's convention: no backward()
>>> def closure():                                            # torch's (LBFGS, Lightning)
...     opt.zero_grad()
...     loss = ((model(x) - y) ** 2).mean()
...     loss.backward()
...     return loss
>>> loss = opt.step(closure)
"""

from .adam_sls import LayerwiseAdamSLS
from .salsa import SaLSA
from .sls import SLS

__all__ = ["SLS", "LayerwiseAdamSLS", "SaLSA"]
