"""Research optimizers as drop-in ``torch.optim.Optimizer`` subclasses, and the registry that describes them.

>>> import torch
>>> import descend.optim as do
>>> model = torch.nn.Linear(4, 2)
>>> opt = do.create("adamw", model.parameters(), lr=1e-3)
>>> spec = do.get("adamw")
>>> sorted(spec.search_space)
['betas', 'lr', 'weight_decay']
"""

from . import baselines as _baselines  # noqa: F401  (registers adamw, nadamw)

# Each optimizer module registers itself on import; keep one import line per module below.
from . import schedules  # schedule registry (logarithmic step size); not optimizers
from .adabelief import AdaBelief
from .adam_mini import AdamMini, adam_mini_param_groups
from .agd import AcceleratedSGD
from .cautious import CAdamW, CLion, cautious
from .frugal import FRUGAL, frugal_param_groups
from .linesearch import SLS, LayerwiseAdamSLS, SaLSA
from .lion import Lion
from .mars import MARS
from .mechanic import Mechanic, mechanize
from .mfac import MFAC
from .muon import Muon, muon_param_groups
from .psgd_kron import PSGDKron
from .registry import (
    Categorical,
    ConvergenceCheck,
    FloatRange,
    IntRange,
    OptimizerSpec,
    available,
    create,
    get,
    register,
    spec_for_fixture,
)
from .roles import Role, param_roles
from .scion import Scion, scion_param_groups
from .shampoo import Shampoo, shampoo_param_groups
from .soap import SOAP, soap_param_groups
from .sophia import SophiaG, gnb_hessian_update

__all__ = [
    "FRUGAL",
    "MARS",
    "MFAC",
    "SLS",
    "SOAP",
    "AcceleratedSGD",
    "AdaBelief",
    "AdamMini",
    "CAdamW",
    "CLion",
    "Categorical",
    "ConvergenceCheck",
    "FloatRange",
    "IntRange",
    "LayerwiseAdamSLS",
    "Lion",
    "Mechanic",
    "Muon",
    "OptimizerSpec",
    "PSGDKron",
    "Role",
    "SaLSA",
    "Scion",
    "Shampoo",
    "SophiaG",
    "adam_mini_param_groups",
    "available",
    "cautious",
    "create",
    "frugal_param_groups",
    "get",
    "gnb_hessian_update",
    "mechanize",
    "muon_param_groups",
    "param_roles",
    "register",
    "schedules",
    "scion_param_groups",
    "shampoo_param_groups",
    "soap_param_groups",
    "spec_for_fixture",
]
