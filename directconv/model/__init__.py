"""The analytical model: (machine description, layer shape) -> kernel configuration, its reasons, a search space.

Pure functions: no I/O, no timing. Machine facts come from directconv.machines; formulas live here.
"""

from __future__ import annotations

from directconv.model.estimate import step_cycles, tile_efficiency
from directconv.model.plan import Plan, Reason, SearchSpace
from directconv.model.predict import estimate_config, predict, register_tiles, search_space, unpruned_space

__all__ = [
    "Plan",
    "Reason",
    "SearchSpace",
    "estimate_config",
    "predict",
    "register_tiles",
    "search_space",
    "step_cycles",
    "tile_efficiency",
    "unpruned_space",
]
