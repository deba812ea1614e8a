"""The simulation driver: one ``jax.lax.scan`` over the stimulus, and ``Trace``.

``simulate`` validates its inputs (before anything compiles), moves the population
axis, if any, to the outside with one ``jax.vmap``, and runs a jit-compiled scan whose
per-step input is the stimulus. Recording every k-th step is a nested scan, so memory
follows what is recorded rather than the number of steps; ``record="spikes"`` keeps
only spike counts and a fixed number of interpolated spike times per neuron (O(N)
memory). A population is sharded across every local device (on a CPU, one device
per core; see :mod:`hhjax.population`), runs on each in tiles whose time loop XLA
compiles as one function (:func:`_run_tiles`), and is split into chunks when it would
not fit in memory. On a GPU, a forward run (one neuron or a population, exact rates)
is one kernel whose threads keep their neurons' state in registers for the whole time
loop (:mod:`hhjax.fused`); XLA's scan launches kernels every step there. Under
``jax.grad`` or ``jax.jvp`` (on a CPU) a population is split over the devices too, and
each device runs its share in smaller tiles, one after the other, sized for the
backward loop (:func:`_grad_devices`, :func:`_scan_tiles`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from . import fused, lanes, recpool, xla
from ._checks import check_finite, check_positive_scalar, is_concrete
from .integrators import get_method
from .model import (
    Model,
    State,
    _resting_v_single,
    channel_currents,
    population_axes,
    steady_state,
)
from .params import validate_model
from .population import AXIS, Progress, available_memory, chunk_size, cores, population_mesh
from .stimulus import Stimulus, n_steps
from .tables import build_tables, check_tabulable, exp_euler_table, table_bytes

Array = jax.Array

__all__ = ["RATES", "RECORDABLE", "DivergenceError", "Trace", "simulate"]

RECORDABLE = ("v", "gates", "currents", "spikes")
RATES = ("exact", "table")
V_LIMIT = 1e4  # mV; |V| beyond this (or NaN/inf) means the integration diverged
SPIKE_BLOCK_MS = 1.0  # spikes-only mode merges crossings into the buffer once per ~1 ms
_MIN_TILE = 128  # neurons: smaller tiles would spend their time in loop overhead
_LANES = 16  # neurons per 512-bit vector in float32: tiles are multiples of this
_SPIKES_PER_BLOCK = 2  # crossing times kept per merge block (first and last)


class DivergenceError(ValueError):
    """The integration diverged (V non-finite or beyond 1e4 mV): the step is unstable."""


class Trace(NamedTuple):
    """The result of :func:`simulate`.

    Attributes:
        t: recorded times, ms, starting at 0 (shape ``(n_rec,)``; empty when only
            spikes are recorded).
        v: membrane potential, mV, ``(..., n_rec)`` (``None`` if not recorded).
        gates: each gate (``"na.m"``, ...), ``(..., n_rec)``, or ``None``.
        currents: each channel's current density, uA/cm2 (outward positive),
            ``(..., n_rec)``, or ``None``.
        final: the state after the last step (pass as ``state0`` to continue a run).
        v_max: the largest |V| (mV) reached in the run, ``(...)``.
        spike_times: with ``record="spikes"``: upward threshold crossings, ms from the
            start, linearly interpolated between steps, ``(..., max_spikes)``, in
            order, NaN where unused; else ``None``.
        spike_counts: with ``record="spikes"``: number of crossings, ``(...)`` int32
            (it counts every crossing, also those beyond ``max_spikes``); else ``None``.
    """

    t: Array
    v: Array | None
    gates: dict[str, Array] | None
    currents: dict[str, Array] | None
    final: State
    v_max: Array
    spike_times: Array | None = None
    spike_counts: Array | None = None


def _observe(model: Model, state: State, record: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "v" in record:
        out["v"] = state.v
    if "gates" in record:
        out["gates"] = state.gates
    if "currents" in record:
        out["currents"] = channel_currents(model, state)
    return out


class _Static(NamedTuple):
    """Everything that selects a compiled program (hashable; the jit's static part)."""

    method: str
    record: tuple[str, ...]  # dense records ("v", "gates", "currents")
    every: int  # steps per recording unit (the spike-merge block in spikes-only mode)
    checkpoint: bool
    max_spikes: int  # 0: no spike recording
    rates: str
    factored: bool = False  # stim holds profiles (time-major, P per step), weights (..., P)
    tile: int = 0  # neurons per tile of a population run (0: the whole population at once)
    devices: tuple[Any, ...] = ()  # the devices a population is split over (empty: one)
    step_remat: bool = True  # under jax.grad, recompute each step's inside (see _unit_runner)
    lanes: bool = False  # one neuron with its gates as one vector (:mod:`hhjax.lanes`)
    alone: bool = False  # one neuron, not under vmap: spike times written in place
    fused: int = 0  # forward run as one GPU kernel (:mod:`hhjax.fused`): how it records


def _unit_runner(
    model: Model, weights: Array | None, dt: Array, threshold: Array, tables: Any,
    cfg: _Static, dtype: Any, track_vmax: bool,
) -> Any:
    """``run_unit(carry, i_unit) -> carry``: one recording unit (``cfg.every`` steps, or
    the steps of ``i_unit``) of the carry ``(state, max |V|, step index, spike store)``.

    A unit of more than one step is an inner scan whose spike crossings (at most the
    first and last of the unit are timed) are merged into the store once per unit.
    ``track_vmax``: update max |V| every step (else it stays as it came in).

    Within a unit the spike tally is (crossings, max |V|, first and last crossing time),
    in float32 or float64 (float16 has no complex type, so its tally runs in float32:
    same numbers). Outside tiles it is held as two complex arrays: XLA's CPU backend
    writes each per-neuron array of a loop's carry with a kernel of its own (a task,
    and a pass over the array, every step); paired, the bookkeeping takes 2 kernels a
    step instead of 5 and a copy (float32 spikes only, tabulated rates: 1.23 s against
    1.32 s at 1e5 neurons, 13.8 s against 16.8 s at 1e6; ``benchmarks/README.md``). A
    tile's loop is one function, where the pairing's shuffles cost more than the
    kernels it saves: four real arrays took 0.944x the time at 1e4 neurons, exact rates
    (0.973x at 1e5; tables: 1.003x). Same spike times either way.
    """
    if cfg.rates == "table":
        def step(m: Model, s: State, i: Array, h: Array) -> State:
            return exp_euler_table(m, tables, s, i, h)
    elif cfg.lanes:  # (the carry's state is a lanes.Packed)
        step = lanes.METHODS[cfg.method]
    else:
        step = get_method(cfg.method)
    # Under jax.grad, keep only each step's inputs and recompute its inside in the
    # backward pass: far less memory traffic than storing every intermediate of every
    # step (no cost in a forward run). Not with ``step_remat=False`` (one neuron: see
    # :func:`simulate`).
    if cfg.step_remat:
        step = jax.checkpoint(step, prevent_cse=False)
    spikes = cfg.max_spikes > 0
    real = jnp.promote_types(dtype, jnp.float32)  # the tally's parts (complex: f32, f64)
    paired = not cfg.tile

    def pack(count: Array, v_max: Array, first: Array, last: Array) -> tuple[Array, ...]:
        if paired:
            return jax.lax.complex(count, v_max), jax.lax.complex(first, last)
        return count, v_max, first, last

    def unpack(tally: tuple[Array, ...]) -> tuple[Array, ...]:
        if paired:
            return tuple(f(x) for x in tally for f in (jnp.real, jnp.imag))
        return tally

    def one(carry: tuple[Any, ...], i_ext: Array) -> tuple[tuple[Any, ...], None]:
        state, v_max, k, tally = carry  # spikes: v_max is in the tally
        if cfg.factored:  # elementwise, so it fuses into the step (a dot would not)
            i_ext = jnp.sum(weights * i_ext, axis=-1)
        new = step(model, state, i_ext, dt)
        if spikes:
            count, v_max, first, last = unpack(tally)
        if track_vmax:
            v_max = jnp.maximum(v_max, jnp.abs(new.v))
        if spikes:
            crossed, t_cross = _crossing(state.v, new.v, threshold, k, dt, real)
            tally = pack(  # crossings come in time order
                count + crossed.astype(real), v_max.astype(real),
                jnp.where(crossed, jnp.minimum(first, t_cross), first),
                jnp.where(crossed, t_cross, last),
            )
            v_max = None
        return (new, v_max, k + 1, tally), None

    def merge(store: tuple[Array, Array, Array], tally: tuple[Array, ...]) -> tuple[Array, ...]:
        count, n_stored, times = store
        n_blk, _, first, last = unpack(tally)
        n_blk = n_blk.astype(jnp.int32)
        n_stored_next = n_stored + jnp.minimum(n_blk, _SPIKES_PER_BLOCK)
        if cfg.alone:  # see _carry0
            at = jnp.minimum(n_stored, cfg.max_spikes)
            kept = jax.lax.dynamic_slice(times, (at,), (_SPIKES_PER_BLOCK,))
            new = jnp.stack([first, last]).astype(times.dtype)
            new = jnp.where(jnp.arange(_SPIKES_PER_BLOCK) < n_blk, new, kept)
            return count + n_blk, n_stored_next, jax.lax.dynamic_update_slice(times, new, (at,))
        slot = jnp.arange(cfg.max_spikes, dtype=jnp.int32)
        at, n_blk_ = n_stored[..., None], n_blk[..., None]
        first, last = (x.astype(times.dtype)[..., None] for x in (first, last))
        times = jnp.where((slot == at) & (n_blk_ >= 1), first, times)
        times = jnp.where((slot == at + 1) & (n_blk_ >= 2), last, times)
        return count + n_blk, n_stored_next, times

    def run_unit(carry: tuple[Any, ...], i_unit: Array, single: bool = False) -> tuple[Any, ...]:
        # single: i_unit is one step's input (no unit axis). Under jax.grad, a step's
        # input that is the scan's own input is read from there in the backward pass;
        # taken out of a unit axis, it is a new value and stored per step.
        state, v_max, k, store = carry
        inner = (state, v_max, k, None)
        if spikes:  # no crossing yet: count 0, first crossing at +inf
            zeros = jnp.zeros_like(state.v, real)
            tally0 = pack(zeros, v_max.astype(real), jnp.full_like(zeros, jnp.inf), zeros)
            inner = (state, None, k, tally0)
        if single:
            inner, _ = one(inner, i_unit)
        elif i_unit.shape[0] == 1:
            inner, _ = one(inner, i_unit[0])
        else:
            inner, _ = jax.lax.scan(one, inner, i_unit)
        state, v_max, k, tally = inner
        if spikes:
            v_max = unpack(tally)[1].astype(state.v.dtype)
            store = merge(store, tally)
        return state, v_max, k, store

    return run_unit


def _crossing(
    v_old: Array, v_new: Array, threshold: Array, k: Array, dt: Array, real: Any
) -> tuple[Array, Array]:
    """Whether step ``k`` (from ``v_old`` to ``v_new``) crossed ``threshold`` upward, and
    when (linear interpolation, ms, in ``real``); the XLA scan and the GPU kernel share it."""
    crossed = (v_old < threshold) & (v_new >= threshold)
    rise = jnp.where(crossed, v_new - v_old, 1.0)
    return crossed, ((k.astype(v_old.dtype) + (threshold - v_old) / rise) * dt).astype(real)


def _carry0(state0: State, cfg: _Static) -> tuple[Any, ...]:
    """The carry of :func:`_unit_runner` at the start of a run from ``state0``.

    With ``cfg.alone`` the spike store has :data:`_SPIKES_PER_BLOCK` slots more, where
    the times past ``max_spikes`` land (cut off at the end): a block's times are then
    written in place, instead of a pass over every slot. One neuron's spikes-only
    program then estimates 788 flops instead of 1167, under the 1000 below which XLA
    runs it on the calling thread (:func:`_once`): 4000 steps took 0.45-0.51 ms instead
    of 0.57-0.61 ms (V every step: 0.44-0.47 ms).
    """
    store0 = None
    if cfg.max_spikes:
        count0 = jnp.zeros_like(state0.v, jnp.int32)
        slots = cfg.max_spikes + (_SPIKES_PER_BLOCK if cfg.alone else 0)
        times0 = jnp.full((*state0.v.shape, slots), jnp.nan, state0.v.dtype)
        store0 = (count0, count0, times0)
    return state0, jnp.abs(state0.v), jnp.int32(0), store0


def _primal_by(fast: Any, slow: Any) -> Any:
    """``fast(carry, xs)``, differentiated as ``slow`` (the same function, computed
    another way): the backward pass recomputes ``slow`` from the saved inputs, as
    ``jax.checkpoint(slow)`` would. Values ``fast`` and ``slow`` close over (the model's
    tracers) get their cotangents through ``slow``."""

    def run(carry: Any, xs: Array) -> Any:
        fast_c, fast_consts = jax.closure_convert(fast, carry, xs)
        slow_c, slow_consts = jax.closure_convert(slow, carry, xs)

        @jax.custom_vjp
        def f(fast_consts: list[Any], slow_consts: list[Any], carry: Any, xs: Array) -> Any:
            return fast_c(carry, xs, *fast_consts)

        def f_fwd(fast_consts: list[Any], slow_consts: list[Any], carry: Any, xs: Array) -> Any:
            return f(fast_consts, slow_consts, carry, xs), (fast_consts, slow_consts, carry, xs)

        def f_bwd(res: Any, ct: Any) -> Any:
            fast_consts, slow_consts, carry, xs = res
            _, vjp = jax.vjp(lambda c, a, x: slow_c(a, x, *c), slow_consts, carry, xs)
            zeros = jax.tree_util.tree_map(jnp.zeros_like, fast_consts)
            return (zeros, *vjp(ct))

        f.defvjp(f_fwd, f_bwd)
        return f(fast_consts, slow_consts, carry, xs)

    return run


def _scan_checkpointed(
    scan_units: Any, carry: Any, head: Array, remat: bool = True
) -> tuple[Any, Any]:
    """``scan_units(carry, head)`` with sqrt(T) memory for gradients: the carry is saved
    only at group boundaries and each group of ~sqrt(units) units is recomputed in the
    backward pass (``remat=False``: ``scan_units`` does that itself, see
    :func:`_primal_by`)."""
    units = head.shape[0]
    group = max(1, int(round(units**0.5)))
    n_groups = units // group
    grouped = head[: n_groups * group].reshape(n_groups, group, *head.shape[1:])
    if remat:
        scan_units = jax.checkpoint(scan_units)
    carry, recs = jax.lax.scan(scan_units, carry, grouped)
    recs = jax.tree_util.tree_map(lambda r: r.reshape(n_groups * group, *r.shape[2:]), recs)
    if n_groups * group < units:
        carry, rest = scan_units(carry, head[n_groups * group:])
        recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), recs, rest)
    return carry, recs


def _vmax_from_record(cfg: _Static, alone: bool, in_tile: bool = False) -> bool:
    """With V recorded every step, read max |V| off the record afterwards (one pass over
    it) instead of updating it every step (one more kernel per step). Two cases update
    it in the loop:

    * one neuron with a one-stage method: a pass over the record counts its full size
      in XLA's cost estimate, which decides whether the program runs on the calling
      thread (see :func:`_once`);
    * a tile of a forward population run (:func:`_run_tiles`): its loop is one function,
      where the update is a few instructions a step, while reading the tile's rows of
      the record took a copy of them and two passes more (~10 % of the run at 1e4
      neurons here, ``benchmarks/README.md``).
    """
    if in_tile or (alone and cfg.method in _ONE_STAGE):
        return False
    return cfg.every == 1 and "v" in cfg.record


def _run_single(
    model: Model, stim: Array, weights: Array | None, state0: State | None, dt: Array,
    threshold: Array, tables: Any, cfg: _Static, population_first: bool = False,
    bufs: dict[str, Any] | None = None, row: Array | int = 0, alone: bool = False,
    in_tile: bool = False,
) -> tuple[dict[str, Any], State, Array]:
    """Simulate one neuron, or a vector of neurons: (records incl. t = 0, final, max |V|).

    ``stim`` is time-major: ``(n_steps,)``, or ``(n_steps, N)`` with every state leaf
    ``(N,)`` (then ``state0`` is required and records are ``(n_rec, N)``, or
    ``(N, n_rec)`` with ``population_first``: see :func:`_record_population_first`; given
    ``bufs``, they are written into those buffers from row ``row`` on). With
    ``cfg.factored``, ``stim`` is ``(n_steps, P)`` time profiles shared by all neurons
    and each step's current is ``weights @ stim[k]`` (``weights`` ``(P,)`` or ``(N, P)``).
    The steps run in recording units of ``cfg.every`` (:func:`_unit_runner`). ``alone``:
    one neuron, not under ``vmap``; ``in_tile``: a tile of :func:`_run_tiles` (both: see
    :func:`_vmax_from_record`).
    """
    dtype = stim.dtype
    if state0 is None:
        state0 = steady_state(model, _resting_v_single(model, 0.0).astype(dtype))
    vmax_from_record = _vmax_from_record(cfg, alone, in_tile)
    run_unit = _unit_runner(
        model, weights, dt, threshold, tables, cfg, dtype, not vmax_from_record
    )

    every = cfg.every
    n = stim.shape[0]
    units = n // every  # recording units of `every` steps, each ending in a sample
    single = every == 1  # a unit is one step: scan over the steps' inputs themselves

    def state_of(carry: tuple[Any, ...], packed: bool = cfg.lanes) -> State:
        return lanes.unpack(model, carry[0]) if packed else carry[0]

    def units_scan(run_unit: Any, packed: bool) -> Any:
        def block(carry: tuple[Any, ...], i_unit: Array) -> tuple[tuple[Any, ...], Any]:
            carry = run_unit(carry, i_unit, single)
            return carry, _observe(model, state_of(carry, packed), cfg.record)

        return lambda carry, i_units: jax.lax.scan(block, carry, i_units)

    scan_units = units_scan(run_unit, cfg.lanes)
    carry = _carry0(lanes.pack(model, state0) if cfg.lanes else state0, cfg)
    head = stim[:units] if single else stim[: units * every].reshape(units, every, *stim.shape[1:])
    if cfg.checkpoint and cfg.lanes and not cfg.step_remat and units > 1:
        # One neuron's checkpointed gradient (reverse mode, see simulate): the groups
        # run forward in lanes and are differentiated as the scalar step (lanes' own
        # backward pass ran slower); the carry between groups is unpacked. jax.grad
        # over 1e4 steps: 2.56-2.60x the forward run instead of 2.98-3.00x; 1e5 steps:
        # 3.02-3.39x instead of 3.85-4.12x (paired processes, benchmarks/README.md).
        slow = units_scan(_unit_runner(
            model, weights, dt, threshold, tables, cfg._replace(lanes=False), dtype,
            not vmax_from_record,
        ), False)

        def fast(carry: tuple[Any, ...], i_units: Array) -> tuple[tuple[Any, ...], Any]:
            carry, recs = scan_units((lanes.pack(model, carry[0]), *carry[1:]), i_units)
            return (state_of(carry), *carry[1:]), recs

        carry, recs = _scan_checkpointed(
            _primal_by(fast, slow), _carry0(state0, cfg), head, remat=False
        )
        carry = (lanes.pack(model, carry[0]), *carry[1:])
    elif cfg.checkpoint and units > 1 and not population_first:
        carry, recs = _scan_checkpointed(scan_units, carry, head)
    elif population_first:
        carry, recs = _record_population_first(
            scan_units, carry, head, _observe(model, state0, cfg.record), bufs, row
        )
    else:
        carry, recs = scan_units(carry, head)
    if units * every < n:  # remainder steps after the last recorded sample
        carry = run_unit(carry, stim[units * every:])
    if not population_first:
        first = _observe(model, state0, cfg.record)
        recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, recs)
    v_max = carry[1]
    if vmax_from_record:  # the record holds every state, the initial one included
        if population_first:  # this run's rows of the buffer
            rows = jax.lax.dynamic_slice_in_dim(recs["v"], row, state0.v.shape[0])
            v_max = jnp.max(jnp.abs(rows), axis=-1)
        else:
            v_max = jnp.max(jnp.abs(recs["v"]), axis=0)
    if cfg.max_spikes:
        count, _, times = carry[3]
        recs["spike_times"], recs["spike_counts"] = times[..., : cfg.max_spikes], count
    return recs, state_of(carry), v_max


_RECORD_BLOCK = 50  # recording units per block written population-first (measured best)


def _record_population_first(
    scan_units: Any, carry: tuple[Any, ...], head: Array, first: dict[str, Any],
    bufs: dict[str, Any] | None = None, row: Array | int = 0,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Run ``scan_units`` over ``head`` and return the records as ``(N, 1 + units)``.

    The scan's own output is time-major, ``(units, N)``, which would then need a
    concatenation with the first sample and a transpose: two more passes over the
    largest array of the run. Instead, blocks of :data:`_RECORD_BLOCK` units are
    recorded time-major (a small array that stays in cache), transposed and written
    in place into one ``(N, 1 + units)`` buffer per field that holds the first sample
    in column 0. At N = 1e5 this doubled the throughput with V recorded every step.
    Given ``bufs`` (larger than this run), the rows from ``row`` on are written.
    """
    units = head.shape[0]
    if bufs is None:
        bufs = jax.tree_util.tree_map(lambda x: jnp.zeros((x.shape[0], 1 + units), x.dtype), first)
    bufs = jax.tree_util.tree_map(
        lambda b, x: jax.lax.dynamic_update_slice(b, x[:, None], (row, 0)), bufs, first
    )
    if units == 0:
        return carry, bufs
    size = min(_RECORD_BLOCK, units)
    n_blocks, rest = divmod(units, size)

    def write(bufs: Any, recs: Any, col: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda b, r: jax.lax.dynamic_update_slice(b, r.T, (row, col)), bufs, recs
        )

    def block(state: tuple[Any, Any], x: tuple[Array, Array]) -> tuple[Any, None]:
        carry, bufs = state
        j, i_units = x
        carry, recs = scan_units(carry, i_units)
        return (carry, write(bufs, recs, 1 + j * size)), None

    blocks = head[: n_blocks * size].reshape(n_blocks, size, *head.shape[1:])
    (carry, bufs), _ = jax.lax.scan(block, (carry, bufs), (jnp.arange(n_blocks), blocks))
    if rest:
        carry, recs = scan_units(carry, head[n_blocks * size:])
        bufs = write(bufs, recs, 1 + n_blocks * size)
    return carry, bufs


def _batched(state0: State | None) -> bool:
    return state0 is not None and any(np.ndim(x) == 1 for x in jax.tree_util.tree_leaves(state0))


def _run(
    model: Model, stim: Array, weights: Array | None, state0: State | None, dt: Array,
    threshold: Array, cfg: _Static, bufs: None = None,
) -> tuple[dict[str, Any], State, Array]:
    """The whole (local) population: tables once, then ``vmap`` over the neurons (or,
    differentiated, in tiles; split over ``cfg.devices``, if any, first)."""
    if cfg.devices:
        return _run_sharded(model, stim, weights, state0, dt, threshold, cfg, inner=_run)
    tables = build_tables(model, dt, stim.dtype) if cfg.rates == "table" else None
    model_axes, n_model = population_axes(model)
    if cfg.factored:  # profiles shared (time-major), weights per neuron
        stim_axis, w_axis = None, (0 if weights.ndim == 2 else None)
    else:
        stim_axis, w_axis = (0 if stim.ndim == 2 else None), None
    if n_model is None and stim_axis is None and w_axis is None and not _batched(state0):
        return _run_single(model, stim, weights, state0, dt, threshold, tables, cfg, alone=True)
    if cfg.tile:
        return _scan_tiles(model, stim, weights, state0, dt, threshold, tables, cfg)
    state_axes = None if state0 is None else jax.tree_util.tree_map(
        lambda x: 0 if x.ndim == 1 else None, state0
    )
    fn = jax.vmap(
        _run_single,
        in_axes=(model_axes, stim_axis, w_axis, state_axes, None, None, None, None),
    )
    return fn(model, stim, weights, state0, dt, threshold, tables, cfg)


def _scan_tiles(
    model: Model, stim: Array, weights: Array | None, state0: State | None, dt: Array,
    threshold: Array, tables: Any, cfg: _Static,
) -> tuple[dict[str, Any], State, Array]:
    """A differentiated population in tiles of ``cfg.tile`` neurons, one after the other,
    as one scan over tiles x recording units (see :func:`_grad_tile`).

    Every leaf with a population axis (1-D model and state leaves, a 2-D stimulus or
    weights) is padded to whole tiles with copies of its last neuron and split into
    ``(n_tiles, tile, ...)``. The scan runs the units of one tile after the other: each
    unit steps the tile's own model, and one more iteration per tile writes the tile's
    final carry into a buffer of all tiles and restarts the carry from the next tile's
    initial state. So the values the backward pass keeps (each step's state) are
    written once, in place, into one array for the whole population; with V recorded
    every step, each step's current is read there from the scan's input (not stored
    again). (A loop over tiles with a time
    loop inside, ``jax.lax.map``, wrote them per tile and then copied them into a stack
    of all tiles; paired runs at 1000 neurons: 0.144-0.149 s per gradient against
    0.154-0.155 s at 1e4 steps, 1.47-1.58 s against 1.73-1.77 s at 1e5.) Results are
    joined and the padding dropped, so the padded neurons get no cotangent. The steps
    after the last whole unit, if any, run on all tiles at once.
    """
    n = _pop_size(model, stim, weights, state0)
    size, dtype = cfg.tile, stim.dtype
    n_tiles = -(-n // size)
    per_neuron = stim.ndim == 2 and not cfg.factored
    batched = _batched_leaves(model, stim, weights, state0, cfg)
    model, stim, weights, state0 = _take(
        (model, stim, weights, state0), 0, n, n_tiles * size - n, batched
    )
    state0 = _population_state0(model, state0, n_tiles * size, dtype)

    def split(x: Array) -> Array:
        return x.reshape(n_tiles, size, *x.shape[1:])

    def tile_of(tree: Any, j: Array, mask: Any = None) -> Any:
        mask = jax.tree_util.tree_map(lambda _: True, tree) if mask is None else mask
        return jax.tree_util.tree_map(
            lambda x, b: jax.lax.dynamic_index_in_dim(x, j, keepdims=False) if b else x,
            tree, mask,
        )

    model_t = jax.tree_util.tree_map(lambda x, b: split(x) if b else x, model, batched[0])
    weights_t = split(weights) if batched[2] else weights
    state0_t = jax.tree_util.tree_map(split, state0)
    n_steps = stim.shape[0] if cfg.factored else stim.shape[-1]
    every = cfg.every
    units = n_steps // every
    # Each tile runs units + 1 iterations: its units, then one that hands over to the
    # next tile (its unit is computed and dropped: 1 / units more work). Every iteration
    # records the sample before its unit, so a tile's samples are all of its record.
    if per_neuron:  # (n_tiles * (units + 1), every, tile): each tile's units, time-major
        xs = split(stim[:, : units * every]).reshape(n_tiles, size, units, every)
        xs = jnp.pad(xs, ((0, 0), (0, 0), (0, 1), (0, 0)))
        xs = xs.transpose(0, 2, 3, 1).reshape(n_tiles * (units + 1), every, size)
        if every == 1:
            xs = xs[:, 0]
    else:  # shared profiles: each unit's index into them
        head = stim[: units * every].reshape(units, every, *stim.shape[1:])
        xs = jnp.tile(jnp.minimum(jnp.arange(units + 1, dtype=jnp.int32), units - 1), n_tiles)
    track_vmax = not _vmax_from_record(cfg, alone=False)
    state_t, vmax_t, _, store_t = _carry0(state0_t, cfg)
    fin0 = (state_t, vmax_t, store_t)  # each tile's final carry (no step index)

    def block(carry: tuple[Any, ...], x: Array) -> tuple[tuple[Any, ...], Any]:
        inner, fin, j, u = carry
        m, w = tile_of((model_t, weights_t), j, (batched[0], batched[2]))
        # The sample and the tile's final carry are read off the carry coming in, so
        # that the unit's result has one consumer, the next carry. (Read off the
        # result, XLA computed the forward step in more than one fusion: 108 against
        # 68 multiplies per step.)
        rec = _observe(m, inner[0], cfg.record)
        fin = jax.tree_util.tree_map(
            lambda f, y: jax.lax.dynamic_update_index_in_dim(f, y, j, 0),
            fin, (inner[0], inner[1], inner[3]),
        )
        i_unit = x if per_neuron else jax.lax.dynamic_index_in_dim(head, x, keepdims=False)
        run_unit = _unit_runner(m, w, dt, threshold, tables, cfg, dtype, track_vmax)
        new = run_unit(inner, i_unit, single=per_neuron and every == 1)
        # After a tile's hand-over iteration, the next tile's start. (Switching in the
        # carry rather than before a tile's first step matters under jax.grad: the
        # cotangent of the start is then read off the loop's carry; taken off the
        # step's own cotangent, XLA recomputed the backward step in two places.)
        last = u == units
        start = _carry0(tile_of(state0_t, jnp.minimum(j + 1, n_tiles - 1)), cfg)
        inner = jax.tree_util.tree_map(lambda a, b: jnp.where(last, a, b), start, new)
        return (inner, fin, j + last.astype(jnp.int32), jnp.where(last, 0, u + 1)), rec

    def scan_units(carry: tuple[Any, ...], xs: Array) -> tuple[tuple[Any, ...], Any]:
        return jax.lax.scan(block, carry, xs)

    carry = (_carry0(tile_of(state0_t, 0), cfg), fin0, jnp.int32(0), jnp.int32(0))
    if cfg.checkpoint and n_tiles * units > 1:
        carry, recs = _scan_checkpointed(scan_units, carry, xs)
    else:
        carry, recs = scan_units(carry, xs)
    recs = jax.tree_util.tree_map(
        lambda r: r.reshape(n_tiles, units + 1, size).transpose(0, 2, 1).reshape(-1, units + 1),
        recs,
    )
    state, v_max, store = jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:]), carry[1])
    if units * every < n_steps:  # remainder steps after the last sample: all tiles at once
        rest = stim[:, units * every:].T if per_neuron else stim[units * every:]
        run_unit = _unit_runner(model, weights, dt, threshold, tables, cfg, dtype, track_vmax)
        state, v_max, _, store = run_unit((state, v_max, jnp.int32(units * every), store), rest)
    if not track_vmax:
        v_max = jnp.max(jnp.abs(recs["v"]), axis=-1)
    if cfg.max_spikes:
        recs["spike_times"], recs["spike_counts"] = store[2], store[0]
    return jax.tree_util.tree_map(lambda x: x[:n], (recs, state, v_max))


def _pop_size(model: Model, stim: Array, weights: Array | None, state0: State | None) -> int:
    if weights is not None and weights.ndim == 2:
        return weights.shape[0]
    if weights is None and stim.ndim == 2:
        return stim.shape[0]
    for leaf in jax.tree_util.tree_leaves((model, state0)):
        if jnp.ndim(leaf) == 1:
            return jnp.shape(leaf)[0]
    raise ValueError("no population axis")  # unreachable: callers check


def _run_population(
    model: Model, stim: Array, weights: Array | None, state0: State | None, dt: Array,
    threshold: Array, cfg: _Static, bufs: dict[str, Array] | None = None,
) -> tuple[dict[str, Any], State, Array]:
    """The forward population kernel: the neurons as the vector axis of one scan.

    Same arithmetic as ``vmap(_run_single)`` (results are bitwise equal), but every
    state leaf is an ``(N,)`` vector stepped by :func:`_run_single` directly, with the
    stimulus transposed once to time-major ``(n_steps, N)`` and the records written
    population-first ``(N, n_rec)`` block by block (``checkpoint`` has no effect here:
    nothing is differentiated). XLA then runs one time loop over contiguous vectors;
    the loop it builds for the ``vmap`` (which also transposes both) splits the step into more
    kernels and measured 1.5x slower. With ``cfg.tile`` the population runs in tiles,
    each running the whole time loop (:func:`_run_tiles`; before XLA compiled small
    loops as one function, tiles measured no faster). Forward only: traced
    calls (``jax.grad``, user ``jit``/``vmap``) use :func:`_run`. ``bufs``: donated
    ``(N, n_rec)`` record buffers to write into (see ``reuse`` in :func:`simulate`).
    """
    dtype = stim.dtype
    n = _pop_size(model, stim, weights, state0)
    state0 = _population_state0(model, state0, n, dtype)
    if cfg.fused:
        return fused.run(model, stim, weights, state0, dt, threshold, cfg, bufs)
    tables = build_tables(model, dt, stim.dtype) if cfg.rates == "table" else None
    if cfg.factored:  # profiles are already time-major; no (N, n_steps) array exists
        weights = jnp.broadcast_to(weights, (n, weights.shape[-1]))
    if 0 < cfg.tile < n:
        recs, final, v_max = _run_tiles(
            model, stim, weights, state0, dt, threshold, tables, cfg, bufs
        )
    else:
        recs, final, v_max = _run_single(
            model, stim.T if stim.ndim == 2 and not cfg.factored else stim, weights, state0,
            dt, threshold, tables, cfg, population_first=True, bufs=bufs,
        )
    out = {k: recs[k] for k in cfg.record}
    for k in ("spike_times", "spike_counts"):
        if k in recs:
            out[k] = recs[k]
    return out, final, v_max


def _population_state0(model: Model, state0: State | None, n: int, dtype: Any) -> State:
    """``state0`` with every leaf ``(n,)``; if None, each neuron's resting state."""
    if state0 is None:
        axes, n_model = population_axes(model)
        if n_model is None:
            v0 = _resting_v_single(model, 0.0)
        else:
            v0 = jax.vmap(_resting_v_single, in_axes=(axes, None))(model, 0.0)
        state0 = steady_state(model, jnp.broadcast_to(v0.astype(dtype), (n,)))
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,)).astype(dtype), state0)


def _run_tiles(
    model: Model, stim: Array, weights: Array | None, state0: State, dt: Array,
    threshold: Array, tables: Any, cfg: _Static, bufs: dict[str, Array] | None,
) -> tuple[dict[str, Any], State, Array]:
    """:func:`_run_population` one tile of ``cfg.tile`` neurons after the other.

    Each tile runs the whole time loop and writes its rows of the records in place
    (the last tile is shifted back to end at the last neuron, so a few neurons run
    twice, with the same result). A tile is small enough for XLA to compile its loop
    as one function (see :mod:`hhjax.xla`), which runs several times faster per step
    than the same loop kernel by kernel; with one CPU device per core (the default,
    see :mod:`hhjax.population`) every core runs its own shard of tiles.
    """
    n, size = state0.v.shape[0], cfg.tile
    n_rec = (stim.shape[0] if cfg.factored else stim.shape[-1]) // cfg.every + 1

    def rows(x: Any, r0: Array) -> Any:  # a tile of every per-neuron leaf
        return x if np.ndim(x) == 0 else jax.lax.dynamic_slice_in_dim(x, r0, size)

    def put(x: Array, part: Array, r0: Array) -> Array:
        return jax.lax.dynamic_update_slice_in_dim(x, part, r0, 0)

    if bufs is None:
        first = _observe(model, state0, cfg.record)
        bufs = jax.tree_util.tree_map(lambda x: jnp.zeros((n, n_rec), x.dtype), first)
    spikes = cfg.max_spikes > 0
    extra0 = {}
    if spikes:
        extra0 = {"spike_times": jnp.zeros((n, cfg.max_spikes), stim.dtype),
                  "spike_counts": jnp.zeros((n,), jnp.int32)}
    out0 = (bufs, extra0, state0, jnp.zeros((n,), stim.dtype))

    def tile(j: Array, out: tuple[Any, ...]) -> tuple[Any, ...]:
        bufs, extra, final, v_max = out
        r0 = jnp.minimum(j * size, n - size)
        m, s0, w = jax.tree_util.tree_map(lambda x: rows(x, r0), (model, state0, weights))
        st = stim if cfg.factored or stim.ndim == 1 else rows(stim, r0).T
        recs, fin, vm = _run_single(
            m, st, w, s0, dt, threshold, tables, cfg, population_first=True, bufs=bufs, row=r0,
            in_tile=True,
        )
        bufs = {k: recs[k] for k in bufs}
        extra = {k: put(x, recs[k], r0) for k, x in extra.items()}
        final = jax.tree_util.tree_map(lambda x, y: put(x, y, r0), final, fin)
        return bufs, extra, final, put(v_max, vm, r0)

    bufs, extra, final, v_max = jax.lax.fori_loop(0, -(-n // size), tile, out0)
    return {**bufs, **extra}, final, v_max


_run_jit = xla.jit(_run, static_argnames=("cfg",))  # traced inputs (grad, user jit/vmap)


def _leaf_spec(x: Any) -> PartitionSpec:
    """Model and state leaves: 1-D means one value per neuron."""
    return PartitionSpec(AXIS) if np.ndim(x) == 1 else PartitionSpec()


def _run_sharded(
    model: Model, stim: Array, weights: Array | None, state0: State | None, dt: Array,
    threshold: Array, cfg: _Static, bufs: dict[str, Array] | None = None, inner: Any = None,
) -> tuple[dict[str, Any], State, Array]:
    """``inner`` (default :func:`_run_population`) with the population axis split over
    ``cfg.devices`` (default: every local device).

    Every batched input (leading axis = population) is split along it, padded first to
    a multiple of the device count with copies of its last neuron (dropped from the
    results, so they get no cotangent); shared inputs are replicated. Neurons do not
    interact, so the shards run independently (no communication).
    """
    mesh = population_mesh(cfg.devices)  # (empty: every local device)
    n = _pop_size(model, stim, weights, state0)
    pad = -n % mesh.size
    if pad:  # (a concrete population comes padded: see _population_run)
        model, stim, weights, state0 = _take(
            (model, stim, weights, state0), 0, n, pad,
            _batched_leaves(model, stim, weights, state0, cfg),
        )
    inner = inner or _run_population
    local_cfg = cfg._replace(devices=())
    has_state = state0 is not None
    # a factored stimulus shares its profiles (replicated) and splits its weights
    stim_split = stim.ndim == 2 and not cfg.factored
    args = (model, stim, weights, dt, threshold, bufs) + ((state0,) if has_state else ())
    in_specs = (
        jax.tree_util.tree_map(_leaf_spec, model),
        PartitionSpec(AXIS) if stim_split else PartitionSpec(),
        None if weights is None else _leaf_spec(weights[..., 0]),
        PartitionSpec(),
        PartitionSpec(),
        jax.tree_util.tree_map(lambda _: PartitionSpec(AXIS), bufs),
    ) + ((jax.tree_util.tree_map(_leaf_spec, state0),) if has_state else ())

    def local(model: Model, stim: Array, weights: Array | None, dt: Array, threshold: Array,
              bufs: dict[str, Array] | None, *rest: State) -> Any:
        state0 = rest[0] if has_state else None
        return inner(model, stim, weights, state0, dt, threshold, local_cfg, bufs)

    out = jax.shard_map(
        local, mesh=mesh, in_specs=in_specs,
        out_specs=PartitionSpec(AXIS), check_vma=False,
    )(*args)
    return jax.tree_util.tree_map(lambda x: x[:n], out) if pad else out


def _run_one_fused(
    model: Model, stim: Array, weights: Array | None, state0: State | None, dt: Array,
    threshold: Array, cfg: _Static, bufs: None = None,
) -> tuple[dict[str, Any], State, Array]:
    """One neuron through the GPU kernel, as a population of one (a scan would launch
    a kernel or more per step)."""
    if state0 is None:
        state0 = steady_state(model, _resting_v_single(model, 0.0).astype(stim.dtype))
    state0 = _population_state0(model, state0, 1, stim.dtype)
    out = fused.run(model, stim, weights, state0, dt, threshold, cfg)
    return jax.tree_util.tree_map(lambda x: x[0], out)


_MODES = {"single": _run, "population": _run_population, "sharded": _run_sharded,
          "fused": _run_one_fused}
# Methods with one right-hand-side evaluation per step: a one-neuron program with one of
# them runs through _once. RK4's program is over XLA's cost estimate for running on the
# calling thread either way (1649 flops), and measured 5-8 % slower through _once (its
# loop ~10 % slower with max |V| updated in it).
_ONE_STAGE = ("exp_euler", "euler")


@functools.partial(
    xla.jit, static_argnames=("layout", "cfg", "mode"), donate_argnames=("bufs",)
)
def _entry(
    packed: Array, arrays: tuple[Array, ...], stim: Array, weights: Array | None,
    bufs: dict[str, Array] | None, *, layout: Any, cfg: _Static, mode: str,
) -> tuple[dict[str, Any], State, Array]:
    def run(packed: Array) -> tuple[dict[str, Any], State, Array]:
        model, (state0, dt, threshold) = _unpack(packed, arrays, layout)
        return _MODES[mode](model, stim, weights, state0, dt, threshold, cfg, bufs)

    if mode == "single" and cfg.method in _ONE_STAGE and not cfg.fused:
        return _once(run, packed)
    return run(packed)


def _once(run: Any, packed: Array) -> Any:
    """``run(packed)`` as the body of a loop that runs once, for one neuron.

    XLA can neither remove this loop (its trip count is hidden behind an optimization
    barrier) nor hoist work out of it (the body reads ``packed`` through a barrier that
    also takes the loop counter), so the whole one-neuron program (unpacking the
    parameters, the resting-state search, the time loop) is inside it. Two things follow
    on a CPU, where a thread handoff costs 30-50 us on this project's VM:

    * XLA compiles a loop that touches under the small-loop threshold as one function
      (see :mod:`hhjax.xla`), so the runtime runs 8 thunks in sequence instead of ~45,
      some of which it handed to worker threads;
    * XLA's CPU client runs a program on the calling thread, with no handoff, when its
      cost estimate is below 1000 flops; that estimate counts a loop body once, so the
      exp-Euler and Euler programs qualify once the search and max |V| are loops too.

    Measured (perf stat): 6.7 context switches per 4000-step exp-Euler call before,
    0.1 after; the call went from 0.59-0.68 ms to 0.46-0.49 ms, with results bitwise
    the same in float32 (``benchmarks/README.md``). Used for :data:`_ONE_STAGE` methods.
    """
    once = jax.lax.optimization_barrier(jnp.int32(1))

    def body(carry: tuple[Array, Any]) -> tuple[Array, Any]:
        k, _ = carry
        p, _ = jax.lax.optimization_barrier((packed, k))
        return k + 1, run(p)

    out0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(run, packed))
    return jax.lax.while_loop(lambda c: c[0] < once, body, (jnp.int32(0), out0))[1]


def _pack(model: Model, rest: Any, dtype: Any) -> tuple[np.ndarray, tuple[Array, ...], Any]:
    """Every scalar leaf of ``(model, rest)`` in one host array (one transfer, not one per
    leaf); the model's part is reused while the same model object comes back."""
    key = ("packed", np.dtype(dtype))
    cache = _LAST_MODEL[2] if _LAST_MODEL[0] is model else {}
    if key not in cache:
        m_leaves, m_def = cache.get("flat") or jax.tree_util.tree_flatten(model)
        cache[key] = (*_split_scalars(m_leaves, dtype), m_def, len(m_leaves))
    m_packed, m_arrays, m_scalar, m_def, n_model = cache[key]
    r_leaves, r_def = jax.tree_util.tree_flatten(rest)
    r_packed, r_arrays, r_scalar = _split_scalars(r_leaves, dtype)
    packed = np.concatenate([m_packed, r_packed])
    scalar = m_scalar + tuple(n_model + i for i in r_scalar)
    return packed, m_arrays + r_arrays, (m_def, r_def, n_model, scalar, n_model + len(r_leaves))


def _split_scalars(leaves: list[Any], dtype: Any) -> tuple[np.ndarray, tuple[Array, ...], tuple]:
    scalar = tuple(i for i, x in enumerate(leaves) if np.ndim(x) == 0)
    packed = np.array([leaves[i] for i in scalar], dtype=dtype)
    is_scalar = set(scalar)
    arrays = tuple(jnp.asarray(x, dtype) for i, x in enumerate(leaves) if i not in is_scalar)
    return packed, arrays, scalar


def _unpack(packed: Array, arrays: tuple[Array, ...], layout: Any) -> tuple[Model, Any]:
    m_def, r_def, n_model, scalar, n = layout
    leaves: list[Any] = [None] * n
    for j, i in enumerate(scalar):
        leaves[i] = packed[j]
    rest = iter(arrays)
    for i in range(n):
        if leaves[i] is None:
            leaves[i] = next(rest)
    model = jax.tree_util.tree_unflatten(m_def, leaves[:n_model])
    return model, jax.tree_util.tree_unflatten(r_def, leaves[n_model:])


def _call(
    mode: str, model: Model, stim: Array, weights: Array | None, state0: State | None,
    dt: Any, threshold: Any, cfg: _Static, bufs: dict[str, Array] | None = None,
) -> tuple[dict[str, Any], State, Array]:
    packed, arrays, layout = _pack(model, (state0, dt, threshold), stim.dtype)
    return _entry(packed, arrays, stim, weights, bufs, layout=layout, cfg=cfg, mode=mode)


def _as_stimulus(stimulus: Any, dt: float, t_max: float | None) -> tuple[Array, Array | None]:
    """``(stim, None)`` with ``stim`` ``(n_steps,)``/``(N, n_steps)``, or, for a population
    stimulus object that factors, ``(profiles (n_steps, P) time-major, weights (N, P))``."""
    if isinstance(stimulus, Stimulus):
        if t_max is None:
            raise ValueError("t_max (ms) is required when stimulus is a Stimulus object")
        # profiles stay on the host: the jit call transfers them once, with the rest
        factors = stimulus._host_factors(dt, t_max) if is_concrete(dt) else None
        if factors is None:
            return _check_ndim(stimulus.sample(dt, t_max)), None
        weights, profiles = factors
        dtype = weights.dtype
        if weights.ndim == 2:
            return profiles.T.astype(dtype), weights
        if is_concrete(weights):  # one neuron: its current computed on the host
            key = ("one neuron", float(dt), float(t_max))
            return stimulus._memo(key, lambda: (np.asarray(weights) @ profiles).astype(dtype)), None
        return _check_ndim(weights @ jnp.asarray(profiles, dtype)), None
    return _as_array_stimulus(stimulus, dt, t_max), None


def _check_ndim(stim: Array) -> Array:
    if stim.ndim > 2:
        raise ValueError(
            f"stimulus must be 1-D (n_steps,) or 2-D (n_neurons, n_steps); got shape {stim.shape}"
        )
    return stim


def _as_array_stimulus(stimulus: Any, dt: float, t_max: float | None) -> Array:
    if not hasattr(stimulus, "shape") and not isinstance(stimulus, (int, float, list, tuple)):
        raise TypeError(
            f"stimulus must be an array of currents (uA/cm2) or a hhjax.stimulus object; "
            f"got {type(stimulus).__name__}"
        )
    if isinstance(stimulus, jax.Array):
        stim = stimulus
    else:  # host data stays on the host until the compiled call takes it (one transfer)
        stim = np.asarray(stimulus)
        stim = stim.astype(jax.dtypes.canonicalize_dtype(stim.dtype), copy=False)
    if not jnp.issubdtype(stim.dtype, jnp.floating):
        stim = stim.astype(jnp.result_type(float))
    if stim.ndim == 0:
        if t_max is None:
            raise ValueError("a constant (scalar) stimulus needs t_max (ms)")
        return jnp.full((n_steps(dt, t_max),), stim)
    _check_ndim(stim)
    if t_max is not None and is_concrete(dt) and n_steps(dt, t_max) != stim.shape[-1]:
        raise ValueError(
            f"t_max = {t_max} ms at dt = {dt} ms means {n_steps(dt, t_max)} steps, but the "
            f"stimulus array has {stim.shape[-1]}; leave t_max out for an array stimulus"
        )
    return stim


def _check_state0(model: Model, state0: State) -> State:
    if not isinstance(state0, State):
        raise TypeError(f"state0 must be a hhjax.State; got {type(state0).__name__}")
    expected = set(model.gate_names)
    if set(state0.gates) != expected:
        raise ValueError(
            f"state0.gates must have keys {sorted(expected)}; got {sorted(state0.gates)}"
        )
    for name, x in [("v", state0.v), *state0.gates.items()]:
        if np.ndim(x) > 1:
            raise ValueError(f"state0 {name} must be a scalar or 1-D; got shape {np.shape(x)}")
        check_finite(f"state0 {name}", x)
    return state0


@jax.jit
def _all_finite(x: Array) -> Array:
    return jnp.all(jnp.isfinite(x))


_LAST_FINITE: list[Any] = [lambda: None]  # weak reference to the last JAX array found finite


def _check_stimulus_finite(stim: Array) -> None:
    # One compiled pass over the array (a host-side np.isfinite of an (N, n_steps)
    # stimulus would cost a second copy of it); the message comes from check_finite.
    # A JAX array cannot change, so the one checked last is not checked again (a loop
    # that passes the same stimulus each call).
    if not is_concrete(stim) or _LAST_FINITE[0]() is stim:
        return
    if stim.size > 4096 and not isinstance(stim, np.ndarray):
        with jax.ensure_compile_time_eval():  # also when simulate runs inside a user's jit
            if bool(_all_finite(stim)):
                _LAST_FINITE[0] = weakref.ref(stim)
                return
    check_finite("stimulus", stim)
    if isinstance(stim, jax.Array):
        _LAST_FINITE[0] = weakref.ref(stim)


def _batched_leaves(
    model: Model, stim: Array, weights: Array | None, state0: State | None, cfg: _Static
) -> tuple[Any, ...]:
    """Which leaves of ``(model, stim, weights, state0)`` have a population axis (their
    first): 1-D model and state leaves, a per-neuron stimulus, 2-D weights."""
    return (
        jax.tree_util.tree_map(lambda x: np.ndim(x) == 1, model),
        stim.ndim == 2 and not cfg.factored,
        None if weights is None else weights.ndim == 2,
        None if state0 is None else jax.tree_util.tree_map(lambda x: np.ndim(x) == 1, state0),
    )


def _take(tree: Any, lo: int, hi: int, pad: int, batched: Any) -> Any:
    """Rows ``lo:hi`` of every batched leaf, padded with ``pad`` copies of the last row."""

    def cut(x: Any, b: bool) -> Any:
        if not b:
            return x
        part = x[lo:hi]
        if pad:
            part = jnp.concatenate([part, jnp.repeat(part[-1:], pad, axis=0)])
        return part

    return jax.tree_util.tree_map(cut, tree, batched)


def _n_fields(model: Model, record: tuple[str, ...]) -> int:
    """Recorded arrays per neuron: V, each gate, each channel's current."""
    per_kind = {"v": 1, "gates": len(model.gate_names), "currents": len(model.channels)}
    return sum(per_kind[k] for k in record)


# Values one neuron's loop touches per step, in units of the dtype's size (fitted to
# where XLA stops compiling the loop as one function, for the presets, both dtypes,
# every method and record kind; checked by tests/test_performance_variants.py)
_TILE_ITEMS_STATE, _TILE_ITEMS_FIELD, _TILE_ITEMS_SPIKES = 6, 4, 20
# per-state factor of a method with more stages: RK4's loop, with its four right-hand
# sides and their intermediate states, touches 55 (NEURON hh) to ~90 (Connor-Stevens)
# values per state variable and step (XLA's count at the largest tile it kept as one
# function, 512 KiB threshold). Tiles sized for 6 took 1.8 s at 1e4 neurons, V every
# step (a loop run kernel by kernel); tiles of 128-384 neurons took 0.78-0.81 s.
_TILE_STAGES = {"rk4": 16}


def _tile_size(model: Model, cfg: _Static, dtype: Any, n_local: int, n_dev: int) -> int:
    """Neurons per tile for a population of ``n_local`` per device (0: no tiles).

    Tiles pay on CPU when every core has a device of its own (then each device runs
    its tiles on one core) and XLA compiles loops under hhjax's threshold as one
    function (:func:`hhjax.xla.loop_bytes`). The neurons of a tile touch at most
    :func:`hhjax.xla.tile_bytes` per step, and never fewer than ``_MIN_TILE`` neurons;
    with tabulated rates the tables come on top. When not even ``_MIN_TILE`` neurons
    (with the tables) stay under the threshold, no tiles. Tiles are made equal and a multiple of
    ``_LANES`` neurons, so the last (shifted back to end at the last neuron) repeats
    fewer than ``_LANES`` neurons per tile. (Neurons past the last full vector run
    through the loops' scalar remainder code: at 1e4 neurons, spikes only, tiles of 720
    took 0.943x the time of tiles of 715 with exact rates and 0.989x with tables.)
    """
    budget, room = xla.tile_bytes(), xla.loop_bytes()
    if cfg.rates == "table":
        room -= table_bytes(model, dtype)
        budget = min(budget, room)
    if budget <= 0 or jax.default_backend() != "cpu" or n_dev < cores():
        return 0
    fields = _n_fields(model, cfg.record)
    items = (
        _TILE_ITEMS_STATE * _TILE_STAGES.get(cfg.method, 1) * (1 + len(model.gate_names))
        + _TILE_ITEMS_FIELD * max(0, fields - 1)
        + (_TILE_ITEMS_SPIKES if cfg.max_spikes else 0)
    )
    per_neuron = items * np.dtype(dtype).itemsize
    largest = budget // per_neuron
    if largest < _MIN_TILE and _MIN_TILE * per_neuron > room:
        return 0  # (not even the smallest tile's loop would be one function)
    largest = max(_MIN_TILE, largest) // _LANES * _LANES
    if largest >= n_local:
        return 0
    n_tiles = -(-n_local // largest)
    return -(-n_local // (n_tiles * _LANES)) * _LANES  # <= largest


# Values one neuron's gradient loop touches per step (the backward loop is the largest),
# in units of the dtype's size: per state variable, per differentiated model leaf (its
# cotangent's work is in the loop), per extra recorded field. Fitted to where XLA stops
# compiling the loops of ``jax.grad`` as one function (presets, both dtypes, each
# method, 1-28 differentiated leaves; tests/test_performance_variants.py checks it).
_GRAD_ITEMS_STATE, _GRAD_ITEMS_LEAF, _GRAD_ITEMS_FIELD = 64, 16, 16
_GRAD_STAGES = {"rk4": 3}  # per-state factor of a method with more stages than one
_GRAD_TILES = (48, 96)  # neurons: smallest and largest gradient tile (48-96 measured best)


_AD_TRACERS = ("JVPTracer", "LinearizeTracer")  # jax.jvp / jacfwd; jax.grad / vjp


def _unwrap(x: Any) -> tuple[list[str], Any]:
    """The kinds of JAX tracer ``x`` is, outermost first, following primal values, and
    the value inside them (an array, or the tracer of a ``jit`` being traced)."""
    kinds = []
    while isinstance(x, jax.core.Tracer) and len(kinds) < 16:
        kinds.append(type(x).__name__)
        x = getattr(x, "primal", getattr(x, "val", None))  # (AD tracers; vmap's)
    return kinds, x


def _committed_devices(tree: Any) -> tuple[Any, ...]:
    """The devices the committed arrays in ``tree`` live on, by id (empty: none).

    An array the user placed with ``jax.device_put(x, device)`` is committed there: a
    computation that takes it runs there, and one spanning other devices too fails. So
    a population runs where such arrays are; inside a ``jit`` of the user's the values
    are not visible (see ``shard`` in :func:`simulate`).
    """
    found: set[Any] = set()
    parts = tree if isinstance(tree, tuple) and not hasattr(tree, "_fields") else (tree,)
    for part in parts:
        if part is not None and part is _LAST_MODEL[0]:  # (its leaves do not change)
            cache = _LAST_MODEL[2]
            if "devices" not in cache:
                cache["devices"] = _committed_devices(cache["flat"][0])
            found |= set(cache["devices"])
            continue
        for x in jax.tree_util.tree_leaves(part):
            x = _unwrap(x)[1]
            if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and x.committed:
                found |= x.sharding.device_set
    return tuple(sorted(found, key=lambda d: d.id))


def _differentiated(tree: Any) -> int:
    """How many leaves of ``tree`` JAX is differentiating (forward or reverse mode), or 0
    when a value is also batched by a ``jax.vmap`` around it.

    Under an outer ``vmap`` the loops hold the mapped copies too, whose number a trace
    does not show (4 parameter sets of 500 neurons: 0.13 s in tiles against 0.09 s).
    JAX names no public type for any of this; should the names change, the answer is 0
    and a traced population runs as one ``vmap``, as it did before tiles.
    """
    if _vmapped(tree):
        return 0
    kinds = [_unwrap(x)[0] for x in jax.tree_util.tree_leaves(tree)]
    return sum(bool(k) and k[0] in _AD_TRACERS for k in kinds)


_UNBATCHED_TRACERS = (*_AD_TRACERS, "DynamicJaxprTracer")  # (jit's)


def _reverse_only(tree: Any) -> bool:
    """Whether ``tree`` is differentiated in reverse mode only (``jax.grad``/``vjp``),
    so a ``jax.custom_vjp`` may be used: no forward mode (``jvp``, ``jacfwd``, the
    outer derivative of a Hessian), which cannot differentiate one."""
    kinds = {k for x in jax.tree_util.tree_leaves(tree) for k in _unwrap(x)[0]}
    return "LinearizeTracer" in kinds and "JVPTracer" not in kinds


def _vmapped(tree: Any) -> bool:
    """Whether a ``jax.vmap`` around this call may batch a value of ``tree``: a tracer of
    a kind other than differentiation's and ``jit``'s (``vmap``'s ``BatchTracer``, or a
    name this version of JAX does not use)."""
    return any(
        kind not in _UNBATCHED_TRACERS
        for x in jax.tree_util.tree_leaves(tree) for kind in _unwrap(x)[0]
    )


def _grad_tile(model: Model, cfg: _Static, dtype: Any, n: int, n_diff: int) -> int:
    """Neurons per tile of a differentiated population of ``n`` on a device (0: one
    ``vmap``).

    Under ``jax.grad`` (or ``jax.jvp``) a device's share of a population as one ``vmap``
    of its ``n`` neurons makes loops that XLA runs kernel by kernel. Tiles small enough
    for their loops, the backward one included, to be compiled as one function each
    (:func:`hhjax.xla.loop_bytes`) run one after the other. At 1000 neurons x 1e4
    steps this took ``jax.grad`` of a V loss from 0.23-0.36 s to 0.16-0.17 s. A forward
    run keeps the ``vmap``: at up to ~1000 neurons its loop is one function already,
    with more independent work per step than a tile's (tiles were 10-40 % slower).
    A population whose gradient loops fit whole stays one ``vmap`` (100 neurons, 4000
    steps: 5.1 ms against 8.4 ms in two tiles). Sizes are multiples of 16 (AVX-512
    float32 lanes); the one that pads the least is taken. ``n_diff``: model leaves
    being differentiated.
    """
    budget = xla.tile_bytes()
    if not budget or jax.default_backend() != "cpu" or cfg.rates != "exact":
        return 0  # (tiles of the tables' gradient loops: not measured)
    items = (
        _GRAD_ITEMS_STATE * _GRAD_STAGES.get(cfg.method, 1) * (1 + len(model.gate_names))
        + _GRAD_ITEMS_LEAF * n_diff
        + _GRAD_ITEMS_FIELD * max(0, _n_fields(model, cfg.record) - 1)
        + (_TILE_ITEMS_SPIKES if cfg.max_spikes else 0)
    )
    fit = budget // (items * np.dtype(dtype).itemsize)  # neurons whose loops fit
    smallest, largest = _GRAD_TILES
    largest = min(largest, fit) // _LANES * _LANES
    if largest < smallest or n <= fit:  # (a whole vmap that fits has more work per step)
        return 0
    return min(range(largest, smallest - 1, -_LANES), key=lambda s: -(-n // s) * s)


_GRAD_SPLIT_FROM = 500_000  # neuron-steps: a shorter differentiated run stays on one device


def _grad_devices(tree: Any, n: int, n_steps: int) -> tuple[Any, ...]:
    """The CPU devices a differentiated population of ``n`` neurons over ``n_steps`` is
    split over (empty: it runs on one device).

    On one device the tiles of ``jax.grad`` run one after the other on one core. Split
    over the CPU devices (one per core, see :mod:`hhjax.population`), each device runs
    its own tiles: at 1000 neurons x 1e4 steps a V-loss gradient took 0.099-0.100 s
    against 0.151-0.164 s. Every device gets at least a smallest tile's worth of
    neurons (:data:`_GRAD_TILES`; at 64 neurons, two halves were slower), and the run
    has :data:`_GRAD_SPLIT_FROM` neuron-steps or more (medians of 31 calls, split
    against one device: 100 x 1e3 steps 1.8 ms against 1.4 ms, 100 x 4000 and
    200 x 2000 alike, 100 x 1e4 12 ms against 14 ms, 1000 x 1e3 12-14 ms against 15 ms).
    """
    if jax.default_backend() != "cpu" or n * n_steps < _GRAD_SPLIT_FROM:
        return ()
    devices = _committed_devices(tree) or tuple(jax.local_devices())
    return devices if len(devices) > 1 and n >= _GRAD_TILES[0] * len(devices) else ()


def _population_run(
    model: Model, stim: Array, weights: Array | None, state0: State | None, dt: Array,
    threshold: Array, cfg: _Static, n: int, shard: bool, chunk: int | None,
    progress: bool | None, bufs: dict[str, Array] | None = None,
) -> tuple[dict[str, Any], State, Array]:
    """Run a concrete population of ``n`` neurons: sharded over devices, in chunks.

    It runs where its committed arrays are (see :func:`_committed_devices`), else on
    every local device. ``bufs`` (record buffers to donate) are used only when the whole
    population runs in one unpadded call.
    """
    devices = _committed_devices((model, stim, weights, state0)) or tuple(jax.local_devices())
    n_dev = len(devices) if shard else 1
    sharded = n_dev > 1 and n >= n_dev
    mode = "sharded" if sharded else "population"
    multiple = n_dev if sharded else 1
    n_steps = stim.shape[0] if cfg.factored else stim.shape[-1]
    itemsize = stim.dtype.itemsize
    n_rec = n_steps // cfg.every + 1
    fields = _n_fields(model, cfg.record)
    if fused.available(cfg, devices[0].platform):
        time_major = fused.TIME_MAJOR
        if time_major is None:  # two copies of the records at once, if they fit (and
            # under 2**31 entries: written strided, 4e9 were checked on a GPU, this not)
            time_major = n_rec * n < fused.INDEX_LIMIT and (
                2 * itemsize * n_rec * fields * n <= available_memory() // 2
            )
        cfg = cfg._replace(fused=fused.TIME_MAJOR_ROWS if time_major else fused.ROWS)
    on_host = devices[0].platform == "cpu"  # (the records are in host memory anyway)
    if chunk is None:
        # copies of the records a call holds: XLA on a CPU writes them in place (blocks
        # elsewhere); the GPU kernel in place or time-major and transposed once
        copies = {0: 1 if on_host else 3, fused.ROWS: 1, fused.TIME_MAJOR_ROWS: 2}[cfg.fused]
        out_items = n_rec * fields + cfg.max_spikes + 64  # one neuron's outputs
        per_neuron = itemsize * (
            (2 * n_steps if stim.ndim == 2 and not cfg.factored else 0)
            + out_items + (copies - 1) * n_rec * fields
        )
        chunk = chunk_size(n, per_neuron, multiple=multiple)
        if chunk < n:  # all outputs are held on the host besides one chunk's call
            held, free = n * itemsize * out_items, available_memory(host=True)
            if held > free:
                raise MemoryError(
                    f"the records of {n} neurons need {held / 2**30:.3g} GiB, more than "
                    f"the {free / 2**30:.3g} GiB available: record every k-th step "
                    "(every=k), fewer fields, or spikes only (record='spikes')"
                )
            if on_host:
                chunk = chunk_size(n, per_neuron, budget=(free - held) // 2, multiple=multiple)
            # a power of two: the same compiled shapes from call to call
            chunk = max(multiple, multiple * 2 ** int(np.log2(chunk // multiple)))
    chunk = max(1, min(int(chunk), n))
    if cfg.fused:  # (at most a kernel's worth per device)
        chunk = min(chunk, fused.max_neurons(cfg) * multiple)
    n_dev_used = n_dev if sharded else 1
    cfg = cfg._replace(
        tile=_tile_size(model, cfg, stim.dtype, chunk // multiple, n_dev_used),
        devices=devices if sharded else (),
    )
    batched = _batched_leaves(model, stim, weights, state0, cfg)
    starts = list(range(0, n, chunk))
    key = (mode, n, n_steps, np.dtype(stim.dtype).str, cfg, model.gate_names,
           tuple(model.channels), devices)  # the record pool's: the records' shapes, place
    whole = len(starts) == 1 and n % multiple == 0  # one unpadded call: outputs = records
    if not whole:
        recpool.clear()  # such records are not kept: free what other calls left
    bar = Progress(len(starts), f"hhjax.simulate: {n} neurons in chunks of {chunk}", progress)
    joined = None  # chunks: the whole population's outputs, filled chunk by chunk
    for lo in starts:
        hi = min(n, lo + chunk)
        pad = (-(hi - lo)) % multiple
        m_c, s_c, w_c, st_c = _take((model, stim, weights, state0), lo, hi, pad, batched)
        donate = None if not whole else bufs if bufs is not None else recpool.take(key)
        run = functools.partial(_call, mode, m_c, s_c, w_c, st_c, dt, threshold, cfg, donate)
        if len(starts) > 1 and joined is None:  # (before the first chunk's own outputs,
            # which the freed memory of an earlier call's would otherwise be split for)
            joined = jax.tree_util.tree_map(
                lambda x: _host_empty((n, *x.shape[1:]), x.dtype), jax.eval_shape(run)
            )
        out = run()
        if whole and cfg.record:
            recpool.put(key, {k: out[0][k] for k in cfg.record})
        if pad:
            out = jax.tree_util.tree_map(lambda x, k=hi - lo: x[:k], out)
        if len(starts) == 1:
            return out
        for whole_x, x in zip(*map(jax.tree_util.tree_leaves, (joined, out)), strict=True):
            _copy_into(whole_x[lo:hi], x)
        del out  # (frees the chunk's memory for the next)
        bar.update()
    # Written into the joined arrays, the chunks' outputs are never held twice (joined
    # with np.concatenate they were, and then copied into a JAX array: float64, 1e5
    # neurons, V every step: 18 GB resident and 47 s a call, against 6 GB and 8 s
    # unchunked). On a CPU they become JAX arrays without a copy. On a GPU they stay in
    # host memory (NumPy arrays): moved back in one piece, a record that needed chunks
    # would not fit (an H100 ran out of memory so, on the 32 GB float64 record of 1e6).
    return jax.tree_util.tree_map(jax.device_put, joined) if on_host else joined


def _copy_into(dest: np.ndarray, x: jax.Array) -> None:
    """``dest[...] = x``, shard by shard (``np.asarray`` of a sharded array would
    gather it into a copy first)."""
    for shard in x.addressable_shards:
        if shard.replica_id == 0:
            dest[shard.index] = np.asarray(shard.data)


def _host_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised NumPy array at a 64-byte boundary, which ``jax.device_put`` on a
    CPU takes as it is, without a copy (it copies one at malloc's 16-byte boundary)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def simulate(
    model: Model,
    stimulus: Any,
    *,
    dt: float,
    t_max: float | None = None,
    method: str = "exp_euler",
    record: str | Sequence[str] = ("v",),
    every: int = 1,
    state0: State | None = None,
    check: bool = True,
    checkpoint: bool = False,
    rates: str = "exact",
    max_spikes: int = 64,
    threshold: float = 0.0,
    shard: bool = True,
    chunk_size: int | None = None,
    progress: bool | None = None,
    reuse: Trace | None = None,
) -> Trace:
    """Simulate a neuron, or a population, under an injected current.

    A population (a model whose leaves have a leading axis of length N and/or a
    stimulus of shape ``(N, n_steps)``) is split over the local devices (one per core
    on a CPU, or GPUs; see :mod:`hhjax.population`), runs on a CPU device in tiles of
    neurons and on a GPU as one fused kernel (:mod:`hhjax.fused`; exact rates, forward
    runs), and, when it would not fit in memory, runs in chunks with a progress line
    on stderr. Results do not depend on any of these (to rounding on a GPU).

    Args:
        model: the model (a population if some leaves have a leading axis of length N).
        stimulus: current density in uA/cm2 on the time grid: an array ``(n_steps,)``
            or ``(N, n_steps)`` whose value k is held constant over ``[k dt, (k+1) dt)``,
            a scalar (constant current, needs ``t_max``), or a
            :class:`hhjax.stimulus.Stimulus` (needs ``t_max``).
        dt: step, ms (> 0).
        t_max: duration, ms, for stimulus objects and scalars.
        method: ``"exp_euler"`` (default), ``"rk4"`` or ``"euler"``.
        record: any of ``"v"``, ``"gates"``, ``"currents"``, ``"spikes"``. With
            ``"spikes"`` alone, memory is O(N): spike counts and up to ``max_spikes``
            interpolated upward crossing times of ``threshold`` per neuron. (Crossing
            times are taken per recording unit of ``every`` steps, about 1 ms in
            spikes-only mode; at most the first and last crossing of a unit are timed,
            all are counted.)
        every: record every ``every``-th step (memory ~ n_steps / every).
        state0: initial state; default: the resting state at zero current.
        check: raise :class:`DivergenceError` if the run diverged (only outside tracing).
        checkpoint: rematerialise the scan in ~sqrt(n_steps) groups under ``jax.grad``,
            so gradient memory grows ~sqrt(T) instead of T (costs one extra forward pass).
        rates: ``"exact"`` (default) evaluates every rate function each step;
            ``"table"`` (exp_euler only) interpolates tabulated gate kinetics, built
            inside the call from the parameters (see :mod:`hhjax.tables`): faster,
            still differentiable, gate kinetics shared by the population.
        max_spikes: spike times kept per neuron with ``record="spikes"``.
        threshold: spike threshold, mV (upward crossings).
        shard: split a population over the local devices (default True); a population
            whose arrays you committed to devices (``jax.device_put(x, device)``) runs
            on those (split if several). Under ``jax.grad`` inside your ``jit`` that
            cannot be seen, and on a CPU a population of at least 48 neurons per device
            (and 5e5 neuron-steps) is split over every device: pass ``shard=False``
            there if your ``jit`` takes arrays committed to one device (JAX raises
            "incompatible devices" otherwise).
        chunk_size: neurons per call for a population (default: from free memory,
            less what the whole population's records will hold). On a GPU, the
            records of a run in chunks are returned as NumPy arrays in host memory.
        progress: print a progress line per chunk (default: when there are chunks).
        reuse: a :class:`Trace` from an earlier call whose records have this call's
            shapes: a population run writes its records into that trace's arrays
            instead of new ones (no fresh allocation; it speeds up repeated runs that
            record every step). Those arrays are donated: ``reuse`` must not be used
            afterwards (JAX raises if it is). Runs that cannot write in place (one
            neuron, inside a user's ``jit``/``grad``, chunks) leave it untouched, and
            an array still viewed from NumPy (``np.asarray``) is copied, not reused.
            Without it, a population run still writes into the records of a trace
            from one of the last two calls that you have dropped (see
            :mod:`hhjax.recpool`).

    Returns:
        A :class:`Trace`; ``t`` starts at 0 and includes the initial state, so
        ``n_rec = n_steps // every + 1``. Population outputs have the population axis
        first. Outputs have the stimulus's floating dtype (float32 unless x64 is on).

    Raises:
        ValueError: bad ``dt``/``t_max``, NaN/inf in the stimulus or parameters,
            negative conductance or capacitance, mismatched population shapes,
            unknown method, rates mode or record name (all before compiling).
        DivergenceError: the integration blew up (reduce ``dt`` or use exp_euler).
        MemoryError: a population's records exceed the available memory (before
            running; chunks bound a call's working memory, not what it returns).

    Example:
        >>> import hhjax
        >>> trace = hhjax.simulate(hhjax.presets.squid(), hhjax.stimulus.step_current(10.0, 10.0),
        ...                        dt=0.025, t_max=50.0)
        >>> trace.v.shape
        (2001,)
    """
    get_method(method)
    record = (record,) if isinstance(record, str) else tuple(record)
    unknown = [r for r in record if r not in RECORDABLE]
    if unknown or not record:
        raise ValueError(f"record must name some of {RECORDABLE}; got {record!r}")
    if not isinstance(every, (int, np.integer)) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every must be an int >= 1 (record every k-th step); got {every!r}")
    if rates not in RATES:
        raise ValueError(f"rates must be one of {RATES}; got {rates!r}")
    if rates == "table" and method != "exp_euler":
        raise ValueError(f"rates='table' needs method='exp_euler'; got method={method!r}")
    spikes = "spikes" in record
    if spikes and (
        not isinstance(max_spikes, (int, np.integer)) or isinstance(max_spikes, bool)
        or max_spikes < 1
    ):
        raise ValueError(f"max_spikes must be an int >= 1; got {max_spikes!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"chunk_size must be an int >= 1 (neurons per call); got {chunk_size!r}")
    if not isinstance(model, Model):
        raise TypeError(f"model must be a hhjax.Model; got {type(model).__name__}")
    if reuse is not None and not isinstance(reuse, Trace):
        raise TypeError(f"reuse must be a hhjax.Trace or None; got {type(reuse).__name__}")
    check_positive_scalar("dt", dt, "ms")
    if is_concrete(threshold):
        if np.ndim(threshold) != 0:
            raise ValueError(f"threshold must be a scalar in mV; got shape {np.shape(threshold)}")
        check_finite("threshold", threshold)
    stim, weights = _as_stimulus(stimulus, dt, t_max)
    _check_stimulus_finite(stim)
    if weights is None:
        n_steps_, n_stim = stim.shape[-1], (stim.shape[0] if stim.ndim == 2 else None)
    else:
        n_steps_, n_stim = stim.shape[0], weights.shape[0]
    n_model = _validated(model)
    if rates == "table":
        check_tabulable(model)
    if n_stim is not None and n_model is not None and n_stim != n_model:
        raise ValueError(
            f"stimulus population ({n_stim} rows) does not match the model "
            f"population ({n_model} parameter sets)"
        )
    n_state: set[int] = set()
    if state0 is not None:
        state0 = _check_state0(model, state0)
        n_state = {np.shape(x)[0] for x in jax.tree_util.tree_leaves(state0) if np.ndim(x) == 1}
        n_other = {n for n in (n_model, n_stim) if n}
        if len(n_state | n_other) > 1:
            raise ValueError(
                f"state0 population size {sorted(n_state)} does not match the model/stimulus "
                f"population {sorted(n_other)}"
            )
    dense = tuple(r for r in record if r != "spikes")
    if n_steps_ < every and dense:
        raise ValueError(f"every = {every} exceeds the number of steps ({n_steps_})")
    if not dense:  # spikes only: merge crossings about once per SPIKE_BLOCK_MS
        block = int(SPIKE_BLOCK_MS / float(dt)) if is_concrete(dt) else 32
        every = max(1, min(block, 64, n_steps_))

    dtype = stim.dtype
    n_rec = n_steps_ // every + 1 if dense else 0
    cfg = _Static(
        method=method, record=dense, every=int(every), checkpoint=bool(checkpoint),
        max_spikes=int(max_spikes) if spikes else 0, rates=rates, factored=weights is not None,
    )
    n_pop = n_model or n_stim or next(iter(n_state), None)
    if (_LAST_MODEL[0] is model or is_concrete(model)) and is_concrete(
        (stim, weights, state0, dt, threshold)
    ):
        if n_pop is not None:
            recs, final, v_max = _population_run(
                model, stim, weights, state0, dt, threshold, cfg, int(n_pop), shard,
                chunk_size, progress, _reusable(reuse, model, cfg.record, (int(n_pop), n_rec), dtype),
            )
        else:
            devices = _committed_devices((model, stim, weights, state0)) or jax.local_devices()
            if fused.available(cfg, devices[0].platform):
                cfg = cfg._replace(fused=fused.ROWS)
            else:
                cfg = cfg._replace(
                    lanes=lanes.suited(cfg.method, cfg.rates, stim.dtype), alone=True
                )
            recs, final, v_max = _call(
                "fused" if cfg.fused else "single", model, stim, weights, state0, dt,
                threshold, cfg,
            )
        t = _time_grid(n_rec, float(dt) * every, dtype)
    else:
        traced = (model, stim, weights, state0)
        if n_pop is None and _differentiated(traced):
            # One neuron keeps its steps' intermediates for the backward pass (~160 B
            # a step in float32) rather than recomputing each step there: jax.grad
            # over 1e5 steps took 17.6 ms instead of 25.0 ms (16.1 MB of temporaries
            # instead of 2.3 MB). With checkpoint=True only a group of ~sqrt(n_steps)
            # steps is held at a time, and a step is not recomputed twice: 2.84x the
            # forward run instead of 3.23x, 1.21 MB instead of 1.16 MB. A population
            # (or a vmap) recomputes: there the stored intermediates cost more (1000
            # neurons x 1e5 steps, checkpointed: 4.46x against 2.50x).
            cfg = cfg._replace(step_remat=False)
        if n_pop is None and not _vmapped(traced):
            cfg = cfg._replace(alone=True)
            # forward runs, and checkpointed gradients (see _run_single)
            if not _differentiated(traced) or (cfg.checkpoint and _reverse_only(traced)):
                cfg = cfg._replace(lanes=lanes.suited(cfg.method, cfg.rates, stim.dtype))
        if n_pop is not None and _differentiated((model, stim, weights, state0)):
            # (before the conversion below, which makes every leaf a tracer)
            n_diff = _differentiated(model)
            devices = (
                _grad_devices((model, stim, weights, state0), int(n_pop), n_steps_)
                if shard else ()
            )
            n_local = -(-int(n_pop) // max(1, len(devices)))
            cfg = cfg._replace(
                devices=devices, tile=_grad_tile(model, cfg, dtype, n_local, n_diff)
            )
        model = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), model)
        if state0 is not None:
            state0 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), state0)
        recs, final, v_max = _run_jit(
            model, stim, weights, state0, jnp.asarray(dt, dtype), jnp.asarray(threshold, dtype),
            cfg=cfg,
        )
        if is_concrete(dt):
            t = _time_grid(n_rec, float(dt) * every, dtype)
        else:
            t = jnp.arange(n_rec, dtype=dtype) * (dt * every)
    trace = Trace(
        t=t, v=recs.get("v"), gates=recs.get("gates"), currents=recs.get("currents"),
        final=final, v_max=v_max, spike_times=recs.get("spike_times"),
        spike_counts=recs.get("spike_counts"),
    )
    if check and is_concrete(v_max):
        _check_divergence(trace, method, dt)
    return trace


@functools.lru_cache(maxsize=64)
def _time_grid(n_rec: int, step: float, dtype: Any) -> Array:
    """Recorded times, ms: computed in float64, then rounded once (cached per shape).

    Rounded by NumPy and moved with ``device_put``: an eager XLA conversion, and
    ``jnp.asarray`` of a NumPy array (JAX's ``stage``), compile a program per new
    length. A value also when first asked for inside a trace (a user's ``jit``): a
    cached tracer would leak into the next trace.
    """
    with jax.ensure_compile_time_eval():
        return jax.device_put((np.arange(n_rec) * step).astype(np.dtype(dtype)))


def _reusable(
    reuse: Trace | None, model: Model, record: tuple[str, ...], shape: tuple[int, int],
    dtype: Any,
) -> dict[str, Any] | None:
    """The record arrays of ``reuse`` to donate, checked against this run's records."""
    if reuse is None or not record:
        return None
    bufs = {k: getattr(reuse, k) for k in record}
    names = {"gates": model.gate_names, "currents": tuple(model.channels)}
    for kind in (k for k in record if k in names):  # the record's order: stable errors
        if isinstance(bufs[kind], dict) and set(bufs[kind]) != set(names[kind]):
            raise ValueError(
                f"reuse.{kind} has keys {sorted(bufs[kind])}; this model records "
                f"{sorted(names[kind])}"
            )
    for path, x in jax.tree_util.tree_leaves_with_path(bufs, is_leaf=lambda x: x is None):
        name = "reuse" + jax.tree_util.keystr(path)
        if not isinstance(x, jax.Array):
            raise ValueError(f"{name} is not a recorded array of this run's kind (got {x!r})")
        if x.is_deleted():
            raise ValueError(f"{name} was already donated to an earlier call (reuse it once)")
        if x.shape != shape or x.dtype != dtype:
            raise ValueError(
                f"{name} has shape {x.shape} and dtype {x.dtype}; this run records "
                f"{shape} {np.dtype(dtype)}"
            )
    return bufs


_LAST_MODEL: list[Any] = [None, None, {}]  # the last validated model, its N, a cache


def _validated(model: Model) -> int | None:
    """Validate ``model`` (see :func:`hhjax.params.validate_model`); its population size.

    The result for the last model (and its flattened, packed leaves, see :func:`_pack`)
    is reused when the very same object comes back and none of its leaves is a
    (mutable) NumPy array, which keeps repeated calls cheap.
    """
    if _LAST_MODEL[0] is model:
        return _LAST_MODEL[1]
    validate_model(model)
    _, n_model = population_axes(model)
    flat = jax.tree_util.tree_flatten(model)
    if not any(isinstance(x, (np.ndarray, jax.core.Tracer)) for x in flat[0]):
        _LAST_MODEL[:] = [model, n_model, {"flat": flat}]
    return n_model


def _check_divergence(trace: Trace, method: str, dt: float) -> None:
    v_max = np.asarray(trace.v_max)
    bad = ~(np.abs(v_max) <= V_LIMIT)  # also catches NaN
    if not bad.any():
        return
    where = ""
    if trace.v is not None:
        v = np.asarray(trace.v).reshape(-1, np.shape(trace.v)[-1])
        blown = ~(np.abs(v) <= V_LIMIT)
        first = int(np.min(np.where(blown.any(axis=1), blown.argmax(axis=1), v.shape[1])))
        if first < v.shape[1]:
            where = f" by t = {float(trace.t[first]):g} ms"
    who = f" in {int(bad.sum())} of {bad.size} neurons" if bad.size > 1 else ""
    raise DivergenceError(
        f"the simulation diverged{where}{who} (|V| > {V_LIMIT:g} mV or NaN) with "
        f"method={method!r}, dt={dt} ms: the step is unstable; use a smaller dt or "
        f"method='exp_euler'"
    )
