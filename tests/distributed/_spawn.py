"""The tests' process launcher is the library's (:func:`descend.distributed.launch.spawn`)."""

from descend.distributed.launch import spawn

__all__ = ["spawn"]
