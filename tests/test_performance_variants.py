"""Fast paths give the plain simulation's answer: chunked, sharded, recording, tables.

Oracles: the plain (unchunked, unsharded, every-step) simulation itself for the layout
variants (equal up to float rounding: integers exactly, floats within a few ulps), the brute-force crossing finder on the dense trace for
spikes-only recording, and SciPy's Radau at rtol 1e-10 for the tabulated rates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import crossings, hh_solve

import hhjax
from hhjax import population

DT = 0.025


def _population(n: int, n_steps: int, dtype=None) -> tuple[hhjax.Model, jax.Array]:
    """NEURON-``hh`` population: a 10 uA/cm2-ish step at 5 ms, amplitudes 6..14."""
    t = np.arange(n_steps) * DT
    amp = np.linspace(6.0, 14.0, n)
    stim = jnp.asarray((t[None, :] >= 5.0) * amp[:, None], dtype or jnp.result_type(float))
    return hhjax.presets.neuron_hh(), stim


def _leaves(trace: hhjax.Trace) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(trace)]


def _assert_same(a: hhjax.Trace, b: hhjax.Trace) -> None:
    """Equal leaf by leaf: integers exactly, floats to a few ulps of rounding.

    XLA may contract a multiply-add into an FMA differently for another vector length
    (a chunk of 1 neuron against 5), so floats get a rounding-level tolerance.
    """
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        _close(x, y)


def _close(x: np.ndarray, y: np.ndarray) -> None:
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == y.shape and x.dtype == y.dtype
    if x.dtype.kind != "f":
        np.testing.assert_array_equal(x, y)
    else:
        # float32: an ulp of V, amplified along a spike's upstroke (dV/dt ~ 100 mV/ms)
        # over the run; float64 shows the layouts compute the same thing
        rtol, atol = (1e-3, 1e-2) if x.dtype == np.float32 else (1e-10, 1e-9)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_chunked_equals_plain(dtype, capsys):
    model, stim = _population(7, 600, dtype)
    rec = ("v", "gates", "spikes")
    plain = hhjax.simulate(model, stim, dt=DT, record=rec, shard=False)
    chunked = hhjax.simulate(model, stim, dt=DT, record=rec, shard=False, chunk_size=3)
    _assert_same(plain, chunked)
    assert plain.v.shape == (7, 601) and plain.v.dtype == dtype
    assert "3/3" in capsys.readouterr().err  # the progress line reached the last chunk
    # the chunks are written into one host array per output, which becomes a JAX array
    # without a copy (64-byte aligned); sharded chunks are copied shard by shard
    assert isinstance(chunked.v, jax.Array) and chunked.v.unsafe_buffer_pointer() % 64 == 0
    _assert_same(plain, hhjax.simulate(model, stim, dt=DT, record=rec, chunk_size=4))


def test_records_larger_than_memory_raise_before_running(monkeypatch):
    # chunks bound the working memory of a call, not the records it returns: records
    # that cannot be held at all are refused up front, with what to do instead (they
    # were run, and the process was killed for memory); records that can be held are
    # run in chunks sized to the memory they leave
    sim = sys.modules["hhjax.simulate"]
    model, stim = _population(12, 400, jnp.float32)
    plain = hhjax.simulate(model, stim, dt=DT, shard=False)
    outputs = 12 * 4 * (401 + 64)  # V and the per-neuron rest, float32
    calls, real_call = [], sim._call
    monkeypatch.setattr(sim, "_call", lambda *a: calls.append(a[2].shape) or real_call(*a))
    for free in (outputs // 2, outputs * 3 // 2):
        monkeypatch.setattr(population, "available_memory", lambda kept=True, host=False, f=free: f)
        monkeypatch.setattr(sim, "available_memory", population.available_memory)
        if free < outputs:
            with pytest.raises(MemoryError, match=r"records of 12 neurons need .*\(every=k\)"):
                hhjax.simulate(model, stim, dt=DT, shard=False)
            assert not calls
        else:
            _assert_same(plain, hhjax.simulate(model, stim, dt=DT, shard=False, progress=False))
            # chunks of a power of two within (free - outputs) / 2 (at least one neuron)
            assert len(calls) > 1 and all(c == (1, 400) for c in calls)


def test_population_model_chunked_and_state0(dtype):
    # population in the model (one g_Na per neuron), shared 1-D stimulus, given state0
    n = 5
    model = hhjax.set_params(hhjax.presets.neuron_hh(), {"na.g": np.linspace(90, 150, n)})
    stim = jnp.asarray((np.arange(500) * DT >= 2.0) * 10.0, dtype)
    rest = hhjax.resting_state(model)
    plain = hhjax.simulate(model, stim, dt=DT, state0=rest, shard=False)
    chunked = hhjax.simulate(model, stim, dt=DT, state0=rest, shard=False, chunk_size=2)
    _assert_same(plain, chunked)


def test_population_kernel_matches_traced_vmap_path():
    # concrete calls take the time-major population kernel; traced ones (user jit,
    # grad) the vmap of the single-neuron scan: same arithmetic, same numbers
    # (437 steps: the population kernel writes its records in blocks of 50 samples,
    # so this covers whole blocks and a partial last one, for every dense record)
    model, stim = _population(4, 437)
    rec = ("v", "gates", "currents")
    fast = hhjax.simulate(model, stim, dt=DT, shard=False, record=rec)
    traced = jax.jit(lambda s: hhjax.simulate(model, s, dt=DT, record=rec))(stim)
    assert fast.v.shape == (4, 438)
    _assert_same(fast, traced)
    np.testing.assert_allclose(np.asarray(fast.v), np.asarray(traced.v), rtol=0, atol=1e-4)
    single = hhjax.simulate(model, stim[2], dt=DT).v
    np.testing.assert_allclose(np.asarray(fast.v[2]), np.asarray(single), rtol=0, atol=1e-4)


@pytest.mark.parametrize("every", [1, 7, 10])
def test_every_kth_step_equals_plain_subsampled(every, dtype):
    model, stim = _population(3, 403, dtype)
    plain = hhjax.simulate(model, stim, dt=DT, record=("v", "gates"))
    sub = hhjax.simulate(model, stim, dt=DT, record=("v", "gates"), every=every)
    n_rec = 403 // every + 1
    assert sub.v.shape == (3, n_rec)  # memory follows what is recorded
    _close(sub.v, np.asarray(plain.v)[:, ::every][:, :n_rec])
    _close(sub.gates["na.m"], np.asarray(plain.gates["na.m"])[:, ::every][:, :n_rec])
    np.testing.assert_allclose(np.asarray(sub.t), np.asarray(plain.t)[::every][:n_rec])
    _assert_same_final(sub, plain)


def _assert_same_final(a: hhjax.Trace, b: hhjax.Trace) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a.final), jax.tree_util.tree_leaves(b.final),
                    strict=True):
        _close(x, y)
    _close(a.v_max, b.v_max)


def test_spikes_only_matches_crossings_of_the_dense_trace(dtype):
    n, n_steps = 6, 4003  # 100 ms, several spikes each; a remainder after the last block
    model, stim = _population(n, n_steps, dtype)
    dense = hhjax.simulate(model, stim, dt=DT)
    spk = hhjax.simulate(model, stim, dt=DT, record="spikes", max_spikes=16)
    assert spk.v is None and spk.t.shape == (0,)
    assert spk.spike_times.shape == (n, 16) and spk.spike_counts.shape == (n,)
    t = np.arange(n_steps + 1) * DT
    tol = 1e-9 if dtype == jnp.float64 else 2e-4
    for i in range(n):
        ref = crossings(t, np.asarray(dense.v[i], np.float64))
        assert int(spk.spike_counts[i]) == len(ref) >= 2
        got = np.asarray(spk.spike_times[i], np.float64)
        np.testing.assert_allclose(got[: len(ref)], ref, rtol=0, atol=tol)
        assert np.all(np.isnan(got[len(ref):]))
    _assert_same_final(spk, dense)


def test_spikes_only_in_half_precision():
    # float16 has no complex type: the tally runs in float32, the outputs stay float16
    model, stim = _population(4, 4000, jnp.float16)
    dense = hhjax.simulate(model, stim, dt=DT)
    spk = hhjax.simulate(model, stim, dt=DT, record="spikes", max_spikes=16)
    assert spk.spike_times.dtype == spk.v_max.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(spk.v_max), np.asarray(dense.v_max))
    t = np.arange(4001) * DT
    for i in range(4):
        ref = crossings(t, np.asarray(dense.v[i], np.float64))
        assert int(spk.spike_counts[i]) == len(ref) >= 1
        got = np.asarray(spk.spike_times[i, : len(ref)], np.float64)
        np.testing.assert_allclose(got, ref, rtol=0, atol=0.07)  # float16 spacing at 100 ms


def test_spike_buffer_overflow_keeps_counting():
    model, stim = _population(2, 4000)
    spk = hhjax.simulate(model, stim, dt=DT, record="spikes", max_spikes=2)
    dense = hhjax.simulate(model, stim, dt=DT)
    t = np.arange(4001) * DT
    ref = crossings(t, np.asarray(dense.v[1], np.float64))
    assert int(spk.spike_counts[1]) == len(ref) > 2
    np.testing.assert_allclose(np.asarray(spk.spike_times[1]), ref[:2], atol=2e-4)


def test_one_neurons_spike_store_equals_its_row_of_a_population():
    # one neuron alone writes each block's times in place into a store with spare
    # slots (simulate._carry0); a population selects slots. Same counts and times, past
    # max_spikes too (3: a block's second time lands in a spare slot), concrete, inside
    # jit and under jax.grad (no lanes there)
    max_spikes = 3
    model, stim = _population(2, 4003)
    kw = dict(dt=DT, record="spikes", max_spikes=max_spikes)
    pop = hhjax.simulate(model, stim, **kw)
    assert int(pop.spike_counts[1]) > 3
    one = hhjax.simulate(model, stim[1], **kw)
    jitted = jax.jit(lambda s: hhjax.simulate(model, s, **kw).spike_times)(stim[1])

    def first_time(g: jax.Array) -> tuple[jax.Array, hhjax.Trace]:
        tr = hhjax.simulate(hhjax.set_params(model, {"na.g": g}), stim[1], **kw)
        return tr.spike_times[0], tr

    def pop_first_time(g: jax.Array) -> jax.Array:
        m = hhjax.set_params(model, {"na.g": g})
        return hhjax.simulate(m, stim, **kw).spike_times[1, 0]

    grad, traced = jax.grad(first_time, has_aux=True)(120.0)
    assert one.spike_times.shape == (max_spikes,)
    assert float(grad) == pytest.approx(float(jax.grad(pop_first_time)(120.0)), rel=1e-4)
    for tr in (one, traced):
        assert int(tr.spike_counts) == int(pop.spike_counts[1])
    for times in (one.spike_times, jitted, traced.spike_times):
        np.testing.assert_allclose(np.asarray(times), np.asarray(pop.spike_times[1]),
                                   rtol=0, atol=2e-5)  # float32 rounding of other programs


def test_spikes_with_dense_recording():
    model, stim = _population(2, 2000)
    both = hhjax.simulate(model, stim, dt=DT, record=("v", "spikes"), every=20)
    t = np.arange(2001) * DT
    dense = hhjax.simulate(model, stim, dt=DT)
    ref = crossings(t, np.asarray(dense.v[0], np.float64))
    assert int(both.spike_counts[0]) == len(ref)
    np.testing.assert_allclose(np.asarray(both.spike_times[0, : len(ref)]), ref, atol=2e-4)
    _close(both.v, np.asarray(dense.v)[:, ::20])


def test_spikes_only_times_are_differentiable():
    # d(spike times)/d(g_Na) through the spikes-only tally, against central differences
    with jax.enable_x64(True):
        model, stim = _population(2, 1600, jnp.float64)  # 40 ms: 2+ spikes each

        def first_two(g: jax.Array) -> jax.Array:
            m = hhjax.set_params(model, {"na.g": g})
            tr = hhjax.simulate(m, stim, dt=DT, record="spikes", max_spikes=4)
            return tr.spike_times[:, :2]

        times = np.asarray(first_two(120.0))
        assert np.isfinite(times).all()
        grad = float(jax.grad(lambda g: jnp.sum(first_two(g)))(120.0))
        h = 1e-4
        fd = float(jnp.sum(first_two(120.0 + h) - first_two(120.0 - h))) / (2 * h)
        assert grad < 0  # more sodium: earlier spikes
        assert grad == pytest.approx(fd, rel=1e-6)


def _spike_error(trace_times: np.ndarray, ref: np.ndarray) -> float:
    assert len(trace_times) == len(ref)
    return float(np.max(np.abs(trace_times - ref)))


def test_table_rates_as_accurate_as_exact_against_scipy():
    # squid model, 10 uA/cm2 from 5 ms: spike times vs Radau at rtol 1e-10
    t_max, amp = 60.0, 10.0
    model = hhjax.presets.squid()
    stim = hhjax.stimulus.step_current(amp, 5.0)
    t_fine = np.arange(0.0, t_max + 1e-9, 0.001)
    ref = crossings(t_fine, hh_solve(lambda t: amp if t >= 5.0 else 0.0, t_max, t_fine))
    assert len(ref) >= 3
    with jax.enable_x64(True):
        errs = {}
        for rates in ("exact", "table"):
            tr = hhjax.simulate(model, stim, dt=DT, t_max=t_max, rates=rates, record="spikes")
            times = np.asarray(tr.spike_times)[: int(tr.spike_counts)]
            errs[rates] = _spike_error(times, ref)
    assert errs["exact"] > 1e-3  # the dt error is visible (the test can tell)
    assert errs["table"] <= 1.05 * errs["exact"], errs


def test_table_rates_close_to_exact_and_differentiable():
    model, stim = _population(3, 1200)
    exact = hhjax.simulate(model, stim, dt=DT, record=("v", "spikes"))
    table = hhjax.simulate(model, stim, dt=DT, record=("v", "spikes"), rates="table")
    np.testing.assert_array_equal(np.asarray(exact.spike_counts), np.asarray(table.spike_counts))
    assert int(exact.spike_counts.min()) >= 1
    np.testing.assert_allclose(  # spike times agree to 0.01 ms (dt / 2.5)
        np.asarray(table.spike_times), np.asarray(exact.spike_times), atol=1e-2, equal_nan=True
    )
    assert float(jnp.mean(jnp.abs(exact.v - table.v))) < 0.01  # mV

    def loss(g_na: jax.Array, rates: str) -> jax.Array:
        m = hhjax.set_params(model, {"na.g": g_na})
        return jnp.mean(hhjax.simulate(m, stim[0, :400], dt=DT, rates=rates).v)

    g_exact = jax.grad(loss)(120.0, "exact")
    g_table = jax.grad(loss)(120.0, "table")
    assert np.isfinite(float(g_table)) and float(g_table) != 0.0
    np.testing.assert_allclose(float(g_table), float(g_exact), rtol=0.05)


def test_table_rates_gradient_reaches_rate_parameters():
    model, stim = _population(1, 300)

    def loss(mid: jax.Array) -> jax.Array:
        m = hhjax.set_params(model, {"na.m.alpha.midpoint": mid})
        return jnp.mean(hhjax.simulate(m, stim[0], dt=DT, rates="table").v)

    g = float(jax.grad(loss)(-40.0))
    h = 1e-2
    fd = (float(loss(-40.0 + h)) - float(loss(-40.0 - h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=0.05)


def test_validation_of_new_options():
    model, stim = _population(2, 100)
    with pytest.raises(ValueError, match="rates must be one of"):
        hhjax.simulate(model, stim, dt=DT, rates="lut")
    with pytest.raises(ValueError, match="needs method='exp_euler'"):
        hhjax.simulate(model, stim, dt=DT, rates="table", method="rk4")
    varied = hhjax.set_params(model, {"na.m.alpha.midpoint": np.array([-40.0, -41.0])})
    with pytest.raises(ValueError, match="gate kinetics shared"):
        hhjax.simulate(varied, stim, dt=DT, rates="table")
    with pytest.raises(ValueError, match="max_spikes"):
        hhjax.simulate(model, stim, dt=DT, record="spikes", max_spikes=0)
    with pytest.raises(ValueError, match="chunk_size"):
        hhjax.simulate(model, stim, dt=DT, chunk_size=0)
    with pytest.raises(ValueError, match="threshold"):
        hhjax.simulate(model, stim, dt=DT, record="spikes", threshold=float("nan"))


def test_reuse_writes_records_in_place_with_the_same_results():
    # a population that splits evenly over the CPU devices (one per core): no padding
    n = 2 * jax.local_device_count()
    model, stim = _population(n, 400, jnp.float32)
    kw = dict(dt=DT, record=("v", "gates", "currents"), every=3)
    first = hhjax.simulate(model, stim, **kw)
    ref = [np.array(x) for x in jax.tree_util.tree_leaves(first)]  # copies, not views
    second = hhjax.simulate(model, stim, reuse=first, **kw)
    for x, y in zip(ref, _leaves(second), strict=True):
        np.testing.assert_array_equal(x, y)  # the same program: bit for bit
    assert first.v.is_deleted() and first.currents["na"].is_deleted()  # donated
    with pytest.raises(ValueError, match="already donated"):
        hhjax.simulate(model, stim, reuse=first, **kw)
    with pytest.raises(ValueError, match=rf"reuse\['v'\] has shape \({n}, 134\)"):
        hhjax.simulate(model, stim, dt=DT, reuse=second)  # every step: (n, 401)
    with pytest.raises(ValueError, match="not a recorded array"):
        hhjax.simulate(model, stim, reuse=hhjax.simulate(model, stim, dt=DT), **kw)
    other_model = hhjax.presets.connor_stevens()  # other gates, same shapes
    with pytest.raises(ValueError, match=r"reuse.gates has keys"):
        hhjax.simulate(other_model, stim, reuse=second, **kw)
    with pytest.raises(TypeError, match="reuse must be a hhjax.Trace"):
        hhjax.simulate(model, stim, dt=DT, reuse=np.zeros((n, 401)))
    # where the records cannot be written in place (one neuron, chunks), it stays intact
    one = hhjax.simulate(model, stim[0], dt=DT)
    hhjax.simulate(model, stim[0], dt=DT, reuse=one)
    chunked = hhjax.simulate(model, stim, dt=DT, chunk_size=2)
    again = hhjax.simulate(model, stim, dt=DT, chunk_size=2, reuse=chunked)
    assert not one.v.is_deleted() and not chunked.v.is_deleted()
    np.testing.assert_array_equal(np.asarray(chunked.v), np.asarray(again.v))
    # a record still viewed from NumPy is not overwritten: JAX copies instead of donating
    view = np.asarray(again.v)
    other = hhjax.simulate(model, 0.5 * stim, dt=DT, reuse=again)  # other values
    np.testing.assert_array_equal(view, np.asarray(chunked.v))
    assert not np.array_equal(view, np.asarray(other.v))


def _tiled_and_plain(monkeypatch, model, stim, tile: int, **kw):
    """The same run with the population in tiles of ``tile`` and in one piece."""
    sim = sys.modules["hhjax.simulate"]
    ran = []
    run_tiles = sim._run_tiles
    monkeypatch.setattr(sim, "_run_tiles", lambda *a: ran.append(1) or run_tiles(*a))
    monkeypatch.setattr(sim, "_tile_size", lambda *a: tile)
    tiled = hhjax.simulate(model, stim, dt=DT, **kw)
    assert ran, "the tiled path did not run"
    monkeypatch.setattr(sim, "_tile_size", lambda *a: 0)
    return tiled, hhjax.simulate(model, stim, dt=DT, shard=False, **kw)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_tiles_give_the_results_of_one_piece(monkeypatch, dtype):
    # 203 neurons over the devices, in tiles of 48: the last tile of each shard overlaps
    # the one before it; per-neuron g_Na, a dense stimulus and an initial state per neuron
    n = 203
    with jax.enable_x64(dtype == jnp.float64):
        model, stim = _population(n, 400, dtype)
        model = hhjax.set_params(model, {"na.g": np.linspace(100.0, 140.0, n)})
        rest = hhjax.resting_state(hhjax.presets.neuron_hh())
        state0 = jax.tree_util.tree_map(lambda x: jnp.full(n, x, dtype), rest)
        state0 = state0._replace(v=state0.v + jnp.linspace(-5.0, 5.0, n, dtype=dtype))
        kw = dict(record=("v", "gates", "currents"), every=3, state0=state0)
        tiled, plain = _tiled_and_plain(monkeypatch, model, stim, 48, **kw)
        _assert_same(tiled, plain)
        tiled, plain = _tiled_and_plain(monkeypatch, model, stim, 48, record="spikes")
        _assert_same(tiled, plain)
        assert int(np.sum(plain.spike_counts)) >= n  # every neuron spikes
        if dtype == jnp.float64:  # (the stimulus kinds and tables: in float32)
            return
        step = hhjax.stimulus.step_current(jnp.asarray(np.linspace(6, 14, n), dtype), 5.0)
        tiled, plain = _tiled_and_plain(monkeypatch, model, step, 48, t_max=10.0)  # factored
        _assert_same(tiled, plain)
        tiled, plain = _tiled_and_plain(monkeypatch, model, stim[-1], 48, every=7)  # shared
        _assert_same(tiled, plain)
        for record in ("v", "spikes"):  # tabulated rates: the tables shared by the tiles
            tiled, plain = _tiled_and_plain(
                monkeypatch, model, stim, 48, rates="table", record=record
            )
            _assert_same(tiled, plain)


@pytest.mark.parametrize("preset, dtype, record, rates, method", [
    ("neuron_hh", "float32", "v", "exact", "exp_euler"),
    ("connor_stevens", "float32", "spikes", "exact", "exp_euler"),
    ("neuron_hh", "float64", ("v", "gates", "currents"), "exact", "exp_euler"),
    ("neuron_hh", "float32", "spikes", "table", "exp_euler"),
    ("neuron_hh", "float32", ("v", "gates", "currents"), "table", "exp_euler"),
    ("connor_stevens", "float32", "spikes", "table", "exp_euler"),
    ("connor_stevens", "float32", "v", "exact", "rk4"),
    ("neuron_hh", "float64", "spikes", "exact", "rk4"),
])
def test_tile_size_keeps_the_tile_loop_one_function(
    monkeypatch, preset, dtype, record, rates, method
):
    # the point of a tile: XLA compiles its time loop as one function (an
    # ``xla_cpu_small_call``); the size formula must stay under XLA's threshold, the
    # tables included (tests/test_xla.py runs this at a threshold of the tile budget)
    sim = sys.modules["hhjax.simulate"]
    if not hhjax.xla.loop_bytes():
        pytest.skip("hhjax's small-loop threshold is not set in this process")
    entry, texts = sim._entry, []

    def compiled(*args, **kw):
        c = entry.lower(*args, **kw).compile()
        texts.append(c.as_text())
        return c(*args)

    tile_size = sim._tile_size
    sizes = []
    monkeypatch.setattr(sim, "_tile_size", lambda m, c, d, n, k: sizes.append(
        tile_size(m, c, d, n, population.cores())) or sizes[-1])
    monkeypatch.setattr(sim, "_entry", compiled)
    with jax.enable_x64(dtype == "float64"):
        model = getattr(hhjax.presets, preset)()
        amps = jnp.asarray(np.linspace(6.0, 14.0, 4096), dtype)
        stim = hhjax.stimulus.step_current(amps, 5.0)
        hhjax.simulate(
            model, stim, dt=DT, t_max=5.0, record=record, shard=False, rates=rates, method=method
        )
        fits = hhjax.xla.loop_bytes() - hhjax.tables.table_bytes(model, dtype) > 0
    if rates == "table" and not fits:
        assert sizes == [0]
        pytest.skip("the tables alone exceed this process's small-loop threshold")
    if sizes == [0]:  # (RK4 at a threshold of the tile budget: tests/test_xla.py)
        assert hhjax.xla.loop_bytes() < hhjax.xla.LOOP_BYTES, "no tiles at hhjax's threshold"
        pytest.skip("not even the smallest tile stays under this process's threshold")
    assert 128 <= sizes[0] < 4096
    # whole 512-bit vectors of float32 (no scalar remainder loop), at the cost of fewer
    # than 16 neurons computed twice per tile
    n_tiles = -(-4096 // sizes[0])
    assert sizes[0] % 16 == 0 and n_tiles * sizes[0] - 4096 < 16 * n_tiles
    assert _loops_outside_small_calls(texts[0], innermost=True) == []


def _grad_tiled_and_plain(monkeypatch, fn, *args):
    """``jax.jit(fn)(*args)`` with a differentiated population in tiles of 48 and in one
    ``vmap``."""
    sim = sys.modules["hhjax.simulate"]
    sizes = []
    monkeypatch.setattr(sim, "_grad_tile", lambda m, cfg, d, n, k: sizes.append(n) or 48)
    tiled = jax.jit(lambda *a: fn(*a))(*args)  # a new function: a cache of its own
    assert sizes, "the tiled path did not run"
    monkeypatch.setattr(sim, "_grad_tile", lambda *a: 0)
    return tiled, jax.jit(lambda *a: fn(*a))(*args)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_differentiated_tiles_give_the_results_of_one_vmap(monkeypatch, dtype):
    # under jax.jvp / jax.grad a population runs in tiles (padded: 203 = 4 x 48 + 11),
    # here with per-neuron g_Na and initial states: values as in one vmap (to rounding),
    # tangents and gradients to rounding; a forward run inside jit keeps the vmap
    n = 203
    sim = sys.modules["hhjax.simulate"]
    with jax.enable_x64(dtype == jnp.float64):
        model, stim = _population(n, 400, dtype)
        g_na = jnp.linspace(100.0, 140.0, n, dtype=dtype)
        rest = hhjax.resting_state(model)
        state0 = jax.tree_util.tree_map(lambda x: jnp.full(n, x, dtype), rest)
        state0 = state0._replace(v=state0.v + jnp.linspace(-5.0, 5.0, n, dtype=dtype))

        def run(g_na, g_k, stim, record, every=1):
            m = hhjax.set_params(model, {"na.g": g_na, "k.g": g_k})
            return hhjax.simulate(m, stim, dt=DT, state0=state0, record=record, every=every)

        tol = 1e-5 if dtype == jnp.float32 else 1e-12

        def close(x, y, tol=tol):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol * float(jnp.max(jnp.abs(y))))

        # float32 derivatives: the vmap's own differ from float64 ones by up to 1.8e-4
        # (tangents, spikes) and 3e-4 (gradient) of their scale here, so rounding in
        # another order may move them 1e-4 (tiles against vmap: 1.75e-5, last neuron)
        t_tol = 1e-4 if dtype == jnp.float32 else tol

        # (float32 runs the first of each: both dtypes take the same path)
        f32 = dtype == jnp.float32
        kws = (dict(record=("v", "gates", "currents"), every=3), dict(record="spikes"))
        for kw in kws[:1] if f32 else kws:
            def jvp(g, k, s, kw=kw):
                return jax.jvp(lambda g: run(g, k, s, **kw), (g,), (jnp.ones_like(g),))

            (tiled, d_tiled), (plain, d_plain) = _grad_tiled_and_plain(
                monkeypatch, jvp, g_na, 36.0, stim
            )
            _assert_same(tiled, plain)
            for x, y in zip(_leaves(d_tiled), _leaves(d_plain), strict=True):
                if x.dtype.kind == "f" and x.size:  # (not the float0 of integers, not empty t)
                    close(x, y, t_tol)
        if not f32:
            assert int(np.sum(plain.spike_counts)) >= n  # every neuron spikes

        def loss(g_na, g_k, stim, checkpoint=False):  # a shared 1-D stimulus
            m = hhjax.set_params(model, {"na.g": g_na, "k.g": g_k})
            v = hhjax.simulate(m, stim, dt=DT, state0=state0, checkpoint=checkpoint).v
            return jnp.mean((v + 60.0) ** 2)

        for checkpoint in (False,) if f32 else (False, True):
            vg = jax.value_and_grad(lambda *a, c=checkpoint: loss(*a, c), argnums=(0, 1, 2))
            tiled, plain = _grad_tiled_and_plain(monkeypatch, vg, g_na, 36.0, stim[-1])
            close(tiled[0], plain[0])  # the loss
            for x, y in zip(*map(jax.tree_util.tree_leaves, (tiled[1], plain[1])), strict=True):
                close(x, y, t_tol)
            assert float(jnp.min(jnp.abs(tiled[1][0]))) > 0  # every neuron's g_Na matters
        monkeypatch.setattr(sim, "_grad_tile", lambda *a: pytest.fail("tiles"))
        jax.jit(lambda g: loss(g, 36.0, stim[-1]))(g_na)  # a forward run: one vmap
        # under an outer vmap (here over two g_K) the loops would hold both copies
        jax.vmap(jax.grad(loss), in_axes=(None, 0, None))(g_na, jnp.asarray([30.0, 36.0]), stim[-1])


def test_differentiated_tiles_with_a_factored_stimulus(monkeypatch):
    # a step current with an amplitude per neuron: shared time profiles, weights split
    n = 100
    amps = jnp.asarray(np.linspace(6.0, 14.0, n), jnp.float32)
    model = hhjax.presets.neuron_hh()

    def run(amps):
        stim = hhjax.stimulus.step_current(amps, 5.0)
        return hhjax.simulate(model, stim, dt=DT, t_max=10.0, every=7)

    (tiled, d_tiled), (plain, d_plain) = _grad_tiled_and_plain(
        monkeypatch, lambda a: jax.jvp(run, (a,), (jnp.ones_like(a),)), amps
    )
    _assert_same(tiled, plain)
    np.testing.assert_allclose(d_tiled.v, d_plain.v, rtol=1e-5, atol=1e-5)


def test_differentiated_population_split_over_devices_equals_one_device(monkeypatch):
    # under jax.grad a population of at least a smallest tile per device is split over
    # the CPU devices (203 neurons: padded to a multiple of the device count with copies
    # of the last neuron, which get no cotangent): loss, gradients w.r.t. a per-neuron
    # and a shared conductance and the stimulus, and spike counts as on one device
    n_dev = jax.local_device_count()
    if n_dev < 2:
        pytest.skip("one device (the four-device run below splits its gradient too)")
    n = 203
    sim = sys.modules["hhjax.simulate"]
    assert sim._grad_devices(None, n, 400) == ()  # a short run stays on one device...
    monkeypatch.setattr(sim, "_GRAD_SPLIT_FROM", n * 400)  # ...unless this is its length
    model, stim = _population(n, 400, jnp.float32)
    g_na = jnp.linspace(100.0, 140.0, n, dtype=jnp.float32)

    def loss(g_na, g_k, stim, shard):
        m = hhjax.set_params(model, {"na.g": g_na, "k.g": g_k})
        tr = hhjax.simulate(m, stim, dt=DT, record=("v", "spikes"), shard=shard)
        return jnp.mean((tr.v + 60.0) ** 2), tr.spike_counts

    runs = [
        jax.jit(jax.value_and_grad(lambda *a, s=s: loss(*a, s), argnums=(0, 1, 2), has_aux=True))(
            g_na, jnp.float32(36.0), stim
        )
        for s in (True, False)
    ]
    (split, counts), grads = runs[0]
    assert {len(g.sharding.device_set) for g in grads} == {n_dev}  # it ran on every device
    assert {len(g.sharding.device_set) for g in runs[1][1]} == {1}
    np.testing.assert_array_equal(counts, runs[1][0][1])
    assert int(np.min(counts)) >= 1  # every neuron spikes
    np.testing.assert_allclose(split, runs[1][0][0], rtol=1e-6)
    for x, y in zip(grads, runs[1][1], strict=True):  # to rounding (other tiles, sums)
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(y))))
    assert float(jnp.min(jnp.abs(grads[0]))) > 0  # the last neuron's too


def test_a_population_runs_where_its_committed_arrays_are():
    # an array placed on one device with jax.device_put keeps the run there (a program
    # over every device would fail: "incompatible devices"); the record pool keeps the
    # buffers of a run over every device apart from those of a run on one
    model, stim = _population(200, 400, jnp.float32)
    device = jax.local_devices()[-1]
    plain = hhjax.simulate(model, stim, dt=DT)
    one = hhjax.simulate(model, stim, dt=DT, shard=False)
    for _ in range(2):  # the second call takes its buffers from the record pool
        placed = hhjax.simulate(model, jax.device_put(stim, device), dt=DT)
        assert placed.v.sharding.device_set == {device}
        _assert_same(placed, one)
    _assert_same(plain, one)

    def loss(g_na, stim):
        v = hhjax.simulate(hhjax.set_params(model, {"na.g": g_na}), stim, dt=DT).v
        return jnp.mean((v + 60.0) ** 2)

    g = jax.grad(loss)(jax.device_put(jnp.float32(120.0), device), jax.device_put(stim, device))
    assert g.sharding.device_set == {device}
    np.testing.assert_allclose(g, jax.grad(loss)(jnp.float32(120.0), stim), rtol=1e-5)


def _loops_outside_small_calls(text: str, innermost: bool = False) -> list[int]:
    """Trip counts of the while loops in compiled HLO that are not inside an
    ``xla_cpu_small_call`` (loops XLA runs kernel by kernel); -1 when not known.
    ``innermost``: only loops with no loop inside them (the loops over time steps)."""
    comps: dict[str, list[str]] = {}
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if head:
            comps[head.group(1)] = lines = []
        elif comps:
            lines.append(line)

    def callees(name: str, seen: set[str]) -> set[str]:
        for line in comps.get(name, []):
            for m in re.finditer(r"(?:to_apply|body|condition|calls)=%?([\w.\-]+)", line):
                if m.group(1) not in seen:
                    seen.add(m.group(1))
                    callees(m.group(1), seen)
        return seen

    small: set[str] = set()
    for lines in comps.values():
        for line in lines:
            m = re.search(r"to_apply=%?([\w.\-]+)", line)
            if m and "xla_cpu_small_call" in line:
                small |= callees(m.group(1), {m.group(1)})
    trips = []
    for name, lines in comps.items():
        for line in lines:
            if " while(" not in line or name in small:
                continue
            body = re.search(r"body=%?([\w.\-]+)", line).group(1)
            inner = callees(body, {body})
            if innermost and any(" while(" in x for c in inner for x in comps.get(c, [])):
                continue
            m = re.search(r'known_trip_count":\{"n":"(\d+)"', line)
            trips.append(int(m.group(1)) if m else -1)
    return trips


@pytest.mark.parametrize("preset, dtype, record, n_free", [
    ("neuron_hh", "float32", "v", 1),
    ("neuron_hh", "float32", ("v", "gates", "currents"), 8),
    ("connor_stevens", "float32", "v", 8),
    ("neuron_hh", "float64", "v", 1),
])
def test_gradient_tile_size_keeps_the_gradient_loops_one_function(preset, dtype, record, n_free):
    # jax.grad of a traced population: the tile size formula keeps the loops over the
    # tiles' steps, forward and backward, under XLA's small-loop threshold
    if not hhjax.xla.loop_bytes():
        pytest.skip("hhjax's small-loop threshold is not set in this process")
    sim = sys.modules["hhjax.simulate"]
    n, n_steps = 500, 100
    with jax.enable_x64(dtype == "float64"):
        model = getattr(hhjax.presets, preset)()
        params = hhjax.get_params(model)
        free = sorted(params, key=lambda p: not p.endswith(".g"))[:n_free]
        stim = jnp.asarray(np.linspace(6.0, 14.0, n)[:, None] * np.ones(n_steps), dtype)

        def loss(p: dict, stim: jax.Array) -> jax.Array:
            tr = hhjax.simulate(hhjax.set_params(model, p), stim, dt=DT, record=record)
            return sum(jnp.sum(x ** 2) for x in jax.tree_util.tree_leaves((tr.v, tr.gates, tr.currents)))

        p = {k: jnp.asarray(params[k], dtype) for k in free}
        cfg = sim._Static("exp_euler", tuple(np.atleast_1d(record)), 1, False, 0, "exact")
        devices = sim._grad_devices(stim, n, n_steps)  # (CPU devices, one per core)
        n_local = -(-n // max(1, len(devices)))  # neurons per device
        tile = sim._grad_tile(model, cfg, np.dtype(dtype), n_local, n_free)
        assert tile >= 48
        text = jax.jit(jax.grad(loss)).lower(p, stim).compile().as_text()
    n_tiles = -(-n_local // tile)
    trips = re.findall(r'known_trip_count":\{"n":"(\d+)"', text)
    # the tiles' steps and each tile's hand-over iteration, forward and backward
    assert trips.count(str(n_tiles * (n_steps + 1))) == 2
    if record == "v":  # per step, the forward stores the state and V, not the current too
        stacked = f"[{n_tiles * (n_steps + 1)},{tile}]"
        writes = [
            line for line in text.splitlines()
            if " fusion(" in line and "dynamic-update-slice" in line
            and stacked in line.split("=")[1].split("fusion(")[0]
        ]
        # (split over devices, JAX's partial evaluation of shard_map passes the record
        # of V to the backward pass as its V: one array, not two)
        assert len(writes) == 1 + len(model.gate_names) + (0 if devices else 1)
    assert _loops_outside_small_calls(text) == []


@pytest.mark.parametrize("method, record", [
    ("exp_euler", "v"), ("euler", "v"), ("exp_euler", "spikes"),
])
def test_one_neuron_program_runs_as_one_function(monkeypatch, method, record):
    # simulate._once: a one-neuron call keeps all of its work in one loop that XLA
    # compiles as one function, so that at most 9 thunks are left at the top (XLA then
    # runs them in sequence), and its cost estimate stays under the 1000 flops below
    # which XLA runs a program on the calling thread; and its results are those of the
    # same program without _once, bit for bit
    sim = sys.modules["hhjax.simulate"]
    if not hhjax.xla.loop_bytes():
        pytest.skip("hhjax's small-loop threshold is not set in this process")
    entry, programs = sim._entry, []

    def compiled(*args, **kw):
        programs.append(entry.lower(*args, **kw).compile())
        return programs[-1](*args)

    monkeypatch.setattr(sim, "_entry", compiled)
    model = hhjax.presets.neuron_hh()
    kw = dict(dt=DT, t_max=100.0, method=method, record=record)
    alone = hhjax.simulate(model, hhjax.stimulus.step_current(10.0, 10.0), **kw)
    (program,) = programs
    cost = program.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost["flops"] < 1000
    text = program.as_text()
    top = text[text.index("ENTRY"):].split("\n}")[0].splitlines()
    thunks = [line for line in top if re.search(r"\b(fusion|copy|call|while|custom-call)\(", line)]
    assert len(thunks) <= 9, thunks  # (8 with V recorded; spikes: one more output)
    assert sum("xla_cpu_small_call" in line for line in thunks) == 1

    monkeypatch.setattr(sim, "_once", lambda run, packed: run(packed))
    jax.clear_caches()  # trace _entry anew
    plain = hhjax.simulate(model, hhjax.stimulus.step_current(10.0, 10.0), **kw)
    assert len(programs) == 2
    monkeypatch.undo()
    jax.clear_caches()  # later tests in this process get the program with _once again
    for a, b in zip(jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(plain), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_import_gives_one_cpu_device_per_core():
    here = os.path.dirname(os.path.abspath(__file__))
    code = "import jax, hhjax; print(jax.local_device_count(), hhjax.population.cores())"
    counts = []
    for extra in ({}, {"HHJAX_CPU_DEVICES": "1"}):
        env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HHJAX_CPU_DEVICES")}
        env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        counts.append(tuple(int(x) for x in out.stdout.split()))
    (devices, cores), (opted_out, _) = counts
    assert devices == cores and opted_out == 1


def test_cpu_devices_not_changed_after_backend_start():
    jax.devices()  # the backend is up in this process
    assert population.enable_cpu_devices(4) is False


def test_chunk_size_from_budget():
    assert population.chunk_size(1000, 10, budget=10**9) == 1000
    assert population.chunk_size(1000, 10, budget=2000, multiple=4) == 200
    assert population.chunk_size(1000, 10**9, budget=10, multiple=2) == 2


_SHARDED = textwrap.dedent(
    """
    import json, sys, numpy as np, jax, jax.numpy as jnp, hhjax
    model = hhjax.presets.neuron_hh()
    t = np.arange(800) * 0.025
    amp = np.linspace(6.0, 14.0, 10)  # 10 neurons over 4 devices: padded to 12
    stim = jnp.asarray((t[None, :] >= 5.0) * amp[:, None], jnp.float32)
    rec = ("v", "spikes")
    one = hhjax.simulate(model, stim, dt=0.025, record=rec, shard=False)
    four = hhjax.simulate(model, stim, dt=0.025, record=rec)
    both = hhjax.simulate(model, stim, dt=0.025, record=rec, chunk_size=4)
    m8 = hhjax.set_params(model, {"na.g": np.linspace(100, 140, 8)})
    p_one = hhjax.simulate(m8, stim[0], dt=0.025, shard=False)
    from hhjax.simulate import _call, _Static
    cfg = _Static("exp_euler", ("v",), 1, False, 0, "exact")
    raw = _call("sharded", m8, stim[0], None, None, 0.025, 0.0, cfg)[0]["v"]
    step = hhjax.stimulus.step_current(jnp.asarray(amp, jnp.float32), 5.0)  # factored
    fac = hhjax.simulate(model, step, dt=0.025, t_max=20.0, record=rec)
    kw = dict(dt=0.025, record=("v", "gates"), every=2)
    r_a = hhjax.simulate(m8, stim[0], **kw)  # 8 neurons: 2 per device, no padding
    r_ref = jax.tree_util.tree_map(np.asarray, (r_a.v, r_a.gates, r_a.v_max))
    r_b = hhjax.simulate(m8, stim[0], reuse=r_a, **kw)
    pad_a = hhjax.simulate(model, stim, **kw)  # 10 neurons, padded: not written in place
    pad_b = hhjax.simulate(model, stim, reuse=pad_a, **kw)
    big = hhjax.simulate(model, jnp.tile(stim[:, :200], (21, 1)), dt=0.025).v  # 210 neurons
    sys.modules["hhjax.simulate"]._GRAD_SPLIT_FROM = 0  # (a short run: split it too)
    def loss(g, shard):  # a gradient: split over the devices from 48 neurons per device
        v = hhjax.simulate(hhjax.set_params(model, {"na.g": g}), jnp.tile(stim[:, :200],
                           (21, 1)), dt=0.025, shard=shard).v
        return jnp.mean((v - big + 1.0) ** 2)
    g_split, g_one = (jax.jit(jax.grad(lambda g, s=s: loss(g, s)))(jnp.float32(110.0))
                      for s in (True, False))
    same = lambda a, b: all(np.allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-3,
        equal_nan=True) and np.asarray(x).dtype == np.asarray(y).dtype
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    print(json.dumps({
        "devices": len(jax.devices()),
        "same": same(one, four), "same_chunked": same(one, both),
        "same_model_pop": same(p_one.v, raw), "same_factored": same(one, fac),
        "split": len(raw.sharding.device_set),
        "reuse_same": same(r_ref, (r_b.v, r_b.gates, r_b.v_max)),
        "reuse_donated": r_a.v.is_deleted() and r_a.gates["na.m"].is_deleted(),
        "padded_untouched": not pad_a.v.is_deleted() and same(pad_a.v, pad_b.v),
        "grad_split": len(g_split.sharding.device_set),
        "grad_same": bool(np.isclose(g_split, g_one, rtol=1e-5)) and float(g_one) != 0.0,
    }))
    """
)


def test_sharded_over_four_cpu_devices_equals_plain():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {
        "devices": 4, "same": True, "same_chunked": True, "same_model_pop": True, "split": 4,
        "same_factored": True, "reuse_same": True, "reuse_donated": True,
        "padded_untouched": True, "grad_split": 4, "grad_same": True,
    }
