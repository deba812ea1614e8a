"""fitting.fit: recovery of known parameters from synthetic noisy traces, multi-start
robustness, no retracing, uncertainty, and the command line."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitting
import hhjax
from fitting import losses as L
from hhjax import stimulus as st

ROOT = Path(__file__).resolve().parents[1]
G_PATHS = ("na.g", "k.g", "leak.g")


def synthetic(amplitudes, *, t_max=40.0, dt=0.05, sigma=1.0, seed=0, model=None, stop=35.0):
    """Noisy squid recordings of current steps (5 ms to ``stop``) of the given amplitudes (uA/cm2)."""
    model = model or hhjax.presets.squid()
    i = np.stack([np.asarray(st.step_current(a, 5.0, stop).sample(dt, t_max)) for a in amplitudes])
    v = np.asarray(hhjax.simulate(model, i, dt=dt).v, float)
    v = v + np.random.default_rng(seed).normal(0.0, sigma, v.shape)
    current = np.concatenate([i, i[:, -1:]], axis=1)  # one value per voltage sample
    return fitting.Recording(voltage=v, current=current, dt=dt)


def starts_within(factor_lo, factor_hi, k, seed, truth):
    rng = np.random.default_rng(seed)
    return {p: truth[p] * np.exp(rng.uniform(np.log(factor_lo), np.log(factor_hi), k)) for p in G_PATHS}


def test_recovers_conductances_within_one_percent():
    truth = hhjax.get_params(hhjax.presets.squid())
    rec = synthetic([-5.0, 4.0, 12.0])  # the hyperpolarising step pins down leak.g
    init = starts_within(0.5, 2.0, 4, 1, truth)
    res = fitting.fit(hhjax.presets.squid(), rec, list(G_PATHS), starts=4, steps=100, refine=25,
                      init=init, progress=False)
    for p in G_PATHS:
        assert res.params[p] == pytest.approx(float(truth[p]), rel=0.01), p
    # the loss reached the noise floor: mean squared residual of 1 mV noise
    assert res.loss == pytest.approx(1.0, rel=0.1)
    assert res.history.shape == (res.steps, 4) and res.steps <= 125
    # every other parameter is exactly the model's
    fitted, base = hhjax.get_params(res.model), hhjax.get_params(hhjax.presets.squid())
    assert all(fitted[p] == base[p] for p in base if p not in G_PATHS)
    np.testing.assert_allclose([res.initial[p] for p in G_PATHS], [init[p] for p in G_PATHS], rtol=1e-5)
    # Gauss-Newton errors: truth within ~4 standard errors, no identifiability warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", fitting.IdentifiabilityWarning)
        err = res.standard_errors()
    assert err.sigma == pytest.approx(1.0, rel=0.1)
    for p in G_PATHS:
        assert abs(res.params[p] - float(truth[p])) < 4 * err.se[p] + 1e-3 * float(truth[p]), p
    assert "na.g" in res.table()


def test_diverging_and_nan_starts_are_dropped_without_poisoning_others():
    rec = synthetic([8.0], t_max=20.0)
    mse = L.voltage_mse()

    def loss(v, target):  # NaN whenever the model rests above -60 mV (set by leak.e_rev)
        return jnp.where(v[0, 0] > -60.0, jnp.nan, mse(v, target))

    init = {"leak.e_rev": np.array([-54.0, -20.0, -56.0])}
    res = fitting.fit(hhjax.presets.squid(), rec, {"leak.e_rev": (-70.0, 0.0)}, loss=loss,
                      starts=3, steps=15, init=init, progress=False)
    assert res.dropped == [1]
    assert np.isinf(res.losses[1]) and np.all(np.isfinite(res.losses[[0, 2]]))
    assert np.all(np.isnan(res.history[:, 1]))
    assert res.best in (0, 2)
    fig = res.plot()  # data vs fit per sweep, and the loss history
    assert len(fig.axes) == rec.n_sweeps + 1
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), rec.voltage[0])
    with pytest.raises(ValueError, match="all 1 starts were dropped"):
        fitting.fit(hhjax.presets.squid(), rec, {"leak.e_rev": (-70.0, 0.0)}, loss=loss,
                    starts=1, steps=3, init={"leak.e_rev": -20.0}, progress=False)


def _count_traces(refine, steps_list, least_squares):
    rec = synthetic([8.0], t_max=10.0, dt=0.1)
    traces = []
    mse = L.voltage_mse()

    def counting_loss(v, target):
        traces.append(v.dtype)
        return mse(v, target)

    if least_squares:  # Levenberg-Marquardt refinement through .residuals
        def residuals(v, target):
            traces.append(v.dtype)
            return mse.residuals(v, target)

        counting_loss.residuals = residuals
    counts = []
    for steps in steps_list:
        traces.clear()
        res = fitting.fit(hhjax.presets.squid(), rec, ["na.g", "k.g"], loss=counting_loss,
                          starts=2, steps=steps, refine=refine, patience=1000, progress=False)
        assert res.steps == steps + refine
        counts.append(len(traces))
    return counts, traces[0]


def test_one_trace_for_any_number_of_steps(dtype):
    counts, seen = _count_traces(0, (3, 9), False)
    assert counts[0] == counts[1] == 1  # one trace of the jit-compiled multi-start step
    assert seen == dtype


def test_refinement_does_not_retrace_per_step():
    counts, _ = _count_traces(2, (2, 6), True)
    assert counts[0] == counts[1] <= 4  # Adam step + LM step (jvp and trial point)


def test_absolute_current_with_a_free_area():
    area = 2e-5  # cm2
    dens = synthetic([6.0], t_max=30.0, dt=0.05, sigma=0.5)
    rec = fitting.Recording(voltage=dens.voltage, current=dens.current * area / 1e-6, dt=dens.dt,
                            current_unit="pA")
    res = fitting.fit(hhjax.presets.squid(), rec, {"area": (5e-6, 1e-4), "leak.g": None},
                      init={"area": [1.2e-5, 3.5e-5], "leak.g": [0.25, 0.4]}, starts=2,
                      steps=80, refine=15, progress=False)
    assert res.params["area"] == pytest.approx(area, rel=0.01)
    with pytest.raises(ValueError, match="current is absolute"):
        fitting.fit(hhjax.presets.squid(), rec, ["leak.g"], steps=1, progress=False)


def test_gauss_newton_matches_finite_difference_jacobian_and_flags_degeneracy():
    with jax.enable_x64(True):
        rec = synthetic([3.0], t_max=20.0, dt=0.05)
        res = fitting.fit(hhjax.presets.squid(), rec, ["leak.g", "leak.e_rev"], steps=2,
                          progress=False, init={"leak.g": 0.3, "leak.e_rev": -54.387})
        err = res.standard_errors(sigma=1.0)
        x = res.x

        def v_of(xx):
            m = hhjax.set_params(hhjax.presets.squid(), {"leak.g": xx[0], "leak.e_rev": xx[1]})
            return np.asarray(hhjax.simulate(m, jnp.asarray(rec.current[:, :-1]), dt=rec.dt).v).ravel()

        jac = np.stack([(v_of(x + h) - v_of(x - h)) / (2 * h[j])
                        for j, h in enumerate(np.diag([1e-5, 1e-4]))], axis=1)
        cov = np.linalg.inv(jac.T @ jac)
        np.testing.assert_allclose([err.se["leak.g"], err.se["leak.e_rev"]], np.sqrt(np.diag(cov)),
                                   rtol=1e-4)
    # rate * exp((v - midpoint) / scale): rate and midpoint are exactly degenerate
    res = fitting.fit(hhjax.presets.squid(), rec, ["k.n.beta.rate", "k.n.beta.midpoint"],
                      steps=2, progress=False)
    with pytest.warns(fitting.IdentifiabilityWarning, match="not identifiable"):
        err = res.standard_errors()
    assert set(err.unidentifiable) == {"k.n.beta.rate", "k.n.beta.midpoint"}


def test_checkpointing_cuts_gradient_memory():
    """Compiled temp memory of a 10^4-step gradient: ~sqrt(T) with checkpointing."""
    rec = synthetic([8.0], t_max=500.0, dt=0.05, sigma=0.0)
    sizes = {}
    for ckpt in (False, True):
        sim, drive = fitting.optimize.make_simulator(
            fitting.make_free(hhjax.presets.squid(), G_PATHS), rec, checkpoint=ckpt
        )
        vd = jnp.asarray(rec.voltage, jnp.float32)

        def loss(x, d, sim=sim, vd=vd):
            return jnp.mean((sim(x, d)[0] - vd) ** 2)

        x = jnp.asarray([120.0, 36.0, 0.3])
        compiled = jax.jit(jax.grad(loss)).lower(x, drive).compile()
        sizes[ckpt] = compiled.memory_analysis().temp_size_in_bytes
    # Without: every step's values are kept for the reverse pass (~T); with: only group
    # boundaries (~sqrt T). What remains ~T either way is the recorded V trace the loss
    # needs and its cotangent (measured 10^4 steps: 244 kB plain, 165 kB checkpointed).
    assert sizes[True] < 0.7 * sizes[False], sizes


def test_fit_rejects_bad_arguments():
    rec = synthetic([8.0], t_max=5.0, dt=0.1, sigma=0.0)
    model = hhjax.presets.squid()
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        fitting.fit(model, rec, ["na.g"], steps=0)
    with pytest.raises(ValueError, match="starts must be an int >= 1"):
        fitting.fit(model, rec, ["na.g"], starts=0)
    with pytest.raises(ValueError, match="method must be one of"):
        fitting.fit(model, rec, ["na.g"], method="heun")
    with pytest.raises(ValueError, match="init names parameters that are not free"):
        fitting.fit(model, rec, ["na.g"], init={"k.g": 1.0})
    with pytest.raises(TypeError, match="fitting.Recording"):
        fitting.fit(model, rec.voltage, ["na.g"])


def test_command_line_fit_writes_json_and_refuses_to_overwrite(tmp_path):
    rec = synthetic([10.0], t_max=20.0, dt=0.05, sigma=0.5)
    data = rec.save(tmp_path / "rec.npz")
    out = tmp_path / "fit.json"
    cmd = [sys.executable, "-m", "hhjax", "fit", str(data), "--free", "na.g", "k.g",
           "--bounds", "na.g=60:240", "--steps", "60", "--refine", "10", "--starts", "2",
           "--output", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "na.g" in proc.stdout and "std err" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["params"]["na.g"] == pytest.approx(120.0, rel=0.02)
    assert set(payload["std_errors"]) == {"na.g", "k.g"}
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow
def test_three_protocols_recover_leak_reversal_and_rate_midpoints():
    """Three step protocols: g within 1 %, E_leak within 0.5 mV, m/h/n midpoints within 1 mV."""
    model = hhjax.presets.squid()
    truth = hhjax.get_params(model)
    mids = ["na.m.alpha.midpoint", "na.h.alpha.midpoint", "k.n.alpha.midpoint"]
    free = [*G_PATHS, "leak.e_rev", *mids]
    rec = synthetic([-5.0, 5.0, 15.0], t_max=60.0, dt=0.025, stop=50.0)
    rng = np.random.default_rng(3)
    k = 4
    init = starts_within(0.5, 2.0, k, 3, truth)
    for p in ["leak.e_rev", *mids]:
        init[p] = float(truth[p]) + rng.uniform(-5.0, 5.0, k)
    res = fitting.fit(model, rec, free, starts=k, steps=200, refine=40, init=init, progress=False)
    for p in G_PATHS:
        assert res.params[p] == pytest.approx(float(truth[p]), rel=0.01), p
    assert res.params["leak.e_rev"] == pytest.approx(float(truth["leak.e_rev"]), abs=0.5)
    for p in mids:
        assert res.params[p] == pytest.approx(float(truth[p]), abs=1.0), p
    assert np.ptp(res.losses) < 1e-3 * res.loss  # every start found the same optimum


def test_command_line_rejects_bad_input_before_fitting(tmp_path, capsys):
    import argparse

    from fitting import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    data = synthetic([5.0], t_max=5.0, dt=0.1, sigma=0.0).save(tmp_path / "r.npz")
    for argv, message in [
        ([str(data), "--bounds", "na.g=1-2"], "PATH=LO:HI"),
        ([str(data), "--free", "na.g", "--bounds", "k.g=1:2"], "not --free"),
        ([str(tmp_path / "missing.npz")], "no such recording"),
        ([str(data), "--free", "na.gg"], "unknown parameter path"),
    ]:
        assert cli.run(parser.parse_args(argv)) == 2
        assert message in capsys.readouterr().err
