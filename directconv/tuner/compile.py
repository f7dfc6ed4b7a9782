"""The compile stage: build candidate kernels in parallel, before (never while) anything is timed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.kernels import compiler, generator, runtime

# Test-only fault injection: rewrites the generated source of a candidate before it is compiled.
SourceHook = Callable[[KernelConfig, str], str]


@dataclass(frozen=True)
class Built:
    library: Path | None
    error: str = ""


def compile_all(
    configs: Iterable[KernelConfig], shape: ConvShape, *, jobs: int | None = None, source_hook: SourceHook | None = None
) -> dict[tuple, Built]:
    """Build every distinct compiled variant among `configs`, keyed by KernelConfig.compile_key().

    Compilers are separate processes, so threads give real parallelism here. A failed build is a value.
    """
    variants: dict[tuple, KernelConfig] = {}
    for config in configs:
        variants.setdefault(config.compile_key(), config)

    def one(config: KernelConfig) -> Built:
        source = generator.generate(config, shape)
        if source_hook is not None:
            source = source_hook(config, source)
        try:
            return Built(runtime.build(config, shape, source))
        except compiler.CompileError as exc:
            return Built(None, str(exc))

    workers = jobs or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(one, variants.values())
        return dict(zip(variants.keys(), results, strict=True))
