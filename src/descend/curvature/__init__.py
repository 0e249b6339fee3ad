"""Curvature tools (torch only): Hessian / Gauss-Newton-vector products, Lanczos eigenpairs, SLQ spectral
densities, Hutchinson and Hutch++ traces, and training monitors built on them.

Cost unit everywhere: one matrix-vector product (``op.n_calls``; each result's ``n_hvp``).  Estimators are
seeded (``seed=`` an int or a ``torch.Generator``) and deterministic for a given seed.

Quick start::

    from descend.curvature import HVPOperator, top_eigenpairs, trace, spectral_density
    op = HVPOperator(model, loss_fn, (x, y))           # or a DataLoader, or HVPOperator.from_function(f, params)
    lam = top_eigenpairs(op, k=1).eigenvalues[0]        # sharpness lambda_max
    tr = trace(op, "hutch++", budget=60).estimate       # tr(H)
    dens = spectral_density(op, n_iter=80, n_vectors=3) # dens.density(grid), dens.trace()

References: Ghorbani, Krishnan, Xiao (2019) for SLQ; Meyer, Musco, Musco, Woodruff (2021) for Hutch++;
Yao, Gholami, Keutzer, Mahoney (2020) for PyHessian (the anchor); monitors cite Cohen et al. (2021) and
Wu & Su (2023) -- see each module's docstring.
"""

from .lanczos import EigenResult, LanczosResult, SpectralDensity, lanczos, spectral_density, top_eigenpairs
from .monitors import (
    KernelChangeMonitor,
    Monitor,
    Monitors,
    ParameterChangeMonitor,
    SharpnessMonitor,
    TraceMonitor,
)
from .operators import ClosureHVPOperator, CurvatureOperator, DenseOperator, GNVPOperator, HVPOperator
from .trace import TraceResult, trace

__all__ = [
    "ClosureHVPOperator",
    "CurvatureOperator",
    "DenseOperator",
    "EigenResult",
    "GNVPOperator",
    "HVPOperator",
    "KernelChangeMonitor",
    "LanczosResult",
    "Monitor",
    "Monitors",
    "ParameterChangeMonitor",
    "SharpnessMonitor",
    "SpectralDensity",
    "TraceMonitor",
    "TraceResult",
    "lanczos",
    "spectral_density",
    "top_eigenpairs",
    "trace",
]
