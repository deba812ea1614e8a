"""One neuron's step with its gates as one vector (:mod:`hhjax.lanes`)."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hhjax
from hhjax import integrators, lanes

PRESETS = ["squid", "hh1952", "neuron_hh", "cortical_pyramidal", "connor_stevens"]


def _states(model, n, dtype, seed=0):
    """Random states: V over [-100, 60] mV and at every ExpLinear midpoint of the model
    (where the rate's singularity is removed), each gate at its steady state within
    10 mV of V."""
    rng = np.random.default_rng(seed)
    mids = [f.midpoint for ch in model.channels.values() for g in ch.gates.values()
            for f in vars(g).values() if isinstance(f, hhjax.rates.ExpLinear)]
    v = np.concatenate([rng.uniform(-100.0, 60.0, n), np.asarray(mids, float)])
    gates = hhjax.steady_state(model, jnp.asarray(v + rng.uniform(-10.0, 10.0, v.size), dtype)).gates
    return hhjax.State(jnp.asarray(v, dtype), gates)


@pytest.mark.parametrize(
    ("name", "dtype"), [(p, "float32") for p in PRESETS] + [("connor_stevens", "float64")]
)
def test_each_step_equals_the_integrators_step(name, dtype):
    """The same values as the integrators' steps, to rounding, for every method, on
    states that include the removable singularities."""
    with jax.enable_x64(dtype == "float64"):
        model = hhjax.presets.get(name)
        states = _states(model, 64, dtype)
        for method in lanes.METHODS:
            def plain(s, method=method):
                return integrators.get_method(method)(model, s, jnp.asarray(8.0, dtype), 0.025)

            def packed(s, method=method):
                p = lanes.METHODS[method](model, lanes.pack(model, s), jnp.asarray(8.0, dtype), 0.025)
                return lanes.unpack(model, p)

            want = jax.jit(jax.vmap(plain))(states)
            got = jax.jit(jax.vmap(packed))(states)
            # not bit for bit: XLA compiles the vector and the scalar code to different
            # instructions (measured: up to 32 eps in V, in mV, after the cancellation
            # in exp-Euler's V update, and 0.5 eps in a gate)
            eps = np.finfo(dtype).eps
            assert got.v.dtype == want.v.dtype
            np.testing.assert_allclose(got.v, want.v, rtol=8 * eps, atol=256 * eps)
            for k in model.gate_names:
                np.testing.assert_allclose(got.gates[k], want.gates[k], rtol=8 * eps, atol=8 * eps)


def test_gate_rates_match_the_model_and_their_gradients_are_finite():
    model = hhjax.presets.connor_stevens()  # alpha/beta and inf/tau gates, composite forms
    v = jnp.asarray(-40.0)  # an ExpLinear midpoint: the removable singularity
    a, s = lanes.gate_linear(model, v)
    want = hhjax.model.gate_linear(model, v)
    np.testing.assert_allclose(np.asarray(a), [float(x[0]) for x in want.values()], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s), [float(x[1]) for x in want.values()], rtol=1e-6)
    g = jax.grad(lambda v: jnp.sum(jnp.stack(lanes.gate_linear(model, v))))(v)
    assert np.isfinite(float(g))
    far = jax.grad(lambda v: jnp.sum(jnp.stack(lanes.gate_linear(model, v))))(jnp.asarray(2000.0))
    assert np.isfinite(float(far))  # no inf from the other kinds' lanes


def test_simulate_uses_lanes_for_one_neurons_forward_run_in_float32(monkeypatch):
    sim = sys.modules["hhjax.simulate"]
    seen = []
    runner = sim._unit_runner
    monkeypatch.setattr(sim, "_unit_runner", lambda *a: seen.append(a[5].lanes) or runner(*a))
    model = hhjax.presets.neuron_hh()
    drive = hhjax.stimulus.step_current(10.0, 1.0).sample(0.025, 15.0)
    one = hhjax.simulate(model, drive, dt=0.025)
    assert seen and all(seen)
    seen.clear()
    jitted = jax.jit(lambda d: hhjax.simulate(model, d, dt=0.025).v)(drive)
    assert seen and all(seen)  # inside a user's jit too
    # (another program: rounding differs by up to ~1e-5 mV around the spikes)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(one.v), rtol=0, atol=1e-3)
    for kw in (dict(method="rk4"), dict(rates="table"), dict(dtype=jnp.float64)):
        seen.clear()
        with jax.enable_x64(True):
            d = drive.astype(kw.pop("dtype", jnp.float32))
            hhjax.simulate(model, d, dt=0.025, **kw)
        assert seen and not any(seen), kw  # (measured slower in lanes: the module's doc)
    seen.clear()
    pair = jax.vmap(lambda d: hhjax.simulate(model, d, dt=0.025).v)(jnp.stack([drive, drive]))
    assert seen and not any(seen)  # under vmap, the neurons are the vector
    np.testing.assert_array_equal(np.asarray(pair[0]), np.asarray(one.v))
    seen.clear()
    pop = hhjax.simulate(model, jnp.stack([drive, drive]), dt=0.025)
    assert seen and not any(seen)
    np.testing.assert_array_equal(np.asarray(pop.v[1]), np.asarray(one.v))
    seen.clear()  # (another length: JAX does not trace a function it has cached again)
    g = jax.grad(lambda g: jnp.sum(hhjax.simulate(hhjax.set_params(model, {"na.g": g}), drive[:-1], dt=0.025).v))
    assert np.isfinite(float(g(120.0))) and seen and not any(seen)
