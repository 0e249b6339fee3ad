"""descend: research optimizers for PyTorch, each proven equal to its reference implementation.

* :mod:`descend.optim` — drop-in ``torch.optim.Optimizer`` implementations and their registry
  (depends on torch only).
"""

__version__ = "0.1.0.dev0"
