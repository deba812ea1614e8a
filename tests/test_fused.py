"""The GPU kernel (:mod:`hhjax.fused`) against XLA's scan.

On a machine without a GPU the kernel runs through Pallas's interpreter, which executes
the kernel's own program (its loops, loads, masked and scattered stores, padding of the
last block) with XLA's CPU arithmetic: results must equal the scan's. On a GPU the same
tests run the compiled kernel, where a fused multiply-add may round differently, hence
the tolerances.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hhjax
from hhjax import fused

ON_GPU = jax.default_backend() == "gpu"


def _atol(dtype: np.dtype) -> float:
    """mV. The interpreter: bitwise. A GPU contracts multiply-adds that XLA's scan may
    not; in float32 the difference grows on spike upstrokes (RK4, 1000 neurons x 4000
    steps on an H100: 0.034 mV, against 0.027 / 0.023 mV for kernel / scan from the
    float64 run; ``benchmarks/README.md``)."""
    if not ON_GPU:
        return 0.0
    return 0.1 if dtype == np.float32 else 1e-6


@pytest.fixture
def kernel() -> Iterator[None]:
    """Route ``simulate``'s forward runs through the kernel on any backend."""
    orig = fused.available
    fused.available = lambda cfg, platform: cfg.rates == "exact"
    try:
        yield
    finally:
        fused.available = orig


def _both(model: hhjax.Model, stimulus: Any, **kw: Any) -> tuple[hhjax.Trace, hhjax.Trace]:
    orig = fused.available
    fused.available = lambda cfg, platform: False
    try:
        ref = hhjax.simulate(model, stimulus, **kw)
    finally:
        fused.available = orig
    return ref, hhjax.simulate(model, stimulus, **kw)


def _assert_same(ref: hhjax.Trace, out: hhjax.Trace) -> None:
    flat_ref = jax.tree_util.tree_flatten_with_path(ref)[0]
    flat_out = jax.tree_util.tree_leaves(out)
    assert len(flat_ref) == len(flat_out)
    for (path, a), b in zip(flat_ref, flat_out, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        where = jax.tree_util.keystr(path)
        assert a.shape == b.shape and a.dtype == b.dtype, where
        if "spike_counts" in where:
            np.testing.assert_array_equal(b, a, err_msg=where)
        else:
            np.testing.assert_allclose(b, a, rtol=0.0, atol=_atol(a.dtype), err_msg=where)


@pytest.mark.parametrize("method", ["exp_euler", "rk4", "euler"])
def test_kernel_gives_the_scan_results(kernel: None, method: str, dtype: jnp.dtype) -> None:
    """A population (per-neuron g_Na and amplitudes, N not a multiple of the block),
    V every 3rd step with remainder steps and spikes: the same records, final state,
    max |V|, spike counts and times."""
    n = fused.BLOCK + 37 if ON_GPU else 45
    model = hhjax.set_params(hhjax.presets.neuron_hh(), {"na.g": np.linspace(100, 130, n)})
    stim = hhjax.stimulus.step_current(jnp.asarray(np.linspace(6, 20, n), dtype), 2.0)
    ref, out = _both(model, stim, dt=0.025, t_max=45.0, method=method,
                     record=("v", "spikes"), every=3, max_spikes=3)
    assert int(np.max(ref.spike_counts)) > 3  # some neurons overflowed the store of 3
    _assert_same(ref, out)


@pytest.mark.parametrize("record", ["gates", "currents", "spikes"])
def test_kernel_records_every_kind(kernel: None, record: str) -> None:
    """Gates and currents in the model's order (not the sorted order of its rebuilt
    pytree), spikes alone; a dense (N, n_steps) stimulus."""
    amps = np.linspace(5, 15, 20)
    stim = np.outer(amps, np.arange(600) >= 40).astype(np.float32)
    ref, out = _both(hhjax.presets.connor_stevens(), stim, dt=0.025, record=record)
    _assert_same(ref, out)


def test_kernel_runs_one_neuron(kernel: None) -> None:
    """One neuron (no population axis): the kernel as a population of one, shapes as
    the scan's; a shared stimulus over a population of models too."""
    model = hhjax.presets.squid()
    stim = hhjax.stimulus.step_current(10.0, 5.0)
    for record in ("v", "spikes"):
        _assert_same(*_both(model, stim, dt=0.025, t_max=30.0, record=record))
    pop = hhjax.set_params(model, {"k.g": np.linspace(30, 40, 9)})
    _assert_same(*_both(pop, stim.sample(0.025, 30.0), dt=0.025))


@pytest.mark.parametrize("time_major", [True, False])
def test_kernel_reuses_and_chunks(
    kernel: None, time_major: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records written into a reused trace's arrays (in place when written straight
    into (N, n_rec)), and a population in chunks; either way of writing records."""
    monkeypatch.setattr(fused, "TIME_MAJOR", time_major)
    model = hhjax.presets.neuron_hh()
    stim = hhjax.stimulus.step_current(jnp.asarray(np.linspace(8, 12, 30), jnp.float32), 2.0)
    kw = dict(dt=0.025, t_max=10.0)
    ref, first = _both(model, stim, **kw)
    again = hhjax.simulate(model, stim, reuse=first, **kw)
    _assert_same(ref, again)
    chunked = hhjax.simulate(model, stim, chunk_size=8, progress=False, **kw)
    _assert_same(ref, chunked)


def test_kernel_only_for_gpus_and_exact_rates() -> None:
    cfg = hhjax.simulate.__globals__["_Static"](
        method="exp_euler", record=("v",), every=1, checkpoint=False, max_spikes=0,
        rates="exact",
    )
    assert fused.available(cfg, "gpu") and fused.available(cfg, "cuda")
    assert not fused.available(cfg, "cpu")
    assert not fused.available(cfg._replace(rates="table"), "gpu")


def test_chunks_on_a_gpu_stay_in_host_memory(kernel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU, a population run in chunks (it did not fit) returns NumPy records
    instead of moving them back to the device in one piece; same values."""
    sim = importlib.import_module("hhjax.simulate")

    class Gpu:
        platform = "gpu"

    model = hhjax.presets.neuron_hh()
    stim = hhjax.stimulus.step_current(jnp.asarray(np.linspace(8, 12, 20), jnp.float32), 2.0)
    kw = dict(dt=0.025, t_max=10.0, chunk_size=8, progress=False)
    ref = hhjax.simulate(model, stim, **kw)
    monkeypatch.setattr(sim, "_committed_devices", lambda tree: (Gpu(),))
    out = hhjax.simulate(model, stim, **kw)
    assert isinstance(ref.v, jax.Array) and not isinstance(out.v, jax.Array)
    assert isinstance(out.v, np.ndarray)
    _assert_same(ref, out)


def test_a_population_past_the_spike_index_limit_runs_in_chunks(
    kernel: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's spike store is indexed with int32: a population whose store would
    pass 2**31 entries runs in chunks (here the limit is lowered to 40 neurons' worth)."""
    model = hhjax.presets.neuron_hh()
    stim = hhjax.stimulus.step_current(jnp.asarray(np.linspace(8, 12, 50), jnp.float32), 2.0)
    kw = dict(dt=0.025, t_max=30.0, record="spikes", max_spikes=4, progress=False,
              shard=False)  # (one device: the limit holds per device)
    ref = hhjax.simulate(model, stim, **kw)
    monkeypatch.setattr(fused, "BLOCK", 8)
    monkeypatch.setattr(fused, "INDEX_LIMIT", 40 * 4 + 1)
    calls = []
    run = fused.run
    monkeypatch.setattr(fused, "run", lambda *a, **k: calls.append(1) or run(*a, **k))
    out = hhjax.simulate(model, stim, **kw)
    assert fused.max_neurons(hhjax.simulate.__globals__["_Static"](
        method="exp_euler", record=(), every=1, checkpoint=False, max_spikes=4, rates="exact",
    )) == 32
    assert len(calls) == 2  # 50 neurons in chunks of 32 (two shapes, each traced once)
    _assert_same(ref, out)
