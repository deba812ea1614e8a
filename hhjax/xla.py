"""XLA compile options for hhjax's own compiled loops: 512-bit vectors on AVX-512 CPUs.

XLA's CPU compiler asks LLVM for 256-bit vectors by default (``xla_cpu_prefer_vector_
width = 256``), a safe choice for processors that slow their clock under 512-bit
instructions. The HH step is dense exp/divide arithmetic on contiguous float vectors,
and on a processor with AVX-512 twice the lanes per instruction pay: on this project's
2-core AMD EPYC (Zen 5) machine, 1e5 neurons with exact rates ran at 3.5-3.7e8
neuron-steps/s instead of 2.1-2.2e8 (spikes only; see ``benchmarks/README.md``).

The option is set per compiled function (``jax.jit(..., compiler_options=...)``), never
process-wide, and only on the CPU backend of a processor that has AVX-512. A user who
sets ``--xla_cpu_prefer_vector_width`` in ``XLA_FLAGS`` keeps their choice. Wrap your
own top-level functions (a loss and its gradient) in :func:`jit` to compile them the
same way; inside them, ``hhjax.simulate`` is part of your compilation.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["cpu_compiler_options", "jit"]

_OPTION = "xla_cpu_prefer_vector_width"


@functools.lru_cache(maxsize=1)
def _has_avx512() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def cpu_compiler_options() -> dict[str, str]:
    """The compile options hhjax adds on the CPU backend (empty when none apply)."""
    if _OPTION in os.environ.get("XLA_FLAGS", "") or not _has_avx512():
        return {}
    return {_OPTION: "512"}


def _top_level() -> bool:
    """Whether no JAX transformation is being traced (a nested jit cannot take options).

    Arguments alone do not tell: inside a user's ``jit`` they may all be constants.
    This reads JAX's trace context (no public API says it); should that move, the
    answer is False and hhjax compiles with XLA's defaults rather than fail.
    """
    try:
        from jax._src import core

        return bool(core.trace_ctx.is_top_level())
    except (ImportError, AttributeError):
        return False


def jit(fun: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fun, **kwargs)``, with :func:`cpu_compiler_options` when JAX runs on CPU.

    The backend is looked up at each call (it is not known at import), so the same
    function compiles with XLA's defaults on a GPU. Called inside another
    transformation (a user's ``jit``, ``grad``, ``vmap``), it is a plain nested
    ``jax.jit``: only the outermost compilation takes options.
    """
    plain = jax.jit(fun, **kwargs)
    options = cpu_compiler_options()
    if not options:
        return plain
    on_cpu = jax.jit(fun, compiler_options=options, **kwargs)

    def pick() -> Any:
        return on_cpu if _top_level() and jax.default_backend() == "cpu" else plain

    @functools.wraps(fun)
    def call(*args: Any, **kw: Any) -> Any:
        return pick()(*args, **kw)

    call.lower = lambda *args, **kw: pick().lower(*args, **kw)  # type: ignore[attr-defined]
    return call
