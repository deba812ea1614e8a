"""Stimuli on the time grid: exact edges, exact means, noise statistics, resampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hhjax import stimulus as stim


def test_step_edges_on_and_off_grid():
    x = np.asarray(stim.step_current(10.0, 10.0, 11.0).sample(0.025, 20.0))
    assert x.shape == (800,)
    assert np.all(x[400:440] == 10.0) and x[:400].sum() == 0 and x[440:].sum() == 0
    # an onset between grid points: charge is exact, the edge step gets its fraction
    y = np.asarray(stim.step_current(4.0, 1.01, 2.0).sample(0.02, 3.0), np.float64)
    assert y.sum() * 0.02 == pytest.approx(4.0 * 0.99, rel=1e-6)
    assert y[50] == pytest.approx(4.0 * 0.5, rel=1e-6)
    open_ended = np.asarray(stim.step_current(2.0, 1.0).sample(0.5, 3.0))
    np.testing.assert_array_equal(open_ended, [0, 0, 2, 2, 2, 2])


def test_pulse_train_two_pulses_and_population():
    x = np.asarray(stim.pulse_train([0.0, 10.0], 1.0, [150.0, 50.0]).sample(0.01, 50.0))
    assert np.all(x[:100] == 150.0) and np.all(x[1000:1100] == 50.0)
    assert x.sum() * 0.01 == pytest.approx(200.0, rel=1e-5)
    pop = stim.pulse_train([1.0, 5.0], [1.0, 2.0], jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    arr = np.asarray(pop.sample(0.5, 10.0))
    assert arr.shape == (3, 20)
    np.testing.assert_allclose(arr.sum(axis=1) * 0.5, [1 + 4, 3 + 8, 5 + 12])
    with pytest.raises(ValueError, match="widths must be > 0"):
        stim.pulse_train([1.0], [0.0], [1.0])


def test_ramp_and_sine_are_exact_interval_means():
    dt = 0.1
    r = np.asarray(stim.ramp(1.0, 3.0, 20.0, amplitude_from=10.0).sample(dt, 4.0), np.float64)
    k = np.arange(40)
    mid = (k + 0.5) * dt
    expected = np.where((mid > 1.0) & (mid < 3.0), 10.0 + 10.0 * (mid - 1.0) / 2.0, 0.0)
    np.testing.assert_allclose(r, expected, atol=1e-5)
    with jax.enable_x64(True):
        s = np.asarray(stim.sine(3.0, 50.0, phase=0.3, offset=1.0).sample(dt, 40.0))
        w = 2 * np.pi * 50.0 / 1000.0
        t0, t1 = np.arange(400) * dt, np.arange(1, 401) * dt
        exact = 1.0 + 3.0 * (np.cos(w * t0 + 0.3) - np.cos(w * t1 + 0.3)) / (w * dt)
        np.testing.assert_allclose(s, exact, rtol=1e-12, atol=1e-12)
        dc = np.asarray(stim.sine(3.0, 0.0, phase=np.pi / 2).sample(dt, 1.0))
        np.testing.assert_allclose(dc, 3.0, rtol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_filtered_noise_statistics_and_reproducibility(order):
    key = jax.random.PRNGKey(123)
    noise = stim.filtered_noise(key, sigma=2.0, tau=3.0, order=order, mean=1.0, shape=(400,))
    x = np.asarray(noise.sample(0.1, 300.0), np.float64)  # (400, 3000)
    assert x.shape == (400, 3000)
    assert x.mean() == pytest.approx(1.0, abs=0.05)
    assert x.std() == pytest.approx(2.0, rel=0.02)  # stationary from t = 0, exactly sigma
    assert x[:, 0].std() == pytest.approx(2.0, rel=0.1)
    np.testing.assert_array_equal(x, np.asarray(noise.sample(0.1, 300.0)))
    other = np.asarray(stim.filtered_noise(jax.random.PRNGKey(124), 2.0, 3.0, order=order, shape=(400,)).sample(0.1, 300.0))
    assert not np.allclose(other, x - 1.0)
    if order == 1:  # OU autocorrelation exp(-lag / tau)
        xc = x - x.mean(axis=1, keepdims=True)
        lag = 30  # 3 ms
        rho = (xc[:, :-lag] * xc[:, lag:]).mean() / xc.var()
        assert rho == pytest.approx(np.exp(-1.0), abs=0.03)


def test_noise_bad_arguments():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        stim.ou_noise(key, 1.0, 0.0)
    with pytest.raises(ValueError, match="order must be 1, 2, 3 or 4"):
        stim.filtered_noise(key, 1.0, 1.0, order=7)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        stim.ou_noise(key, -1.0, 1.0)


def test_sampled_resampling_preserves_charge_and_values():
    rng = np.random.default_rng(0)
    data = rng.normal(size=1000).astype(np.float32)
    same = np.asarray(stim.sampled(data, 0.05).sample(0.05, 50.0))
    np.testing.assert_array_equal(same, data)
    coarse = np.asarray(stim.sampled(data, 0.05).sample(0.2, 50.0), np.float64)
    np.testing.assert_allclose(coarse, data.reshape(250, 4).mean(axis=1), atol=1e-6)
    fine = np.asarray(stim.sampled(data, 0.05).sample(0.01, 50.0))
    np.testing.assert_allclose(fine, np.repeat(data, 5), atol=1e-6)
    odd = np.asarray(stim.sampled(data, 0.05).sample(0.03, 30.0), np.float64)
    assert odd.sum() * 0.03 == pytest.approx(data[:600].sum() * 0.05, abs=1e-4)
    shifted = np.asarray(stim.sampled(np.ones(10), 1.0, t0=2.0).sample(1.0, 12.0))
    np.testing.assert_array_equal(shifted, [0, 0] + [1] * 10)
    pop = stim.sampled(np.stack([data, -data]), 0.05).sample(0.1, 10.0)
    assert pop.shape == (2, 100)
    with pytest.raises(ValueError, match="sampled stimulus ends at 50.0 ms, before the run's end"):
        stim.sampled(data, 0.05).sample(0.05, 60.0)
    with pytest.raises(ValueError, match="values must be finite"):
        stim.sampled(np.array([0.0, np.nan]), 0.1)


def test_sums_and_population_broadcasting():
    a = stim.step_current(jnp.array([1.0, 2.0, 3.0]), 1.0, 2.0)
    b = stim.sine(0.5, 100.0)
    s = (a + b).sample(0.1, 5.0)
    assert s.shape == (3, 50)
    np.testing.assert_allclose(np.asarray(s), np.asarray(a.sample(0.1, 5.0)) + np.asarray(b.sample(0.1, 5.0)))


def test_amplitudes_are_differentiable():
    g = jax.grad(lambda a: jnp.sum(stim.step_current(a, 1.0, 2.0).sample(0.1, 3.0)))(2.0)
    assert float(g) == pytest.approx(10.0)


def test_bad_times():
    with pytest.raises(ValueError, match="stop must be >= start"):
        stim.step_current(1.0, 5.0, 2.0)
    with pytest.raises(ValueError, match="start must be finite"):
        stim.step_current(1.0, float("nan"))
    with pytest.raises(ValueError, match="amplitude must be finite"):
        stim.step_current(float("inf"))
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        stim.step_current(1.0).sample(0.0, 10.0)


def test_factors_reproduce_the_samples():
    key = jax.random.PRNGKey(1)
    amps = jnp.array([1.0, 2.0, 3.0])
    cases = [
        stim.step_current(amps, 1.0, 2.5),
        stim.pulse_train([0.5, 3.0], [0.2, 1.0], jnp.stack([amps, -amps], axis=-1)),
        stim.ramp(1.0, 4.0, amps, amplitude_from=0.5),
        stim.sine(amps, 200.0, offset=1.0, start=0.5),
        stim.step_current(amps, 1.0) + stim.sine(0.3, 100.0) + stim.ramp(0.0, 2.0, 1.0),
    ]
    for case in cases:
        weights, profiles = case.factors(0.05, 5.0)
        assert weights.shape[0] == 3 and profiles.shape[-1] == 100
        np.testing.assert_allclose(np.asarray(weights @ profiles), np.asarray(case.sample(0.05, 5.0)), atol=1e-5)
    assert stim.ou_noise(key, 1.0, 2.0).factors(0.05, 5.0) is None
    assert (stim.step_current(1.0) + stim.ou_noise(key, 1.0, 2.0)).factors(0.05, 5.0) is None
    assert stim.sampled(np.ones(100), 0.05).factors(0.05, 5.0) is None


def test_reused_stimulus_keeps_its_profiles_but_never_stale_values():
    # A stimulus keeps its host profiles per (dt, t_max) for repeated simulate calls;
    # the kept values must follow the dtype mode, the caller's arrays and traced inputs.
    import hhjax

    model = hhjax.presets.squid()
    s = stim.step_current(10.0, 2.0)
    a = hhjax.simulate(model, s, dt=0.025, t_max=10.0)
    b = hhjax.simulate(model, s, dt=0.025, t_max=10.0)
    np.testing.assert_array_equal(np.asarray(a.v), np.asarray(b.v))
    assert hhjax.simulate(model, s, dt=0.05, t_max=10.0).v.shape == (201,)
    with jax.enable_x64(True):  # a stimulus keeps the dtype it was made with
        s64 = stim.step_current(10.0, 2.0)
        assert hhjax.simulate(model, s64, dt=0.025, t_max=10.0).v.dtype == jnp.float64
        assert hhjax.simulate(model, s, dt=0.025, t_max=10.0).v.dtype == jnp.float32
    starts = np.array([1.0, 5.0])
    train = stim.pulse_train(starts, 1.0, 3.0)
    before = np.asarray(train.sample(0.5, 8.0))
    starts[:] = [0.0, 2.0]  # the caller's array changes; the stimulus must not
    np.testing.assert_array_equal(np.asarray(train.sample(0.5, 8.0)), before)

    def peak(amp):
        return jnp.max(hhjax.simulate(model, stim.step_current(amp, 1.0), dt=0.025, t_max=5.0).v)

    f = jax.jit(peak)
    assert float(f(2.0)) < 0.0 < float(f(20.0))  # traced amplitudes are never kept
