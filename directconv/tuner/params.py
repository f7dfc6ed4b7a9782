"""Map configurations of a search space to Optuna parameters and back.

Parameters are the configuration's own axes (vectors, wob, cib, unroll, split), so that TPE and CMA-ES can learn
how each one matters. The space is not a full product of those axes (the model cuts combinations), so a sampled
point that is not in the space snaps to the nearest configuration that is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from directconv.core.config import KernelConfig


def _cib(config: KernelConfig) -> str:
    return "all" if config.cib is None else str(config.cib)


def _split(config: KernelConfig) -> str:
    return f"{config.parallel}:{config.rows if config.rows is not None else 'all'}"


def config_params(config: KernelConfig) -> dict[str, Any]:
    return {
        "vectors": config.vectors,
        "wob": config.wob,
        "cib": _cib(config),
        "unroll": config.unroll,
        "split": _split(config),
    }


def config_key(config: KernelConfig) -> str:
    """A stable text key of everything that makes two configurations different measurements."""
    p = config_params(config)
    return f"{config.isa}/v{p['vectors']}/w{p['wob']}/cib{p['cib']}/u{p['unroll']}/{p['split']}/t{config.threads}"


class ParamSpace:
    def __init__(self, configs: Sequence[KernelConfig]) -> None:
        if not configs:
            raise ValueError("a search space needs at least one configuration")
        self.configs = list(configs)
        self.by_params = {tuple(sorted(config_params(c).items())): c for c in self.configs}
        values: dict[str, set] = {k: set() for k in config_params(self.configs[0])}
        for c in self.configs:
            for k, v in config_params(c).items():
                values[k].add(v)
        self.values = {k: sorted(v, key=lambda x: (isinstance(x, str), x)) for k, v in values.items()}
        self.distributions: dict[str, optuna.distributions.BaseDistribution] = {}
        for name in ("vectors", "wob"):
            lo, hi = min(values[name]), max(values[name])
            self.distributions[name] = optuna.distributions.IntDistribution(lo, max(hi, lo))
        for name in ("cib", "unroll", "split"):
            self.distributions[name] = optuna.distributions.CategoricalDistribution(self.values[name])

    def suggest(self, trial: optuna.trial.BaseTrial) -> KernelConfig:
        params: dict[str, Any] = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, optuna.distributions.IntDistribution):
                params[name] = trial.suggest_int(name, dist.low, dist.high)
            elif isinstance(dist, optuna.distributions.CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, dist.choices)
            else:
                raise TypeError(f"parameter {name!r}: expected an int or categorical distribution, got {dist!r}")
        return self.snap(params)

    def snap(self, params: dict[str, Any]) -> KernelConfig:
        """The configuration of the space at `params`, or the nearest one (register tile first, then the rest)."""
        exact = self.by_params.get(tuple(sorted(params.items())))
        if exact is not None:
            return exact

        def distance(c: KernelConfig) -> tuple:
            p = config_params(c)
            tile = abs(p["vectors"] - params["vectors"]) * 4 + abs(p["wob"] - params["wob"])
            rest = sum(p[k] != params[k] for k in ("cib", "unroll", "split"))
            return (tile, rest)

        return min(self.configs, key=distance)
