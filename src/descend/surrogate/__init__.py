"""Optimising through trained networks: IGNITE sharpness-regularised surrogates for offline optimisation,
directional-attack hybrid search with cDSM, and learned proximal networks.

* :mod:`descend.surrogate.ignite` — Dao et al. (NeurIPS 2024): constrained surrogate training + gradient ascent.
* :mod:`descend.surrogate.attack` — Bouchet & Vidal (2025): attack operator, cDSM, hybrid, coordinate search.
* :mod:`descend.surrogate.lpn` — Fang, Buchanan & Sulam (ICLR 2024): LPN, proximal matching, prior, PnP.
* :mod:`descend.surrogate.tasks` — download-free offline tasks and trained-MLP problems.
"""

from .attack import CDSM, CoordinateSearch, DirectionalAttack, Hybrid, NNProblem
from .ignite import IGNITE, gradient_ascent, run_offline, train_surrogate
from .lpn import LPN, pnp_admm, pnp_pgd, prior, prox_matching_loss, train_lpn
from .tasks import OfflineTask, make_task, trained_mlp_problem

__all__ = ["CDSM", "IGNITE", "LPN", "CoordinateSearch", "DirectionalAttack", "Hybrid", "NNProblem", "OfflineTask",
           "gradient_ascent", "make_task", "pnp_admm", "pnp_pgd", "prior", "prox_matching_loss", "run_offline",
           "train_lpn", "train_surrogate", "trained_mlp_problem"]
