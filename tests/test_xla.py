"""hhjax.jit: CPU compile options only where they apply, same results as jax.jit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_loop_threshold_joins_the_users_flags_and_never_replaces_their_choice():
    opt = f"xla_cpu_small_while_loop_byte_threshold={xla.LOOP_BYTES}"
    assert xla._with_loop_option("") == f"--xla_backend_extra_options={opt}"
    assert xla._with_loop_option("--xla_cpu_prefer_vector_width=256") == (
        f"--xla_cpu_prefer_vector_width=256 --xla_backend_extra_options={opt}"
    )
    assert xla._with_loop_option("--xla_backend_extra_options=a=1 --x=2") == (
        f"--xla_backend_extra_options=a=1,{opt} --x=2"  # one map: theirs, then ours
    )
    assert xla._with_loop_option("--xla_backend_extra_options=") == (
        f"--xla_backend_extra_options={opt}"
    )
    mine = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=64"
    assert xla._with_loop_option(mine) is None


_LOOPS = """
import json, sys
import jax, jax.numpy as jnp
if sys.argv[1] == "late":
    jnp.ones(2).block_until_ready()  # a JAX backend starts before hhjax is imported
import os, hhjax
model = hhjax.presets.neuron_hh()
# 8 neurons: one neuron's gradient loops fit under XLA's default 1 kB since the
# ExpLinear rates skip expm1; 8 neurons' do not
stim = jnp.tile(jnp.where(jnp.arange(400) * 0.025 >= 2.0, 10.0, 0.0), (8, 1))
def loss(g):
    return jnp.mean(hhjax.simulate(hhjax.set_params(model, {"na.g": g}), stim, dt=0.025).v ** 2)
hlo = jax.jit(jax.grad(loss)).lower(120.0).compile().as_text()
print(json.dumps({"configured": hhjax.xla.loops_configured,
                  "flags": os.environ.get("XLA_FLAGS", ""),
                  "loops": hlo.count(" while("), "one_function": hlo.count("xla_cpu_small_call")}))
"""


def _loops(case: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HHJAX_XLA_FLAGS")}
    out = subprocess.run(
        [sys.executable, "-c", _LOOPS, case], env={**base, **env}, capture_output=True,
        text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_makes_small_populations_gradient_loops_single_functions():
    on = _loops("fresh")
    assert on["configured"] and "xla_cpu_small_while_loop_byte_threshold" in on["flags"]
    assert on["loops"] >= 2 and on["one_function"] == on["loops"]  # backward loop too
    off = _loops("fresh", HHJAX_XLA_FLAGS="0")  # opted out: XLA's default 1 kB
    assert not off["configured"] and off["flags"] == ""
    assert off["one_function"] < off["loops"]  # so the flag is what made the difference
    late = _loops("late")  # a backend already started: left alone
    assert not late["configured"] and late["flags"] == ""


def test_tile_formulas_fit_a_threshold_of_the_tile_budget_alone():
    # hhjax's threshold (LOOP_BYTES) is above the budget a tile's neurons are sized to
    # (TILE_BYTES), so in this process a tile formula that undercounts would still fit.
    # The same tests, with the threshold at the budget (the user's own flag, which
    # hhjax keeps): the forward and gradient tiles must still be one function each; the
    # tables' tiles have no room left, nor have RK4's smallest ones: not cut (those
    # cases skip)
    assert xla.TILE_BYTES < xla.LOOP_BYTES
    flag = f"xla_cpu_small_while_loop_byte_threshold={xla.TILE_BYTES}"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HHJAX_XLA_FLAGS")}
    env["XLA_FLAGS"] = f"--xla_backend_extra_options={flag}"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         "tests/test_performance_variants.py", "-k", "tile_size_keeps"],
        env=env, capture_output=True, text=True, cwd=root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"\b7 passed, 5 skipped\b", proc.stdout), proc.stdout[-1000:]


_CACHE = """
import json, sys
import jax
if sys.argv[1] == "theirs":
    jax.config.update("jax_compilation_cache_dir", sys.argv[2])
import numpy as np, hhjax
from jax._src import monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
path = hhjax.xla.enable_compile_cache()
stim = np.where(np.arange(200) * 0.025 >= 1.0, 10.0, 0.0).astype(np.float32)
hhjax.simulate(hhjax.presets.squid(), stim, dt=0.025).v.block_until_ready()
print(json.dumps({"path": None if path is None else str(path),
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def _cache(tmp_path: Path, *args: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("HHJAX_COMPILE_CACHE", "XDG_CACHE_HOME")}
    out = subprocess.run(
        [sys.executable, "-c", _CACHE, *args], env={**base, "XDG_CACHE_HOME": str(tmp_path), **env},
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_compile_cache_lets_a_second_process_skip_compiling(tmp_path):
    first = _cache(tmp_path, "ours")
    assert first["path"] == str(tmp_path / "hhjax" / "xla")
    assert first["misses"] >= 1 and first["hits"] == 0
    assert any((tmp_path / "hhjax" / "xla").iterdir())  # programs written to disk
    second = _cache(tmp_path, "ours")
    assert second["hits"] >= 1 and second["misses"] == 0  # nothing compiled again
    theirs = tmp_path / "theirs"
    assert _cache(tmp_path, "theirs", str(theirs))["path"] is None  # the user's choice
    assert _cache(tmp_path / "off", "ours", HHJAX_COMPILE_CACHE="0")["path"] is None
    assert not (tmp_path / "off").exists()
