"""The scan driver: independent reference, vmap, retracing, gradients, bad input."""

import sys

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest
from reference import crossings, hh_solve

import hhjax
from hhjax import stimulus as stim


@pytest.mark.parametrize("amp", [7.0, 10.0, 20.0])
def test_spike_times_match_scipy_radau(amp):
    """hhjax against SciPy's Radau (rtol 1e-10) on a hand-written HH model."""
    t_max, onset = 60.0, 5.0
    t_ref = np.arange(0.0, t_max + 1e-9, 0.001)
    v_ref = hh_solve(lambda t: amp if t >= onset else 0.0, t_max, t_ref)
    ref = crossings(t_ref, v_ref)
    assert len(ref) >= 3
    with jax.enable_x64(True):
        for method, dt, tol in [("rk4", 0.005, 2e-4), ("exp_euler", 0.005, 0.02), ("exp_euler", 0.025, 0.1)]:
            tr = hhjax.simulate(hhjax.presets.squid(), stim.step_current(amp, onset), dt=dt, t_max=t_max, method=method)
            got = crossings(np.asarray(tr.t), np.asarray(tr.v))
            assert len(got) == len(ref), (method, dt)
            np.testing.assert_allclose(got, ref, atol=tol, err_msg=f"{method} dt={dt}")
    # float32 at the default step: same spikes, within the same O(dt) band
    tr = hhjax.simulate(hhjax.presets.squid(), stim.step_current(amp, onset), dt=0.025, t_max=t_max)
    got = crossings(np.asarray(tr.t, np.float64), np.asarray(tr.v, np.float64))
    np.testing.assert_allclose(got, ref, atol=0.1)


def test_vmap_over_1000_parameter_sets_equals_loop():
    with jax.enable_x64(True):
        _vmap_equals_loop()


def _vmap_equals_loop():
    key = jax.random.PRNGKey(0)
    m = hhjax.presets.squid()
    k1, k2, k3 = jax.random.split(key, 3)
    gna = 120.0 * jax.random.uniform(k1, (1000,), minval=0.8, maxval=1.2)
    gk = 36.0 * jax.random.uniform(k2, (1000,), minval=0.8, maxval=1.2)
    amp = jax.random.uniform(k3, (1000,), minval=0.0, maxval=15.0)
    drive = stim.step_current(amp, 2.0).sample(0.05, 20.0)  # (1000, 400)
    pop = hhjax.simulate(hhjax.set_params(m, {"na.g": gna, "k.g": gk}), drive, dt=0.05)
    assert pop.v.shape == (1000, 401)
    idx = range(0, 1000, 1)
    single = np.stack([
        np.asarray(hhjax.simulate(hhjax.set_params(m, {"na.g": float(gna[i]), "k.g": float(gk[i])}),
                                  drive[i], dt=0.05).v)
        for i in idx
    ])
    # float64: vectorised and scalar code differ only by rounding (float32 rounding
    # shifts steep upstrokes, dV/dt ~ 400 mV/ms, by ~1e-4 ms, i.e. ~0.02 mV)
    np.testing.assert_allclose(np.asarray(pop.v), single, atol=1e-8)
    # the user's own jax.vmap over simulate gives the same population
    f = jax.vmap(lambda g1, g2, d: hhjax.simulate(hhjax.set_params(m, {"na.g": g1, "k.g": g2}), d, dt=0.05).v)
    np.testing.assert_allclose(np.asarray(f(gna[:50], gk[:50], drive[:50])), single[:50], atol=1e-8)


def test_population_stimulus_only_and_model_only():
    m = hhjax.presets.squid()
    drive = stim.step_current(jnp.array([0.0, 10.0]), 1.0).sample(0.05, 15.0)
    tr = hhjax.simulate(m, drive, dt=0.05)
    assert tr.v.shape == (2, 301) and float(tr.v[0].max()) < -60 and float(tr.v[1].max()) > 0
    tr = hhjax.simulate(hhjax.set_params(m, {"leak.e_rev": jnp.array([-54.387, -60.0, -50.0])}),
                        stim.step_current(1.0), dt=0.05, t_max=5.0)
    assert tr.v.shape == (3, 101) and tr.final.v.shape == (3,)


def test_no_retrace_on_second_call_with_new_numbers():
    events = []

    def listener(name, *args, **kwargs):
        if "trace" in name or "compile" in name:
            events.append(name)

    m = hhjax.presets.squid()
    drive = stim.step_current(5.0, 1.0).sample(0.025, 10.0)
    hhjax.simulate(m, drive, dt=0.025)
    other_m, other_drive = hhjax.set_params(m, {"na.g": 100.0, "leak.e_rev": -60.0}), drive * 2
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        events.clear()
        hhjax.simulate(other_m, other_drive, dt=0.02)
        assert events == []
        hhjax.simulate(m, jnp.zeros(401), dt=0.025)  # new shape: compiles, and the probe sees it
        assert events, "the listener must observe a compile"
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _flat_leaves(model):
    return {k: float(v) for k, v in hhjax.get_params(model).items()}


def test_gradient_of_whole_simulation_matches_finite_differences_for_every_leaf():
    with jax.enable_x64(True):
        m = hhjax.presets.squid(temperature=8.0)
        drive = stim.step_current(10.0, 1.0).sample(0.025, 12.0)  # one spike
        target = hhjax.simulate(hhjax.set_params(m, {"na.g": 110.0, "leak.e_rev": -55.0}), drive, dt=0.025).v

        def loss(p):
            tr = hhjax.simulate(hhjax.set_params(m, p), drive, dt=0.025)
            return jnp.mean((tr.v - target) ** 2)

        p0 = _flat_leaves(m)
        grad = jax.grad(loss)(p0)
        assert set(grad) == set(p0)
        for key, x in p0.items():
            h = 1e-6 * max(1.0, abs(x))
            fd = (float(loss({**p0, key: x + h})) - float(loss({**p0, key: x - h}))) / (2 * h)
            g = float(grad[key])
            assert np.isfinite(g), key
            assert g == pytest.approx(fd, rel=2e-5, abs=1e-6), key


def _traced_cfgs(monkeypatch) -> list:
    """The ``_Static`` of every traced ``simulate`` call from now on (a spy on
    ``simulate._run_jit``)."""
    sim = sys.modules["hhjax.simulate"]
    seen, real_run = [], sim._run_jit

    def spy(*args, cfg):
        seen.append(cfg)
        return real_run(*args, cfg=cfg)

    monkeypatch.setattr(sim, "_run_jit", spy)
    return seen


def test_one_neurons_gradient_equals_a_population_of_ones(monkeypatch):
    """One neuron keeps each step's intermediates for the backward pass (``step_remat=
    False``), with or without ``checkpoint``; a population recomputes them. Same
    gradient."""
    with jax.enable_x64(True):
        m = hhjax.presets.neuron_hh()
        drive = stim.step_current(10.0, 1.0).sample(0.025, 20.0)  # 800 steps, a spike
        target = hhjax.simulate(m, drive, dt=0.025).v[::3]
        seen = _traced_cfgs(monkeypatch)

        def loss(p, checkpoint, pop=False):
            d = drive[None] if pop else drive
            tr = hhjax.simulate(hhjax.set_params(m, p), d, dt=0.025, every=3,
                                record=("v", "gates"), checkpoint=checkpoint)
            return jnp.mean((tr.v - target) ** 2) + jnp.mean(tr.gates["na.m"])

        p0 = {"na.g": 110.0, "k.g": 40.0, "leak.e_rev": -60.0}
        grads = [jax.grad(loss)(p0, False), jax.grad(loss)(p0, True), jax.grad(loss)(p0, False, True)]
        assert [c.step_remat for c in seen] == [False, False, True]
        for key in p0:
            want = float(grads[2][key])
            assert want != 0.0, key
            for g in grads[:2]:
                assert float(np.ravel(g[key])[0]) == pytest.approx(want, rel=1e-10, abs=1e-14), key


def test_checkpointed_gradient_of_one_neuron_runs_forward_in_lanes(monkeypatch):
    """float32, ``checkpoint=True``: in reverse mode the groups of steps run forward in
    lanes and are differentiated as the scalar step (``simulate._primal_by``). Same
    gradient as without checkpointing, for a parameter and the stimulus. Forward mode,
    which cannot differentiate that (also of a jitted run), keeps the plain path."""
    m = hhjax.presets.neuron_hh()
    drive = jnp.asarray(stim.step_current(10.0, 1.0).sample(0.025, 20.0), jnp.float32)
    target = hhjax.simulate(m, drive, dt=0.025).v
    seen = _traced_cfgs(monkeypatch)

    def loss(g, d, checkpoint):
        tr = hhjax.simulate(hhjax.set_params(m, {"na.g": g}), d, dt=0.025, checkpoint=checkpoint)
        return jnp.mean((tr.v - target) ** 2)

    plain = jax.grad(loss, argnums=(0, 1))(115.0, drive, False)
    ckpt = jax.grad(loss, argnums=(0, 1))(115.0, drive, True)
    assert [(c.lanes, c.checkpoint, c.step_remat) for c in seen] == [
        (False, False, False), (True, True, False)
    ]
    # (float32 rounding: the forward values differ by a few ulps between the two steps)
    assert float(ckpt[0]) == pytest.approx(float(plain[0]), rel=1e-5)
    np.testing.assert_allclose(np.asarray(ckpt[1]), np.asarray(plain[1]), rtol=1e-5,
                               atol=1e-5 * float(jnp.max(jnp.abs(plain[1]))))
    forward = jax.jvp(lambda g: loss(g, drive, True), (115.0,), (1.0,))[1]
    assert not seen[-1].lanes
    jitted = jax.jit(lambda g: loss(g, drive, True))
    forward_jit = jax.jvp(jitted, (115.0,), (1.0,))[1]
    for f in (forward, forward_jit):
        assert float(f) == pytest.approx(float(plain[0]), rel=1e-5)

    # every 3rd step recorded, gates and spike times too; composite rates (Connor-Stevens)
    cs = hhjax.presets.connor_stevens()
    g_na = 0.95 * float(cs.channels["na"].g)

    def loss_cs(g, checkpoint):
        tr = hhjax.simulate(hhjax.set_params(cs, {"na.g": g}), drive, dt=0.025, every=3,
                            method="euler", record=("v", "gates", "spikes"),
                            checkpoint=checkpoint)
        return jnp.mean(tr.v**2) + jnp.mean(tr.gates["na.m"]) + jnp.nansum(tr.spike_times)

    want = float(jax.grad(loss_cs)(g_na, False))
    assert float(jax.grad(loss_cs)(g_na, True)) == pytest.approx(want, rel=2e-5)
    assert [c.lanes for c in seen[-2:]] == [False, True]


def test_gradient_through_singular_voltage_is_finite():
    # a trajectory sampled exactly at -40 and -55 mV, the removable singularities
    with jax.enable_x64(False):
        m = hhjax.presets.squid()
        for v in (-40.0, -55.0):
            s0 = hhjax.steady_state(m, v)
            def last_v(p, s0=s0):
                return hhjax.simulate(hhjax.set_params(m, p), jnp.zeros(20), dt=0.025, state0=s0).v[-1]

            g = jax.grad(last_v)({"na.m.alpha.midpoint": -40.0, "k.n.alpha.midpoint": -55.0})
            assert all(np.isfinite(float(x)) for x in g.values())


def test_dtypes_follow_the_input():
    tr = hhjax.simulate(hhjax.presets.squid(), jnp.zeros(10), dt=0.025, record=("v", "gates", "currents"))
    assert tr.v.dtype == jnp.float32 and tr.t.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in [*tr.gates.values(), *tr.currents.values()])
    with jax.enable_x64(True):
        tr = hhjax.simulate(hhjax.presets.squid(), jnp.zeros(10), dt=0.025)
        assert tr.v.dtype == jnp.float64 and tr.final.gates["na.m"].dtype == jnp.float64
        tr = hhjax.simulate(hhjax.presets.squid(), jnp.zeros(10, jnp.float32), dt=0.025)
        assert tr.v.dtype == jnp.float32


def test_recording_every_and_continuation():
    with jax.enable_x64(True):
        m = hhjax.presets.squid()
        drive = stim.step_current(10.0, 2.0).sample(0.025, 30.0)
        full = hhjax.simulate(m, drive, dt=0.025, record=("v", "gates", "currents"))
        assert full.t.shape == full.v.shape == (1201,) and float(full.t[-1]) == 30.0
        sub = hhjax.simulate(m, drive, dt=0.025, every=7, record=("v", "gates", "currents"))
        assert sub.v.shape == (1200 // 7 + 1,)
        np.testing.assert_allclose(np.asarray(sub.t), np.asarray(full.t)[::7][: sub.t.shape[0]])
        np.testing.assert_allclose(np.asarray(sub.v), np.asarray(full.v)[::7][: sub.v.shape[0]], atol=1e-12)
        np.testing.assert_allclose(np.asarray(sub.currents["na"]), np.asarray(full.currents["na"])[::7][:172], atol=1e-10)
        assert float(sub.final.v) == pytest.approx(float(full.final.v), abs=1e-12)
        # two halves, the second from the first's final state, equal one run
        a = hhjax.simulate(m, drive[:500], dt=0.025)
        b = hhjax.simulate(m, drive[500:], dt=0.025, state0=a.final)
        np.testing.assert_allclose(np.asarray(b.v), np.asarray(full.v)[500:], atol=1e-12)


def test_stimulus_objects_and_scalars():
    m = hhjax.presets.squid()
    a = hhjax.simulate(m, 5.0, dt=0.05, t_max=10.0)
    b = hhjax.simulate(m, stim.step_current(5.0), dt=0.05, t_max=10.0)
    c = hhjax.simulate(m, jnp.full(200, 5.0), dt=0.05)
    np.testing.assert_array_equal(np.asarray(a.v), np.asarray(b.v))
    np.testing.assert_array_equal(np.asarray(a.v), np.asarray(c.v))


def test_divergence_is_reported():
    with pytest.raises(hhjax.DivergenceError, match=r"diverged by t = .* ms.*method='euler', dt=0.5"):
        hhjax.simulate(hhjax.presets.squid(), stim.step_current(10.0), dt=0.5, t_max=50.0, method="euler")
    drive = stim.step_current(jnp.array([10.0, 10.0]), 0.0).sample(0.5, 50.0)
    with pytest.raises(hhjax.DivergenceError, match="in 2 of 2 neurons"):
        hhjax.simulate(hhjax.presets.squid(), drive, dt=0.5, method="euler")


BAD = [
    (dict(dt=0.0), "dt must be a finite number > 0"),
    (dict(dt=-0.1), "dt must be a finite number > 0"),
    (dict(dt=float("nan")), "dt must be a finite number > 0"),
    (dict(dt=np.float32(-0.1)), "dt must be a finite number > 0"),
    (dict(dt=np.array([0.025])), r"dt must be a scalar in ms; got shape \(1,\)"),
    (dict(threshold=float("nan")), "threshold must be finite; found nan"),
    (dict(threshold=np.float32("inf")), "threshold must be finite; found inf"),
    (dict(t_max=0.01, stimulus=stim.step_current(1.0)), "t_max must be a finite duration >= dt"),
    (dict(stimulus=stim.step_current(1.0)), "t_max .* is required"),
    (dict(stimulus=jnp.array([0.0, jnp.nan, 0.0])), r"stimulus must be finite; found nan at index \(1,\)"),
    (dict(stimulus=jnp.zeros((2, 3, 4))), r"stimulus must be 1-D .*got shape \(2, 3, 4\)"),
    (dict(method="rk45"), "method must be one of"),
    (dict(record=("v", "spikez")), "record must name some of"),
    (dict(every=0), "every must be an int >= 1"),
    (dict(every=1000), "every = 1000 exceeds the number of steps"),
    (dict(t_max=7.0), "t_max = 7.0 ms at dt = 0.025 ms means 280 steps, but the stimulus array has 400"),
]


@pytest.mark.parametrize("kwargs,match", BAD)
def test_bad_input_raises_before_compiling(kwargs, match):
    args = dict(stimulus=jnp.zeros(400), dt=0.025)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hhjax.simulate(hhjax.presets.squid(), args.pop("stimulus"), **args)


def test_a_stimulus_found_finite_once_is_trusted_only_while_it_is_the_same_array():
    model, ok = hhjax.presets.squid(), jnp.zeros(400)
    hhjax.simulate(model, ok, dt=0.025)  # checked, and remembered (a JAX array is immutable)
    with pytest.raises(ValueError, match=r"stimulus must be finite; found nan at index \(3,\)"):
        hhjax.simulate(model, ok.at[3].set(jnp.nan), dt=0.025)
    hhjax.simulate(model, ok, dt=0.025)
    host = np.zeros(400)  # a NumPy array can change in place: checked on every call
    hhjax.simulate(model, host, dt=0.025)
    host[5] = np.inf
    with pytest.raises(ValueError, match=r"stimulus must be finite; found inf at index \(5,\)"):
        hhjax.simulate(model, host, dt=0.025)


def test_bad_models_and_populations():
    m = hhjax.presets.squid()
    with pytest.raises(ValueError, match="'leak.g' .*>= 0"):
        hhjax.simulate(m.__class__(channels={**m.channels, "leak": hhjax.Channel(-0.3, -54.0)}), jnp.zeros(4), dt=0.025)
    with pytest.raises(ValueError, match="'c_m' must be > 0"):
        hhjax.simulate(m.__class__(channels=m.channels, c_m=0.0), jnp.zeros(4), dt=0.025)
    with pytest.raises(ValueError, match="'na.e_rev' must be finite"):
        hhjax.simulate(m.__class__(channels={**m.channels, "na": hhjax.Channel(120.0, jnp.inf, m.channels["na"].gates)}),
                       jnp.zeros(4), dt=0.025)
    pop = hhjax.set_params(m, {"na.g": jnp.ones(3) * 120})
    with pytest.raises(ValueError, match=r"stimulus population \(2 rows\) does not match the model population \(3"):
        hhjax.simulate(pop, jnp.zeros((2, 10)), dt=0.025)
    with pytest.raises(ValueError, match="model population axes disagree in length: (na.g has 3, k.g has 4|k.g has 4, na.g has 3)"):
        hhjax.simulate(hhjax.set_params(pop, {"k.g": jnp.ones(4) * 36}), jnp.zeros(10), dt=0.025)
    with pytest.raises(ValueError, match=r"must be a scalar or 1-D population array; got shape \(2, 2\)"):
        hhjax.simulate(hhjax.set_params(m, {"na.g": jnp.ones((2, 2))}), jnp.zeros(10), dt=0.025)
    with pytest.raises(TypeError, match="stimulus must be an array of currents"):
        hhjax.simulate(m, "10uA", dt=0.025)
    with pytest.raises(TypeError, match="model must be a hhjax.Model"):
        hhjax.simulate({"na.g": 1.0}, jnp.zeros(10), dt=0.025)
    s0 = hhjax.resting_state(m)
    with pytest.raises(ValueError, match="state0.gates must have keys"):
        hhjax.simulate(m, jnp.zeros(10), dt=0.025, state0=s0._replace(gates={"na.m": 0.1}))
    with pytest.raises(ValueError, match=r"state0 population size \[5\] does not match"):
        hhjax.simulate(pop, jnp.zeros(10), dt=0.025, state0=hhjax.steady_state(m, jnp.zeros(5) - 65.0))


def test_factored_population_stimulus_equals_its_samples():
    """A population step/sine object runs factored (no (N, n_steps) array): same results."""
    with jax.enable_x64(True):
        m = hhjax.presets.neuron_hh()
        obj = stim.step_current(jnp.linspace(5.0, 15.0, 12), 2.0) + stim.sine(1.0, 50.0)
        dense = obj.sample(0.025, 30.0)
        ref = hhjax.simulate(m, dense, dt=0.025)
        for kw in ({}, {"chunk_size": 5, "progress": False}, {"every": 7}):
            got = hhjax.simulate(m, obj, dt=0.025, t_max=30.0, **kw)
            np.testing.assert_array_equal(np.asarray(got.v), np.asarray(ref.v)[:, :: kw.get("every", 1)])
        sp = hhjax.simulate(m, obj, dt=0.025, t_max=30.0, record="spikes")
        sp_ref = hhjax.simulate(m, dense, dt=0.025, record="spikes")
        np.testing.assert_array_equal(np.asarray(sp.spike_counts), np.asarray(sp_ref.spike_counts))
        pop = hhjax.set_params(m, {"k.g": jnp.linspace(30.0, 40.0, 12)})
        np.testing.assert_array_equal(
            np.asarray(hhjax.simulate(pop, obj, dt=0.025, t_max=30.0).v),
            np.asarray(hhjax.simulate(pop, dense, dt=0.025).v),
        )

        def loss(g, s):
            return jnp.mean(hhjax.simulate(hhjax.set_params(m, {"na.g": g}), s, dt=0.025, t_max=30.0).v)

        assert float(jax.grad(loss)(120.0, obj)) == pytest.approx(
            float(jax.grad(lambda g: jnp.mean(hhjax.simulate(hhjax.set_params(m, {"na.g": g}), dense, dt=0.025).v))(120.0)),
            rel=1e-12,
        )
        with pytest.raises(ValueError, match=r"stimulus population \(12 rows\) does not match the model population \(3"):
            hhjax.simulate(hhjax.set_params(m, {"na.g": jnp.ones(3) * 120}), obj, dt=0.025, t_max=30.0)


def test_repeated_calls_reuse_nothing_stale():
    # simulate keeps the last model's flattened, packed parameters: a different model
    # object, or a NumPy leaf changed in place, must still be simulated as it is now
    stim = np.asarray((np.arange(400) * 0.025 >= 1.0) * 10.0, np.float32)
    squid = hhjax.presets.squid()
    v_squid = np.asarray(hhjax.simulate(squid, stim, dt=0.025).v)
    np.testing.assert_array_equal(np.asarray(hhjax.simulate(squid, stim, dt=0.025).v), v_squid)
    cortical = hhjax.presets.cortical_pyramidal()
    v_cortical = np.asarray(hhjax.simulate(cortical, stim, dt=0.025).v)
    assert v_cortical[0] == pytest.approx(-63.054, abs=1e-3)  # its own rest, not squid's
    g = np.array([120.0, 120.0])
    pop = hhjax.set_params(squid, {"na.g": g})
    before = np.asarray(hhjax.simulate(pop, stim, dt=0.025).v)
    g[1] = 60.0  # the user's array, changed in place between calls
    after = np.asarray(hhjax.simulate(pop, stim, dt=0.025).v)
    np.testing.assert_array_equal(after[0], before[0])
    assert np.abs(after[1] - before[1]).max() > 1.0


def test_two_user_jits_of_the_same_grid_share_no_tracer():
    # the recorded time grid is cached per (length, step, dtype); built first inside one
    # user's jit, it must be a value, not that trace's tracer (UnexpectedTracerError)
    model = hhjax.presets.neuron_hh()

    def run(amp):
        return hhjax.simulate(model, stim.step_current(amp, 5.0), dt=0.025, t_max=7.5)

    v = jax.jit(lambda a: run(a).v)(10.0)
    t = jax.jit(lambda a: run(a).t)(10.0)
    np.testing.assert_allclose(t, np.arange(301) * 0.025, rtol=1e-6)
    assert v.shape == t.shape
