"""Tests of hhjax.analysis against brute-force and SciPy references.

The f-I references integrate a hand-written squid-axon / Connor-Stevens right-hand side
(typed in from Hodgkin & Huxley 1952 and Dayan & Abbott 2001 section 6.2, not hhjax's
code) with SciPy's LSODA at rtol = 1e-8, detecting spikes as events.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import cs_gates, cs_rest, cs_rhs, hh_rest, scipy_onset, scipy_rate, squid_rhs

import hhjax
from hhjax import analysis

# ----------------------------------------------------------------- brute-force spikes


def brute_spikes(v: np.ndarray, t: np.ndarray, thr: float) -> list[float]:
    out = []
    for k in range(len(v) - 1):
        if v[k] < thr <= v[k + 1]:
            out.append(t[k] + (thr - v[k]) / (v[k + 1] - v[k]) * (t[k + 1] - t[k]))
    return out


def random_traces(
    rng: np.random.Generator, shape: tuple[int, ...], n: int, thr: float = 0.0
) -> np.ndarray:
    """Random walks around ``thr``, with crossings forced at the first and the last sample."""
    v = np.cumsum(rng.normal(0.0, 8.0, (*shape, n)), axis=-1) - 5.0 + thr
    v = v.reshape(-1, n)
    v[::2, 0], v[::2, 1] = thr - 10.0, thr + 30.0  # crossing a quarter into the first step
    v[::3, -2], v[::3, -1] = thr - 25.0, thr  # a crossing landing exactly on the last sample
    return v.reshape(*shape, n)


@pytest.mark.parametrize("thr", [0.0, -20.0])
def test_spike_times_match_brute_force(dtype: jnp.dtype, thr: float) -> None:
    rng = np.random.default_rng(7)
    n, dt = 300, 0.1
    v = random_traces(rng, (4, 5), n, thr).astype(dtype)
    t = np.arange(n) * dt
    sp = analysis.spike_times(jnp.asarray(v), dt=dt, threshold=thr)
    assert sp.times.dtype == dtype
    times, count = np.asarray(sp.times), np.asarray(sp.count)
    atol = 1e-4 if dtype == jnp.float32 else 1e-10
    for idx in np.ndindex(4, 5):
        ref = brute_spikes(v[idx].astype(np.float64), t, thr)
        assert count[idx] == len(ref)
        np.testing.assert_allclose(times[idx][: len(ref)], ref, rtol=0, atol=atol)
        assert np.all(np.isnan(times[idx][len(ref):]))
    # the edge spikes are found: in the first step and exactly on the last sample
    flat = times.reshape(20, -1)
    np.testing.assert_allclose(flat[::2, 0], 0.25 * dt, atol=atol)
    np.testing.assert_allclose(np.nanmax(flat, axis=-1)[::3], (n - 1) * dt, atol=atol * 10)


def test_spike_times_with_t_array_and_trace() -> None:
    model = hhjax.presets.squid()
    trace = hhjax.simulate(model, hhjax.stimulus.step_current(10.0, 10.0), dt=0.025, t_max=100.0)
    from_trace = analysis.spike_times(trace)
    from_t = analysis.spike_times(trace.v, trace.t)
    from_dt = analysis.spike_times(trace.v, dt=0.025)
    ref = brute_spikes(np.asarray(trace.v, np.float64), np.arange(4001) * 0.025, 0.0)
    assert len(ref) == 6 and int(from_trace.count) == 6
    for sp in (from_trace, from_t, from_dt):
        np.testing.assert_allclose(np.asarray(sp.times), ref, atol=1e-4)


def test_spike_times_jit_fixed_size_and_truncation() -> None:
    v = jnp.asarray(random_traces(np.random.default_rng(1), (3,), 200))
    full = analysis.spike_times(v, dt=0.1)
    f = jax.jit(lambda x: analysis.spike_times(x, dt=0.1, max_spikes=2))
    short = f(v)
    assert short.times.shape == (3, 2)
    np.testing.assert_array_equal(np.asarray(short.count), np.asarray(full.count))
    np.testing.assert_allclose(np.asarray(short.times), np.asarray(full.times[:, :2]))
    with pytest.raises(ValueError, match="max_spikes"):
        jax.jit(lambda x: analysis.spike_times(x, dt=0.1))(v)


def test_spike_time_gradient_is_interpolation_derivative() -> None:
    # t* = t_k + (thr - a) / (b - a) dt: dt*/da = dt (thr - b) / (b - a)^2, dt*/db = -dt (thr - a) / (b - a)^2
    v = jnp.array([-30.0, -10.0, 30.0, 10.0])
    g = jax.grad(lambda x: analysis.spike_times(x, dt=0.5, max_spikes=1).times[0])(v)
    np.testing.assert_allclose(np.asarray(g), [0.0, 0.5 * (0 - 30) / 40**2, -0.5 * (0 + 10) / 40**2, 0], rtol=1e-5)


def test_rates_isi_latency() -> None:
    rng = np.random.default_rng(3)
    v = random_traces(rng, (6,), 400)
    t = np.arange(400) * 0.05
    sp = analysis.spike_times(jnp.asarray(v), dt=0.05)
    rate = analysis.firing_rate(jnp.asarray(v), dt=0.05, start=3.0, stop=15.0)
    rate_sp = analysis.firing_rate(sp, start=3.0, stop=15.0)
    rate_jit = jax.jit(lambda x: analysis.firing_rate(x, dt=0.05, start=3.0, stop=15.0))(jnp.asarray(v))
    np.testing.assert_allclose(np.asarray(rate_jit), np.asarray(rate), rtol=1e-6)
    whole = jax.jit(lambda x: analysis.firing_rate(x, dt=0.05))(jnp.asarray(v))  # default window
    isi = analysis.interspike_intervals(sp)
    lat = analysis.first_spike_latency(sp, onset=2.0)
    for i in range(6):
        ref = np.array(brute_spikes(v[i], t, 0.0))
        n_in = np.sum((ref >= 3.0) & (ref < 15.0))
        assert float(rate[i]) == pytest.approx(1000.0 * n_in / 12.0, rel=1e-5)
        assert float(rate_sp[i]) == pytest.approx(1000.0 * n_in / 12.0, rel=1e-5)
        assert float(whole[i]) == pytest.approx(1000.0 * ref.size / (399 * 0.05), rel=1e-5)
        np.testing.assert_allclose(np.asarray(isi[i])[: len(ref) - 1], np.diff(ref), atol=1e-4)
        after = ref[ref >= 2.0]
        if after.size:
            assert float(lat[i]) == pytest.approx(after[0] - 2.0, abs=1e-4)
        else:
            assert np.isnan(float(lat[i]))


def test_smooth_spike_count_converges_and_has_finite_gradients(dtype: jnp.dtype) -> None:
    rng = np.random.default_rng(11)
    v = random_traces(rng, (8,), 500)
    # keep samples away from threshold so the sharp limit is reached at small width
    v = np.where(np.abs(v) < 0.5, 0.5 * np.sign(v + 1e-9), v).astype(dtype)
    vj = jnp.asarray(v)
    exact = np.asarray(analysis.spike_count(vj))
    errs = []
    for width in (5.0, 1.0, 0.1, 0.01):
        soft = np.asarray(analysis.smooth_spike_count(vj, width=width))
        assert soft.shape == (8,)
        errs.append(np.max(np.abs(soft - exact)))
    assert errs[-1] < 1e-6 and errs[0] > errs[-1]
    assert np.all(np.diff(errs) <= 1e-7)
    g = jax.grad(lambda x: analysis.smooth_spike_count(x, width=2.0).sum())(vj)
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)


def test_smooth_spike_count_gradient_matches_finite_differences() -> None:
    with jax.enable_x64(True):  # central differences need float64
        v = jnp.asarray(random_traces(np.random.default_rng(5), (), 60))
        f = lambda x: analysis.smooth_spike_count(x, threshold=-3.0, width=4.0)  # noqa: E731
        g = np.asarray(jax.grad(f)(v))
        assert np.count_nonzero(g) > 10
        eps = 1e-6
        for k in range(0, 60, 3):
            e = jnp.zeros(60).at[k].set(eps)
            fd = (float(f(v + e)) - float(f(v - e))) / (2 * eps)
            assert g[k] == pytest.approx(fd, abs=1e-6)


def test_smooth_rate_of_hh_trace() -> None:
    trace = hhjax.simulate(hhjax.presets.squid(), 10.0, dt=0.025, t_max=200.0)
    soft = float(analysis.smooth_firing_rate(trace.v, dt=0.025, width=1.0, start=50.0, stop=200.0))
    hard = float(analysis.firing_rate(trace, start=50.0, stop=200.0))
    assert soft == pytest.approx(hard, rel=0.02)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: analysis.spike_times(jnp.zeros(10)), "dt"),
        (lambda: analysis.spike_times(jnp.zeros(10), dt=-1.0), "dt"),
        (lambda: analysis.spike_times(jnp.zeros(10), jnp.zeros(9)), "t must have shape"),
        (lambda: analysis.spike_times(jnp.zeros(10), jnp.zeros(10), dt=0.1), "either"),
        (lambda: analysis.spike_times(jnp.zeros(1), dt=0.1), "at least 2"),
        (lambda: analysis.spike_times(jnp.zeros(5), dt=0.1, max_spikes=0), "max_spikes"),
        (lambda: analysis.spike_times(jnp.zeros(5), dt=0.1, threshold=np.nan), "threshold"),
        (lambda: analysis.smooth_spike_count(jnp.zeros(5), width=0.0), "width"),
        (lambda: analysis.firing_rate(jnp.zeros(5), dt=0.1, start=2.0, stop=1.0), "window"),
        (lambda: analysis.fi_curve(hhjax.presets.squid(), [[1.0]]), "currents"),
        (lambda: analysis.fi_curve(hhjax.presets.squid(), [1.0], window=(0, 5000)), "window"),
        (lambda: analysis.fi_curve(hhjax.presets.squid(), [1.0], rate="mean"), "rate"),
        (lambda: analysis.fi_curve(hhjax.presets.squid(), [1.0], method="rk5"), "method"),
        (lambda: analysis.fi_curve(hhjax.presets.squid(), [np.inf]), "currents"),
        (lambda: analysis.rheobase(hhjax.presets.squid(), low=5.0, high=1.0), "low < high"),
        (lambda: analysis.rheobase(hhjax.presets.squid(), tol=0.0), "tol"),
        (lambda: analysis.gate_kinetics(hhjax.presets.squid(), [[1.0]]), "v must"),
    ],
)
def test_bad_input_raises(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------- f-I, rheobase


def test_fi_curve_matches_simulate_and_spike_times() -> None:
    model = hhjax.presets.squid()
    currents = np.array([3.0, 8.0, 15.0])
    fi = analysis.fi_curve(model, currents, duration=300.0, window=(100.0, 300.0), dt=0.025)
    stim = jnp.repeat(jnp.asarray(currents, jnp.float32)[:, None], 12000, axis=1)
    trace = hhjax.simulate(model, stim, dt=0.025)
    sp = analysis.spike_times(trace)
    for i in range(3):
        times = np.asarray(sp.times[i])
        inside = times[(times >= 100.0) & (times < 300.0)]
        assert int(fi.count[i]) == inside.size
        if inside.size >= 2:
            assert float(fi.first_spike[i]) == pytest.approx(inside[0], abs=1e-3)
            assert float(fi.rate[i]) == pytest.approx(
                1000.0 * (inside.size - 1) / (inside[-1] - inside[0]), rel=1e-4
            )
    assert float(fi.rate[0]) == 0.0 and float(fi.rate[2]) > float(fi.rate[1]) > 50.0


def test_fi_curve_population_equals_loop(dtype: jnp.dtype) -> None:
    g_na = np.array([90.0, 120.0, 150.0])
    pop = hhjax.set_params(hhjax.presets.squid(), {"na.g": jnp.asarray(g_na, dtype)})
    currents = jnp.asarray([7.0, 12.0], dtype)
    fi = analysis.fi_curve(pop, currents, duration=200.0, window=(50.0, 200.0), chunk=4)
    assert fi.rate.shape == (3, 2) and fi.rate.dtype == dtype
    for i, g in enumerate(g_na):
        one = analysis.fi_curve(
            hhjax.set_params(hhjax.presets.squid(), {"na.g": g}), currents,
            duration=200.0, window=(50.0, 200.0),
        )
        np.testing.assert_allclose(np.asarray(fi.rate[i]), np.asarray(one.rate), rtol=1e-5)


def test_rheobase_brackets_firing() -> None:
    model = hhjax.presets.squid()
    r = float(analysis.rheobase(model, duration=100.0, tol=0.01))
    counts = analysis.fi_curve(
        model, [r - 0.01, r], duration=100.0, window=(0.0, 100.0), rate="count"
    ).count
    assert int(counts[0]) == 0 and int(counts[1]) >= 1
    assert 1.0 < r < 4.0
    pop = hhjax.set_params(model, {"na.g": jnp.asarray([120.0, 60.0])})
    rp = np.asarray(analysis.rheobase(pop, duration=100.0, tol=0.01))
    assert rp.shape == (2,) and rp[0] == pytest.approx(r, abs=1e-6) and rp[1] > r
    silent = analysis.rheobase(model, duration=100.0, low=0.0, high=0.5)
    assert np.isnan(float(silent))


# --------------------------------------------------------------- SciPy reference f-I


def test_squid_fi_onset_and_jump_match_scipy() -> None:
    """No sustained firing below ~6.26 uA/cm2; a jump to ~50 Hz at onset (class II)."""
    duration, window = 1000.0, (200.0, 1000.0)
    model = hhjax.presets.squid()
    onset = float(analysis.rheobase(model, low=5.0, high=8.0, tol=0.01, duration=duration,
                                    window=window, min_spikes=2))
    ref_onset = scipy_onset(squid_rhs, list(hh_rest()), 6.0, 6.5, duration, window, tol=0.004)
    assert abs(onset - ref_onset) < 0.02
    assert 6.1 < onset < 6.4
    currents = np.array([onset - 0.3, onset - 0.05, ref_onset + 0.02, 8.0, 15.0])
    fi = analysis.fi_curve(model, currents, duration=duration, window=window)
    rates = np.asarray(fi.rate)
    assert rates[0] == 0.0 and rates[1] == 0.0  # below onset: nothing sustained
    assert 45.0 < rates[2] < 58.0  # the jump: no low rates in a class II neuron
    for i in (2, 3, 4):
        ref = scipy_rate(squid_rhs, list(hh_rest()), float(currents[i]), duration, window)
        assert rates[i] == pytest.approx(ref, rel=5e-3)


@pytest.mark.slow
def test_connor_stevens_is_class_one_against_scipy() -> None:
    """Connor-Stevens fires arbitrarily slowly just above its onset (continuous f-I)."""
    duration, window = 4000.0, (1000.0, 4000.0)
    model = hhjax.presets.connor_stevens()
    onset = float(analysis.rheobase(model, low=0.0, high=20.0, tol=0.01, duration=duration,
                                    window=window, min_spikes=2, dt=0.01, method="rk4"))
    ref_onset = scipy_onset(cs_rhs, cs_rest(), onset - 0.1, onset + 0.1, duration, window, 0.004)
    assert abs(onset - ref_onset) < 0.02
    currents = np.array([ref_onset + 0.05, ref_onset + 0.2, ref_onset + 2.0])
    fi = analysis.fi_curve(model, currents, duration=duration, window=window, dt=0.01, method="rk4")
    rates = np.asarray(fi.rate)
    ref = np.array([scipy_rate(cs_rhs, cs_rest(), float(i), duration, window) for i in currents])
    assert 0.0 < rates[0] < 5.0 and 0.0 < ref[0] < 5.0  # class I: low rates near rheobase
    assert rates[1] < 10.0
    np.testing.assert_allclose(rates, ref, rtol=0.05)


# ------------------------------------------------------------ kinetics, phase plane


def test_gate_kinetics_against_hand_formulas() -> None:
    v = np.linspace(-100.0, 50.0, 31)
    kin = analysis.gate_kinetics(hhjax.presets.connor_stevens(), v)
    ref = np.array([cs_gates(x) for x in v])  # (31, 5, 2)
    for j, key in enumerate(["na.m", "na.h", "k.n", "a.a", "a.b"]):
        np.testing.assert_allclose(np.asarray(kin.inf[key]), ref[:, j, 0], rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(kin.tau[key]), ref[:, j, 1], rtol=2e-5)
    warm = analysis.gate_kinetics(hhjax.presets.squid(temperature=16.3), v)
    cold = analysis.gate_kinetics(hhjax.presets.squid(), v)
    np.testing.assert_allclose(np.asarray(warm.tau["k.n"]) * 3.0, np.asarray(cold.tau["k.n"]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(warm.inf["na.m"]), np.asarray(cold.inf["na.m"]), rtol=1e-5)
    default = analysis.gate_kinetics(hhjax.presets.squid())
    assert float(default.v[0]) == pytest.approx(-105.0, abs=0.01)


def test_phase_plane_window() -> None:
    trace = hhjax.simulate(hhjax.presets.squid(), 10.0, dt=0.05, t_max=60.0, record=("v", "gates"))
    pp = analysis.phase_plane(trace, start=30.0)
    assert float(pp.t[0]) == pytest.approx(30.0) and pp.v.shape == pp.gates["k.n"].shape
    assert set(pp.gates) == {"na.m", "na.h", "k.n"}
    with pytest.raises(ValueError, match="gates"):
        analysis.phase_plane(hhjax.simulate(hhjax.presets.squid(), 1.0, dt=0.05, t_max=5.0))
    with pytest.raises(ValueError, match="window"):
        analysis.phase_plane(trace, start=100.0)
