"""Right-hand side and fixed points: against an independent root and published values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import hh_rest

import hhjax


def test_squid_resting_state_equals_independent_root():
    with jax.enable_x64(True):
        s = hhjax.resting_state(hhjax.presets.squid())
        ref = hh_rest(-54.387)  # Brent's method on a hand-written steady-state current
        assert float(s.v) == pytest.approx(ref[0], abs=1e-9)
        assert float(s.v) == pytest.approx(-64.99638, abs=5e-6)  # textbook -65 is rounded
        for key, x in zip(["na.m", "na.h", "k.n"], ref[1:], strict=True):
            assert float(s.gates[key]) == pytest.approx(x, abs=1e-12)
        dvdt = hhjax.derivatives(hhjax.presets.squid(), s, 0.0)
        assert abs(float(dvdt.v)) < 1e-9
        assert all(abs(float(x)) < 1e-12 for x in dvdt.gates.values())
        nrn = hhjax.resting_state(hhjax.presets.neuron_hh())
        assert float(nrn.v) == pytest.approx(hh_rest(-54.3)[0], abs=1e-9)


@pytest.mark.parametrize("name", list(hhjax.presets.PRESETS))
def test_every_preset_rests_with_zero_derivative(name):
    with jax.enable_x64(True):
        m = hhjax.presets.get(name)
        s = hhjax.resting_state(m)
        assert abs(float(hhjax.derivatives(m, s, 0.0).v)) < 1e-9
    s32 = hhjax.resting_state(m)
    assert s32.v.dtype == jnp.float32
    assert float(s32.v) == pytest.approx(float(s.v), abs=1e-3)


def test_models_with_different_rate_forms_never_share_a_compiled_function():
    # Regression: with register_dataclass the structures of squid (Exponential beta_m)
    # and cortical_pyramidal (ExpLinear beta_m) compared equal, so jit could run one
    # model's compiled code on the other's parameters (seen once in CI).
    squid, cortical = hhjax.presets.squid(), hhjax.presets.cortical_pyramidal()
    t_squid, t_cortical = (jax.tree_util.tree_structure(m) for m in (squid, cortical))
    assert t_squid != t_cortical
    rebuilt = jax.tree_util.tree_unflatten(t_cortical, jax.tree_util.tree_leaves(cortical))
    assert rebuilt == cortical  # the custom registration round-trips every class


def test_connor_stevens_rest_matches_published_initial_state():
    # Dayan & Abbott's Connor-Stevens initial conditions (V = -68 mV and the gates)
    s = hhjax.resting_state(hhjax.presets.connor_stevens())
    assert float(s.v) == pytest.approx(-68.0, abs=0.05)
    published = {"na.m": 0.010, "na.h": 0.966, "k.n": 0.156, "a.a": 0.540, "a.b": 0.289}
    for key, x in published.items():
        assert float(s.gates[key]) == pytest.approx(x, abs=1.5e-3), key


def test_hh1952_is_squid_shifted_by_65_mV():
    with jax.enable_x64(True):
        r52 = hhjax.resting_state(hhjax.presets.hh1952())
        rsq = hhjax.resting_state(hhjax.presets.squid())
        assert float(r52.v) - 65.0 == pytest.approx(float(rsq.v), abs=1e-9)
        stim = hhjax.stimulus.step_current(10.0, 5.0)
        a = hhjax.simulate(hhjax.presets.hh1952(), stim, dt=0.01, t_max=40.0)
        b = hhjax.simulate(hhjax.presets.squid(), stim, dt=0.01, t_max=40.0)
        np.testing.assert_allclose(np.asarray(a.v) - 65.0, np.asarray(b.v), atol=1e-8)


def test_resting_state_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        m = hhjax.presets.squid()

        def v_rest(p):
            return hhjax.resting_state(hhjax.set_params(m, p)).v

        p0 = {"leak.g": 0.3, "leak.e_rev": -54.387, "k.n.alpha.midpoint": -55.0, "temperature": 10.0}
        grad = jax.grad(v_rest)(p0)
        for key, x in p0.items():
            h = 1e-5 * max(1.0, abs(x))
            fd = (float(v_rest({**p0, key: x + h})) - float(v_rest({**p0, key: x - h}))) / (2 * h)
            assert float(grad[key]) == pytest.approx(fd, rel=1e-6, abs=1e-9), key


def test_resting_state_derivatives_in_current_and_over_a_population():
    # The search is never differentiated: its JVP rule (implicit function theorem) gives
    # dV*/dI and, under vmap, one derivative per neuron.
    with jax.enable_x64(True):
        m = hhjax.presets.squid()
        dv_di = jax.grad(lambda i: hhjax.resting_state(m, i_ext=i).v)(2.0)
        h = 1e-4
        fd = (float(hhjax.resting_state(m, 2.0 + h).v) - float(hhjax.resting_state(m, 2.0 - h).v)) / (2 * h)
        assert float(dv_di) == pytest.approx(fd, rel=1e-7)
        gl = jnp.array([0.1, 0.3, 0.5])
        grads = jax.grad(lambda g: hhjax.resting_state(hhjax.set_params(m, {"leak.g": g})).v.sum())(gl)
        for i, g in enumerate([0.1, 0.3, 0.5]):
            one = jax.grad(lambda x: hhjax.resting_state(hhjax.set_params(m, {"leak.g": x})).v)(g)
            assert float(grads[i]) == pytest.approx(float(one), rel=1e-10)


def test_resting_state_with_current_and_population():
    with jax.enable_x64(True):
        m = hhjax.presets.squid()
        s = hhjax.resting_state(m, i_ext=3.0)
        assert abs(float(hhjax.derivatives(m, s, 3.0).v)) < 1e-9
        assert float(s.v) > -64.99
        gl = jnp.array([0.1, 0.3, 0.5])
        pop = hhjax.resting_state(hhjax.set_params(m, {"leak.g": gl}))
        assert pop.v.shape == (3,)
        for i, g in enumerate(gl):
            single = hhjax.resting_state(hhjax.set_params(m, {"leak.g": float(g)}))
            assert float(pop.v[i]) == pytest.approx(float(single.v), abs=1e-10)


def test_resting_search_walks_to_the_lowest_root_on_and_between_grid_points():
    # a passive membrane rests at its leak reversal; the walk up the 0.5 mV grid must
    # find it at the grid's first point, on an interior grid point and between points,
    # alone and over a population (where each neuron stops at its own bracket)
    e_leak = np.array([-150.0, -65.0, -64.8, 0.25, 149.7])
    passive = hhjax.Model(channels={"leak": hhjax.Channel(g=0.1, e_rev=-65.0)})
    with jax.enable_x64(True):
        pop = hhjax.resting_state(hhjax.set_params(passive, {"leak.e_rev": e_leak}))
        np.testing.assert_allclose(np.asarray(pop.v), e_leak, atol=1e-9)
        for i, e in enumerate(e_leak):
            one = hhjax.resting_state(hhjax.set_params(passive, {"leak.e_rev": float(e)}))
            assert float(one.v) == float(pop.v[i])
        # three roots (a leak and a persistent Na current, squid m^3 gate): the lowest
        sq = hhjax.presets.squid()
        nap = hhjax.Channel(g=1.0, e_rev=50.0, gates={"m": sq.channels["na"].gates["m"]})
        leak = hhjax.Channel(g=0.3, e_rev=-65.0)
        m = hhjax.Model(channels={"nap": nap, "leak": leak}, temperature=sq.temperature)
        v = np.linspace(-150.0, 150.0, 3001)
        f = np.asarray(hhjax.derivatives(m, hhjax.steady_state(m, v), 0.0).v)
        roots = v[:-1][np.sign(f[:-1]) != np.sign(f[1:])]
        assert len(roots) == 3
        rest = hhjax.resting_state(m)
        assert roots[0] <= float(rest.v) <= roots[0] + 0.1
        assert abs(float(hhjax.derivatives(m, rest, 0.0).v)) < 1e-9
    with pytest.raises(ValueError, match="no fixed point"):
        hhjax.resting_state(hhjax.set_params(passive, {"leak.e_rev": 150.5}))


def test_resting_state_reports_missing_fixed_point():
    with pytest.raises(ValueError, match="no fixed point"):
        hhjax.resting_state(hhjax.presets.squid(), i_ext=1e6)


def test_currents_sum_to_the_membrane_equation():
    m = hhjax.presets.connor_stevens()
    s = hhjax.steady_state(m, -50.0)
    cur = hhjax.channel_currents(m, s)
    assert set(cur) == {"na", "k", "a", "leak"}
    dvdt = hhjax.derivatives(m, s, 2.0).v
    assert float(dvdt) == pytest.approx((2.0 - sum(float(c) for c in cur.values())) / 1.0, rel=1e-5)
