"""hhjax.jit: CPU compile options only where they apply, same results as jax.jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import hhjax
from hhjax import xla


def test_cpu_options_follow_the_processor_and_the_users_flags(monkeypatch):
    monkeypatch.setattr(xla, "_has_avx512", lambda: True)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert xla.cpu_compiler_options() == {"xla_cpu_prefer_vector_width": "512"}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_prefer_vector_width=256")
    assert xla.cpu_compiler_options() == {}  # the user's choice stands
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(xla, "_has_avx512", lambda: False)
    assert xla.cpu_compiler_options() == {}


def test_jit_top_level_and_nested_match_jax_jit(monkeypatch):
    monkeypatch.setattr(xla, "_has_avx512", lambda: True)  # the options path, on any CPU
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    model = hhjax.presets.neuron_hh()
    stim = jnp.where(jnp.arange(800) * 0.025 >= 5.0, 10.0, 0.0)

    def loss(g_na):
        v = hhjax.simulate(hhjax.set_params(model, {"na.g": g_na}), stim, dt=0.025).v
        return jnp.mean(v**2)

    used = []  # the compile options of each jitted function that runs
    real_jit = jax.jit

    def spy_jit(fun, **kw):
        compiled = real_jit(fun, **kw)

        def run(*args, **kws):
            used.append(kw.get("compiler_options"))
            return compiled(*args, **kws)

        return run

    monkeypatch.setattr(xla.jax, "jit", spy_jit)
    fast = xla.jit(jax.value_and_grad(loss))
    monkeypatch.setattr(xla.jax, "jit", real_jit)
    plain = jax.jit(jax.value_and_grad(loss))
    got, want = fast(120.0), plain(120.0)
    assert used == [{"xla_cpu_prefer_vector_width": "512"}]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4)
    # inside another jit (options only apply to the outermost compilation), and vmapped
    nested = jax.jit(lambda g: xla.jit(loss)(g) + 1.0)(120.0)
    np.testing.assert_allclose(float(nested), float(want[0]) + 1.0, rtol=1e-5)
    batched = jax.vmap(xla.jit(loss))(jnp.array([110.0, 120.0]))
    np.testing.assert_allclose(float(batched[1]), float(want[0]), rtol=1e-5)
    monkeypatch.setattr(xla.jax, "jit", spy_jit)
    used.clear()
    inner = xla.jit(loss)
    monkeypatch.setattr(xla.jax, "jit", real_jit)
    jax.jit(lambda g: inner(g))(130.0)
    assert used == [None]  # nested: the plain jit (options there would raise)


def test_simulate_inside_a_user_jit_with_constant_inputs(monkeypatch):
    # every argument a constant, yet inside a trace: hhjax must not pass its options
    # to the nested jit (JAX raises for that)
    monkeypatch.setattr(xla, "_has_avx512", lambda: True)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    model = hhjax.presets.squid()
    stim = np.where(np.arange(400) * 0.025 >= 2.0, 10.0, 0.0).astype(np.float32)
    want = float(hhjax.simulate(model, stim, dt=0.025).v.sum())
    for s in (stim, np.stack([stim, stim])):  # one neuron, and a population
        got = jax.jit(lambda x, s=s: x + hhjax.simulate(model, s, dt=0.025).v.sum())(0.0)
        np.testing.assert_allclose(float(got), want * len(np.atleast_2d(s)), rtol=1e-4)
