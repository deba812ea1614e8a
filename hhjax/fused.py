"""The forward population run on a GPU as one fused kernel (Pallas): state in registers.

XLA runs a ``lax.scan`` on a GPU as at least one kernel launch per step, and every
step reads and writes every neuron's state in device memory: in float32, ~36 bytes per
neuron-step (V and three gates in and out, the current, the record), which bounds a
plain scan near 7.6e10 neuron-steps/s on an H100 (2.72 TB/s measured); in practice its
launches bound it lower (4000 steps took ~0.1 s at every N up to 1e6 neurons, see
``benchmarks/README.md``). Here one kernel runs the
whole time loop: each GPU thread keeps its neurons' state in registers from the first
step to the last, and touches device memory only for the stimulus (one value per step
shared by all neurons when it is factored, see :mod:`hhjax.stimulus`) and what is
recorded. The step is the same function as everywhere else
(:mod:`hhjax.integrators`), traced into the kernel, so every method, model and record
kind runs here; the rates are evaluated exactly (``rates="table"`` runs through XLA).

:func:`run` has the contract of the XLA population run in :mod:`hhjax.simulate`
(records ``(N, n_rec)``, final state, max |V|, spike counts and times), with the same
recording semantics; results agree to rounding (a GPU kernel contracts ``a * b + c``
into one fused multiply-add where XLA may not). ``interpret=True`` runs the kernel
through Pallas's interpreter on any backend (the tests do, on a CPU).

Measured on an H100 (float32, NEURON ``hh``, 4000 steps): one neuron 7.9 ms instead of
119 ms through XLA's scan; 1e6 neurons recording V every 10th step 8.6e10
neuron-steps/s with exponential Euler and 1.1e11 with forward Euler, spikes only 8.1e10.
Without a dense record the bound is the step's arithmetic (~1.8e11 estimated for
exponential Euler).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .integrators import get_method
from .model import Model, State

Array = jax.Array

__all__ = ["BLOCK", "available", "max_neurons", "run"]

BLOCK = 128  # neurons per kernel program (one GPU thread block)
NUM_WARPS = 4  # warps per program: BLOCK / (32 * NUM_WARPS) neurons per thread
# Records: written time-major (n_rec, N) with whole-row stores and transposed once
# after the kernel (two copies of the record at once), or straight into (N, n_rec)
# with one strided store per neuron and step (in place, one copy). On an H100 at 1e6
# neurons, V every step: 83-87 ms against 131-190 ms (``benchmarks/README.md``), so
# :func:`hhjax.simulate` writes time-major when two copies fit in half the free
# memory and a record has under 2**31 entries (strided records of 4e9 entries were
# checked on a GPU, time-major ones that large were not). None: that choice;
# True/False force one (benchmarks).
TIME_MAJOR: bool | None = None
ROWS, TIME_MAJOR_ROWS = 1, 2  # values of simulate's ``cfg.fused``: how records are written


@functools.cache
def _triton() -> bool:
    """Pallas's Triton backend imports (JAX 0.11 marks it deprecated, in favour of
    Mosaic GPU), and ``HHJAX_FUSED=0`` does not opt out."""
    if os.environ.get("HHJAX_FUSED", "1") == "0":
        return False
    try:
        from jax.experimental.pallas import triton  # noqa: F401
    except ImportError:
        return False
    return True


INDEX_LIMIT = 2**31  # the spike store's flat indices are int32 (JAX's default ints)


def max_neurons(cfg: Any) -> int:
    """The largest population one kernel call takes: its spike store's flat indices
    (neuron x ``max_spikes`` + slot) must stay below :data:`INDEX_LIMIT` (about 3.4e7
    neurons at 64 spikes each; :func:`hhjax.simulate` runs more in chunks)."""
    if not cfg.max_spikes:
        return INDEX_LIMIT - 1
    return max(BLOCK, (INDEX_LIMIT - 1) // cfg.max_spikes // BLOCK * BLOCK - BLOCK)


def available(cfg: Any, platform: str) -> bool:
    """Whether the kernel runs this configuration on devices of ``platform``: a GPU
    (``"gpu"``/``"cuda"``) with Pallas's Triton backend, exact rates (tables are
    gathers, which XLA keeps). Else :func:`hhjax.simulate` runs XLA's scan."""
    return platform in ("gpu", "cuda") and cfg.rates == "exact" and _triton()


def _fields(model: Model, recs: dict[str, Any], record: tuple[str, ...]) -> list[Any]:
    """The recorded fields of ``recs`` (as :func:`hhjax.simulate` returns them) as one
    flat list: V, each gate, each channel's current."""
    out: list[Any] = []
    if "v" in record:
        out.append(recs["v"])
    if "gates" in record:
        out += [recs["gates"][g] for g in model.gate_names]
    if "currents" in record:
        out += [recs["currents"][c] for c in model.channels]
    return out


def _observe(
    model: Model, state: State, record: tuple[str, ...], order: Model | None = None
) -> list[Array]:
    """The recorded fields of ``state`` (as the scan observes them), flat, in the gate
    and channel order of ``order`` (default ``model``; a model rebuilt from its leaves
    has its channels in sorted order)."""
    from .simulate import _observe as observe  # (simulate imports this module)

    return _fields(order or model, observe(model, state, record), record)


def _compiler_params() -> Any:
    from jax.experimental.pallas import triton as pt

    # (``TritonCompilerParams`` in JAX releases before the rename)
    make = getattr(pt, "CompilerParams", None) or getattr(pt, "TritonCompilerParams", None)
    return make(num_warps=NUM_WARPS, num_stages=1)


def run(
    model: Model, stim: Array, weights: Array | None, state0: State, dt: Array,
    threshold: Array, cfg: Any, bufs: dict[str, Any] | None = None, *,
    block: int | None = None, interpret: bool = False,
) -> tuple[dict[str, Any], State, Array]:
    """A population of ``N = state0.v.shape[0]`` neurons, every leaf of ``state0``
    ``(N,)``: ``(records, final state, max |V|)`` as :func:`hhjax.simulate`'s population
    run returns them.

    ``stim`` is ``(N, n_steps)``, a shared ``(n_steps,)``, or with ``cfg.factored``
    time profiles ``(n_steps, P)`` weighted per neuron by ``weights`` ``(N, P)``.
    ``bufs``: ``(N, n_rec)`` record buffers to write into (donated by the caller).
    """
    from jax.experimental import pallas as pl  # (imported on first use: ~0.7 s)
    from jax.experimental.pallas import triton as pt

    from .simulate import _crossing, _take  # (simulate imports this module)

    block = block or BLOCK
    interpret = interpret or jax.default_backend() != "gpu"  # (tests, on a CPU)
    dtype = stim.dtype
    n = state0.v.shape[0]
    n_pad = -(-n // block) * block
    every = cfg.every
    n_steps = stim.shape[0] if cfg.factored else stim.shape[-1]
    units = n_steps // every
    n_rec = units + 1
    step = get_method(cfg.method)
    spikes = cfg.max_spikes > 0
    real = jnp.promote_types(dtype, jnp.float32)

    def padded(x: Array) -> Array:  # (N, ...) -> (n_pad, ...) with copies of the last
        return _take(jnp.asarray(x, dtype), 0, n, n_pad - n, True)

    # Model: scalar leaves in one vector (with dt and the threshold), per-neuron rows.
    leaves, treedef = jax.tree_util.tree_flatten(model)
    scalar = [jnp.asarray(x, dtype) for x in leaves if np.ndim(x) == 0]
    rows = [padded(x) for x in leaves if np.ndim(x) == 1]
    kinds = [np.ndim(x) for x in leaves]
    params = jnp.stack(scalar + [jnp.asarray(dt, dtype), jnp.asarray(threshold, dtype)])
    pop = jnp.stack(rows) if rows else jnp.zeros((1, block), dtype)
    gates = model.gate_names
    state_rows = jnp.stack([padded(state0.v)] + [padded(state0.gates[g]) for g in gates])
    # Stimulus: time-major, either profiles (shared, read as scalars) or one row per step.
    if cfg.factored:
        profiles, w = stim, padded(jnp.broadcast_to(weights, (n, stim.shape[1]))).T
    elif stim.ndim == 1:
        profiles, w = stim[:, None], jnp.ones((1, n_pad), dtype)
    else:
        profiles, w = None, None
    shared = profiles is not None
    stim_in = profiles if shared else padded(stim).T  # (n_steps, P) or (n_steps, n_pad)
    w_in = w if shared else jnp.zeros((1, block), dtype)
    n_prof = stim_in.shape[1] if shared else 0

    first = _observe(model, state0, cfg.record)
    time_major = cfg.fused == TIME_MAJOR_ROWS
    rec_shape = (n_rec, n_pad) if time_major else (n, n_rec)
    out_shape = [jax.ShapeDtypeStruct(rec_shape, dtype) for _ in first]
    out_shape += [jax.ShapeDtypeStruct(state_rows.shape, dtype),
                  jax.ShapeDtypeStruct((n_pad,), dtype)]
    inputs = [params, pop, state_rows, w_in, stim_in]
    aliases: dict[int, int] = {}
    if spikes:
        out_shape += [jax.ShapeDtypeStruct((n_pad,), jnp.int32),
                      jax.ShapeDtypeStruct((n_pad * cfg.max_spikes,), dtype)]
        aliases[len(inputs)] = len(out_shape) - 1  # written in place over NaN
        inputs.append(jnp.full((n_pad * cfg.max_spikes,), jnp.nan, dtype))
    n_fields = len(first)
    if bufs is not None and not time_major:
        for j, b in enumerate(_fields(model, bufs, cfg.record)):
            aliases[len(inputs)] = j
            inputs.append(b)

    n_in = len(inputs)

    def kernel(params_ref, pop_ref, s0_ref, w_ref, stim_ref, *refs):
        refs = refs[n_in - 5:]  # (the inputs aliased to outputs are written as outputs)
        rec_refs, (final_ref, vmax_ref) = refs[:n_fields], refs[n_fields:n_fields + 2]
        if spikes:
            count_ref, times_ref = refs[n_fields + 2:n_fields + 4]
        start = pl.multiple_of(pl.program_id(0) * block, block)
        sl = pl.ds(start, block)
        row = start + jnp.arange(block, dtype=jnp.int32)
        live = row < n
        it_s, it_p = iter(range(len(scalar))), iter(range(len(rows)))
        m = jax.tree_util.tree_unflatten(treedef, [
            params_ref[next(it_s)] if k == 0 else pop_ref[next(it_p), sl] for k in kinds
        ])
        h, thr = params_ref[len(scalar)], params_ref[len(scalar) + 1]
        s0 = State(s0_ref[0, sl], {g: s0_ref[1 + j, sl] for j, g in enumerate(gates)})
        wts = [w_ref[p, sl] for p in range(n_prof)]

        def current(k: Array) -> Array:
            if not shared:
                return stim_ref[k, sl]
            total = wts[0] * stim_ref[k, 0]
            for p in range(1, n_prof):
                total = total + wts[p] * stim_ref[k, p]
            return total

        def write(u: Array, state: State) -> None:
            for ref, x in zip(rec_refs, _observe(m, state, cfg.record, model), strict=True):
                if time_major:
                    ref[u, sl] = x
                else:
                    pt.store(ref.at[sl, u], x, mask=live)

        def one(k: Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
            state, v_max, tally = carry
            new = step(m, state, current(k), h)
            v_max = jnp.maximum(v_max, jnp.abs(new.v))
            if spikes:
                count, first_t, last_t = tally
                crossed, t = _crossing(state.v, new.v, thr, k, h, real)
                tally = (count + crossed.astype(jnp.int32),
                         jnp.where(crossed, jnp.minimum(first_t, t), first_t),
                         jnp.where(crossed, t, last_t))
            return new, v_max, tally

        def merge(stored: Array, tally: tuple[Array, ...]) -> Array:
            n_blk, first_t, last_t = tally
            at = row * cfg.max_spikes + stored
            ok = live & (stored < cfg.max_spikes)
            pt.store(times_ref.at[at], first_t.astype(dtype), mask=ok & (n_blk >= 1))
            ok2 = live & (stored + 1 < cfg.max_spikes)
            pt.store(times_ref.at[at + 1], last_t.astype(dtype), mask=ok2 & (n_blk >= 2))
            return stored + jnp.minimum(n_blk, 2)

        def steps(k0: Array, k1: Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
            state, v_max, count, stored = carry
            tally = None
            if spikes:
                zero = jnp.zeros((block,), jnp.int32)
                tally = (zero, jnp.full((block,), jnp.inf, real), jnp.zeros((block,), real))
            if every == 1:  # (a unit is one step; there are no remainder steps)
                state, v_max, tally = one(k0, (state, v_max, tally))
            else:
                state, v_max, tally = jax.lax.fori_loop(k0, k1, one, (state, v_max, tally))
            if spikes:
                count = count + tally[0]
                stored = merge(stored, tally)
            return state, v_max, count, stored

        def unit(u: Array, carry: tuple[Any, ...]) -> tuple[Any, ...]:
            carry = steps(u * every, (u + 1) * every, carry)
            if n_fields:
                write(u + 1, carry[0])
            return carry

        if n_fields:
            write(jnp.int32(0), s0)
        zero = jnp.zeros((block,), jnp.int32)
        carry = (s0, jnp.abs(s0.v), zero, zero)
        i32 = jnp.int32  # (loop indices stay int32 under x64)
        carry = jax.lax.fori_loop(i32(0), i32(units), unit, carry)
        if units * every < n_steps:  # steps after the last recorded sample
            carry = steps(i32(units * every), i32(n_steps), carry)
        state, v_max, count, _ = carry
        final_ref[0, sl] = state.v
        for j, g in enumerate(gates):
            final_ref[1 + j, sl] = state.gates[g]
        vmax_ref[sl] = v_max
        if spikes:
            count_ref[sl] = count

    outs = pl.pallas_call(
        kernel, out_shape=out_shape, grid=(n_pad // block,),
        input_output_aliases=aliases, interpret=interpret,
        compiler_params=None if interpret else _compiler_params(),
    )(*inputs)
    recs_flat = outs[:n_fields]
    if time_major:
        recs_flat = [r[:, :n].T for r in recs_flat]
    final_rows, v_max = outs[n_fields], outs[n_fields + 1][:n]
    final = State(final_rows[0, :n], {g: final_rows[1 + j, :n] for j, g in enumerate(gates)})
    recs: dict[str, Any] = {}
    flat = iter(recs_flat)
    if "v" in cfg.record:
        recs["v"] = next(flat)
    if "gates" in cfg.record:
        recs["gates"] = {g: next(flat) for g in gates}
    if "currents" in cfg.record:
        recs["currents"] = {c: next(flat) for c in model.channels}
    if spikes:
        recs["spike_counts"] = outs[n_fields + 2][:n]
        recs["spike_times"] = outs[n_fields + 3].reshape(n_pad, cfg.max_spikes)[:n]
    return recs, final, v_max
