"""Parameter paths, pytree structure and validation of model values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hhjax


def test_get_params_paths_and_values():
    p = hhjax.get_params(hhjax.presets.squid())
    assert p["na.g"] == 120.0 and p["k.g"] == 36.0 and p["leak.g"] == 0.3
    assert p["leak.e_rev"] == -54.387 and p["na.e_rev"] == 50.0
    assert p["na.m.alpha.midpoint"] == -40.0 and p["k.n.beta.scale"] == -80.0
    assert p["c_m"] == 1.0 and p["temperature"] == 6.3 and p["q10"] == 3.0
    # every leaf of the pytree is addressable, and only leaves are
    assert len(p) == len(jax.tree_util.tree_leaves(hhjax.presets.squid()))
    cs = hhjax.get_params(hhjax.presets.connor_stevens())
    assert cs["a.g"] == 47.7 and cs["a.b.tau.terms.0.value"] == 1.24


def test_set_params_returns_new_model_and_keeps_input():
    m = hhjax.presets.squid()
    m2 = hhjax.set_params(m, {"leak.e_rev": -54.3, "na.m.alpha.midpoint": -41.0})
    assert hhjax.get_params(m2)["leak.e_rev"] == -54.3
    assert hhjax.get_params(m2)["na.m.alpha.midpoint"] == -41.0
    assert hhjax.get_params(m)["leak.e_rev"] == -54.387  # input untouched
    assert jax.tree_util.tree_structure(m) == jax.tree_util.tree_structure(m2)


def test_unknown_path_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown parameter path 'na\.gg'.*'na\.g'"):
        hhjax.set_params(hhjax.presets.squid(), {"na.gg": 1.0})
    with pytest.raises(ValueError, match="unknown parameter path 'leak.erev'.*leak.e_rev"):
        hhjax.set_params(hhjax.presets.squid(), {"leak.erev": 1.0})


@pytest.mark.parametrize(
    "path,value,match",
    [
        ("na.g", -1.0, "conductance.*>= 0"),
        ("c_m", 0.0, "c_m.*> 0"),
        ("k.e_rev", float("nan"), "finite"),
        ("leak.g", np.array([0.3, np.inf]), "finite"),
    ],
)
def test_bad_values_rejected(path, value, match):
    with pytest.raises(ValueError, match=match):
        hhjax.set_params(hhjax.presets.squid(), {path: value})


def test_model_structure_errors():
    ch = hhjax.Channel(g=1.0, e_rev=0.0)
    with pytest.raises(ValueError, match="channel name"):
        hhjax.Model(channels={"c_m": ch})
    gate = hhjax.AlphaBetaGate(hhjax.rates.Constant(1.0), hhjax.rates.Constant(1.0), power=0)
    with pytest.raises(ValueError, match="power of gate x.y"):
        hhjax.Model(channels={"x": hhjax.Channel(1.0, 0.0, {"y": gate})})
    with pytest.raises(TypeError, match="Channel"):
        hhjax.Model(channels={"x": 3.0})


def test_presets_get_unknown():
    with pytest.raises(ValueError, match="unknown preset 'squidd'.*did you mean 'squid'"):
        hhjax.presets.get("squidd")
    assert hhjax.get_params(hhjax.presets.get("neuron_hh"))["leak.e_rev"] == -54.3


def test_model_is_a_pytree_under_jit_vmap_grad():
    m = hhjax.presets.squid()
    f = jax.jit(lambda m: hhjax.derivatives(m, hhjax.steady_state(m, -60.0), 0.0).v)
    assert np.isfinite(float(f(m)))
    gs = jnp.linspace(100.0, 140.0, 5)
    batched = jax.vmap(lambda g: f(hhjax.set_params(m, {"na.g": g})))(gs)
    assert batched.shape == (5,)
    grad = jax.grad(f)(m)
    assert jax.tree_util.tree_structure(grad) == jax.tree_util.tree_structure(m)
