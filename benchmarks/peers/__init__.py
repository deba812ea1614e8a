"""Peer simulators measured side by side with hhjax on one standard workload.

Every adapter module (``numpy_euler``, ``scipy_odeint``, ``brian2_hh``, ``neuron_hh``,
``jaxley_hh``, ``brainpy_hh``) exposes::

    NAME: str
    available() -> bool
    version() -> str
    run(amplitudes, *, dt, t_max, record, repeats=1) -> dict

The workload (NEURON ``hh`` point neurons under current steps, resting start) is
defined in :mod:`benchmarks.peers._workload`; the result dict in
:mod:`benchmarks.peers._result`. Out of process: ``python -m benchmarks.peers NAME --n N
--record v --dt 0.025 --t-max 100 --json out.json`` (see ``__main__.py``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["PEERS", "get"]

PEERS: tuple[str, ...] = (
    "numpy_euler",
    "scipy_odeint",
    "brian2_hh",
    "neuron_hh",
    "jaxley_hh",
    "brainpy_hh",
)


def get(name: str) -> ModuleType:
    """The adapter module of peer ``name`` (imported lazily; the peer itself may be absent).

    Raises:
        ValueError: unknown peer name.
    """
    if name not in PEERS:
        raise ValueError(f"peer must be one of {PEERS}; got {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
