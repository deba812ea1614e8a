"""XLA compile options for hhjax's own compiled loops: 512-bit vectors on AVX-512 CPUs.

XLA's CPU compiler asks LLVM for 256-bit vectors by default (``xla_cpu_prefer_vector_
width = 256``), a safe choice for processors that slow their clock under 512-bit
instructions. The HH step is dense exp/divide arithmetic on contiguous float vectors,
and on a processor with a full-width AVX-512 unit twice the lanes per instruction pay:
on this project's 2-core AMD EPYC machine of the sessions that measured it (by this
gain, a Zen 5), 1e5 neurons with exact rates ran at 3.5-3.7e8 neuron-steps/s instead of
2.1-2.2e8 (spikes only; see ``benchmarks/README.md``). A Zen 4, which splits 512-bit
work in two halves, ran both widths alike (1e4 neurons: 145 against 141 ms), so 512
bits cost nothing there.

The option is set per compiled function (``jax.jit(..., compiler_options=...)``), never
process-wide, and only on the CPU backend of a processor that has AVX-512. A user who
sets ``--xla_cpu_prefer_vector_width`` in ``XLA_FLAGS`` keeps their choice. Wrap your
own top-level functions (a loss and its gradient) in :func:`jit` to compile them the
same way; inside them, ``hhjax.simulate`` is part of your compilation.

Small loops as one function (:func:`configure_loops`, applied at ``import hhjax``): XLA's
CPU runtime executes a loop body kernel by kernel, each a task of its own, unless the
loop touches fewer than ``xla_cpu_small_while_loop_byte_threshold`` bytes per iteration
(default 1024); then the whole loop is compiled as one function. One neuron's gradient
loop touched a few kB per step, so by default each of its 4000 steps ran ~36 separate
tasks: ``jax.grad`` took 6-9 ms against a 0.45 ms forward run; at 128 KiB, ~1 ms. (Since
the ExpLinear rates skip ``expm1``, one neuron's gradient loops fit under 1 kB; those of
8 neurons do not.)
hhjax sets 512 KiB, and sizes the tiles :func:`hhjax.simulate` cuts a population into
on a CPU by :func:`tile_bytes`, 128 KiB. 128 KiB takes in every loop of up to ~100
neurons and the forward loops of ~1e3 (1 MiB took in the 1e4-neuron loops and cost
10-25 % there; exact-rate tiles sized to 512 KiB ran 1e4 and 1e5 neurons no faster than
tiles of 128 KiB). The threshold itself is higher for the tabulated rates (``rates=
"table"``): XLA counts every table a step reads in full, 288 KB for the HH gates in
float32, so no loop of them was one function at 128 KiB. At 512 KiB the tables' loops
of up to ~1e3 neurons are, and larger populations run in tiles of 128 KiB of neurons
plus the tables (``benchmarks/README.md`` has the measurements). Loops above 128 KiB
that are not tiles (a differentiated population under an outer ``vmap``, a population
on one device) may now be one function too; the ones measured (an f-I curve, ``jax.
grad`` under ``vmap``, a forward run inside a user's ``jit``) ran alike at both.
The threshold is a backend option with no per-compilation form, so hhjax adds it to
``XLA_FLAGS`` when it is imported, and only when JAX has not started a backend yet (it
is read once), the user has not set it and ``HHJAX_XLA_FLAGS=0`` does not opt out. It
applies to every JAX computation of the process; :data:`loops_configured` says whether
it was set.

Compile once per machine (:func:`enable_compile_cache`, opt-in; the ``hhjax`` command
turns it on): JAX's persistent compilation cache keeps compiled programs on disk, so a
new process skips XLA's compile of a program it has seen (on this machine one neuron's
first call went from 0.30-0.34 s to 0.14-0.18 s).
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

__all__ = [
    "backends_started", "configure_loops", "cpu_compiler_options", "enable_compile_cache", "jit",
    "loop_bytes", "loops_configured", "tile_bytes",
]

_OPTION = "xla_cpu_prefer_vector_width"
_LOOP_OPTION = "xla_cpu_small_while_loop_byte_threshold"
_EXTRA = "--xla_backend_extra_options="
LOOP_BYTES = 1 << 19  # bytes touched per iteration below which a loop is one function
TILE_BYTES = 1 << 17  # bytes per iteration a population tile's neurons are sized to
loops_configured = False  # set by configure_loops() at import


def _with_loop_option(flags: str) -> str | None:
    """``flags`` (an ``XLA_FLAGS`` value) with the loop threshold added, or None when it
    is already there (the user's choice stands)."""
    if _LOOP_OPTION in flags:
        return None
    tokens = flags.split()
    entry = f"{_LOOP_OPTION}={LOOP_BYTES}"
    for i, token in enumerate(tokens):
        if token.startswith(_EXTRA):  # extend the user's own backend options
            tokens[i] = token + ("," if token != _EXTRA else "") + entry
            return " ".join(tokens)
    return " ".join([*tokens, _EXTRA + entry])


def loop_bytes() -> int:
    """The small-loop threshold in ``XLA_FLAGS`` (hhjax's or the user's), bytes; 0 if unset
    (XLA's default of 1 kB, too small for any population loop)."""
    for token in os.environ.get("XLA_FLAGS", "").split():
        if token.startswith(_EXTRA):
            for entry in token[len(_EXTRA):].split(","):
                key, _, value = entry.partition("=")
                if key == _LOOP_OPTION and value.isdigit():
                    return int(value)
    return 0


def tile_bytes() -> int:
    """Bytes per step the neurons of a population tile may touch: :data:`TILE_BYTES`, or
    the small-loop threshold when that is lower; 0 when it is unset (no tiles)."""
    return min(loop_bytes(), TILE_BYTES)


def backends_started() -> bool:
    """Whether JAX has started a backend (process-wide settings made now come too late)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # cannot tell: assume too late
        return True


def configure_loops() -> bool:
    """Add hhjax's small-loop threshold (see the module docstring) to ``XLA_FLAGS``.

    Returns True if it was added now. Does nothing when ``HHJAX_XLA_FLAGS=0``, when the
    flags already name the threshold, or when a JAX backend has started (too late: the
    flags are read once).
    """
    global loops_configured
    if os.environ.get("HHJAX_XLA_FLAGS", "1") == "0" or backends_started():
        return False
    flags = _with_loop_option(os.environ.get("XLA_FLAGS", ""))
    if flags is None:
        return False
    os.environ["XLA_FLAGS"] = flags
    loops_configured = True
    return True


def enable_compile_cache(directory: str | os.PathLike[str] | None = None) -> Path | None:
    """Keep compiled programs on disk (JAX's persistent cache) so new processes reuse them.

    Every program is cached, however fast it compiled (JAX's default skips those under
    1 s, which are most of hhjax's). Leaves a cache directory the user configured in
    JAX alone, and does nothing with ``HHJAX_COMPILE_CACHE=0``.

    Args:
        directory: where to keep them; default ``$XDG_CACHE_HOME/hhjax/xla`` (or
            ``~/.cache/hhjax/xla``).

    Returns:
        The directory in use, or None when hhjax did not set one.
    """
    if os.environ.get("HHJAX_COMPILE_CACHE") == "0" or jax.config.jax_compilation_cache_dir:
        return None
    if directory is None:
        directory = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "hhjax" / "xla"
    path = Path(directory).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


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


configure_loops()  # at import: the flags are read when the first JAX backend starts
