"""Built-in workloads (one module each) and the workload registry."""

from . import charlm, logreg, mnist1d, synthetic  # noqa: F401  (register the built-ins)
from .base import Task, Workload, available_workloads, get_workload, register_workload

__all__ = ["Task", "Workload", "available_workloads", "get_workload", "register_workload"]
