"""descend.bilevel — hypergradients and bilevel solvers (depends on torch only).

* problems: :class:`BilevelProblem` (outer f, inner g, mini-batch oracles, metrics), :class:`QuadraticProblem`
  (closed forms), :func:`lancbio_synthetic`, :func:`bome_toy_coreset`, :func:`elastic_net`; data problems in
  :mod:`descend.bilevel.datasets` (scikit-learn / MNIST-1D, imported lazily).
* :func:`hypergradient` — AID (CG, Neumann, Lanczos), ITD (truncated), nonsmooth fixed point and NSID.
* solvers (``solver.run(max_iter) -> BilevelResult`` with a per-iteration history of oracle counts):
  :class:`LancBiO`, :class:`SubBiO`, :class:`BOME`, :class:`F2SA`, :class:`PenaltyMethod`, :class:`StocBiO`,
  :class:`AmIGO`, :class:`SOBA`, :class:`SABA`.
* :mod:`descend.bilevel.replay` — golden-trajectory replayer.
"""

from .bome import BOME
from .hypergrad import METHODS, HypergradientEstimate, hypergradient
from .lancbio import LancBiO, SubBiO
from .oracles import Oracles
from .penalty import F2SA, PenaltyMethod
from .problems import BilevelProblem, QuadraticProblem, bome_toy_coreset, elastic_net, lancbio_synthetic
from .solver import BilevelResult, BilevelSolver
from .stochastic import SABA, SOBA, AmIGO, StocBiO

SOLVERS: dict[str, type[BilevelSolver]] = {
    cls.name: cls for cls in (LancBiO, SubBiO, BOME, F2SA, PenaltyMethod, StocBiO, AmIGO, SOBA, SABA)
}

__all__ = [
    "BOME",
    "F2SA",
    "METHODS",
    "SABA",
    "SOBA",
    "SOLVERS",
    "AmIGO",
    "BilevelProblem",
    "BilevelResult",
    "BilevelSolver",
    "HypergradientEstimate",
    "LancBiO",
    "Oracles",
    "PenaltyMethod",
    "QuadraticProblem",
    "StocBiO",
    "SubBiO",
    "bome_toy_coreset",
    "elastic_net",
    "hypergradient",
    "lancbio_synthetic",
]
