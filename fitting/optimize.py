"""The Optax fitting loop: :func:`fit` and :class:`FitResult`.

One jit-compiled step computes, for all K starts at once (one ``jax.vmap``), the loss
of the simulated against the recorded voltage, its gradient in the unconstrained space
(:mod:`fitting.params`) and the Optax update. Starts whose loss or gradient turns
non-finite, or whose simulation diverges, are dropped (frozen and reported) without
touching the others. The Python loop over steps only shows progress and stops early.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hhjax
from hhjax.integrators import get_method

from .data import CURRENT_UNITS, Recording
from .losses import Loss, Target, voltage_mse
from .params import AREA, FreeParams, make_free

Array = jax.Array

__all__ = ["FitResult", "default_optimizer", "fit", "make_simulator"]

_V_LIMIT = 1e4  # mV; beyond this a start counts as diverged
_CHECKPOINT_STEPS = 20_000  # "auto" checkpoints simulations longer than this


def default_optimizer(steps: int, learning_rate: float = 0.05) -> optax.GradientTransformation:
    """Adam with gradient-norm clipping and a cosine learning-rate decay over ``steps``.

    Works in the unconstrained space, where a step of ~0.05 moves a parameter by ~1 %
    of its bounded range.
    """
    schedule = optax.cosine_decay_schedule(learning_rate, max(int(steps), 1), alpha=0.05)
    return optax.chain(optax.clip_by_global_norm(1e3), optax.adam(schedule))


def make_simulator(
    free: FreeParams,
    recording: Recording,
    *,
    method: str = "exp_euler",
    checkpoint: bool = False,
    dtype: Any = None,
) -> Any:
    """``sim(x, drive) -> (v (n_sweeps, n_samples) mV, max |V|)`` and ``drive``.

    ``x (p,)`` holds the free values; ``drive`` is the recording's current (uA, or
    uA/cm2 for densities) ``(n_sweeps, n_samples - 1)``, passed as an argument so that
    jit-compiled callers take it as an input rather than a baked-in constant. The
    simulation starts from the resting state under the first current sample of each
    sweep and is driven by the first ``n_samples - 1`` current values.

    Raises:
        ValueError: an absolute current with neither ``recording.area`` nor a free
            ``"area"``.
    """
    dtype = dtype or jnp.result_type(float)
    absolute = recording.current_unit != "uA/cm2"
    area_free = AREA in free.paths
    if absolute and not area_free and recording.area is None:
        raise ValueError(
            f"the recording's current is absolute ({recording.current_unit}): give "
            "Recording(area=...) in cm2 or make 'area' a free parameter"
        )
    if area_free and not absolute:
        raise ValueError("'area' is free but the recording's current is already a density (uA/cm2)")
    factor = CURRENT_UNITS[recording.current_unit]
    raw = jnp.asarray(recording.current[:, :-1] * factor, dtype)  # uA (or uA/cm2)
    holding = bool(np.any(recording.current[:, 0] != 0))
    dt = recording.dt

    def simulate_v(x: Array, raw: Array) -> tuple[Array, Array]:
        model, area = free.model(x)
        if absolute:
            stim = raw / (area if area_free else recording.area)
        else:
            stim = raw
        state0 = hhjax.resting_state(model, stim[:, 0]) if holding else None
        tr = hhjax.simulate(
            model, stim, dt=dt, method=method, check=False, checkpoint=checkpoint, state0=state0
        )
        return tr.v, jnp.max(tr.v_max)

    return simulate_v, raw


@dataclasses.dataclass
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
        model: the fitted model (the best start).
        params: fitted values ``{path: value}`` (including ``"area"``, cm2, if free).
        initial: each start's initial values ``{path: (K,) array}``.
        finals: each start's best values ``{path: (K,) array}`` (for success rates).
        losses: each start's best loss ``(K,)``; ``inf`` for dropped starts.
        dropped: indices of starts dropped for non-finite loss/gradient or divergence.
        history: loss of every start at every step ``(n_steps, K)`` (NaN once dropped).
        elapsed: wall time, s, at the end of each step ``(n_steps,)``.
        best: index of the best start.
        steps: steps run (early stopping may end before the requested number).
        seconds: wall time of the loop, s (compilation included).
        compile_seconds: wall time of the first step of each phase (tracing +
            compilation), s, summed.
        phase_starts: index of the first step of each phase (Adam, then refinement).
        free: the free parameters and their bounds.
        recording: the recording fitted (on the simulation grid).
        loss_fn: the loss used.
    """

    model: hhjax.Model
    params: dict[str, float]
    initial: dict[str, np.ndarray]
    finals: dict[str, np.ndarray]
    losses: np.ndarray
    dropped: list[int]
    history: np.ndarray
    elapsed: np.ndarray
    best: int
    steps: int
    seconds: float
    compile_seconds: float
    free: FreeParams
    recording: Recording
    loss_fn: Loss
    method: str = "exp_euler"
    checkpoint: bool = False
    phase_starts: tuple[int, ...] = (0,)
    _errors: Any = dataclasses.field(default=None, repr=False)

    @property
    def loss(self) -> float:
        """The best loss."""
        return float(self.losses[self.best])

    @property
    def x(self) -> np.ndarray:
        """The fitted free values as a vector ``(p,)`` in the order of ``free.paths``."""
        return np.array([self.params[p] for p in self.free.paths])

    def predict(self, recording: Recording | None = None) -> np.ndarray:
        """The fitted model's voltage (mV) on ``recording`` (default: the fitted one)."""
        rec = self.recording if recording is None else recording
        sim, drive = make_simulator(self.free, rec, method=self.method, checkpoint=self.checkpoint)
        return np.asarray(hhjax.jit(sim)(jnp.asarray(self.x, jnp.result_type(float)), drive)[0])

    def standard_errors(self, sigma: float | None = None) -> Any:
        """Gauss-Newton standard errors (see :func:`fitting.uncertainty.standard_errors`)."""
        from .uncertainty import standard_errors

        if sigma is not None or self._errors is None:
            errors = standard_errors(self, sigma=sigma)
            if sigma is not None:
                return errors
            self._errors = errors
        return self._errors

    def table(self) -> str:
        """A plain-text table of fitted values, standard errors and bounds."""
        err = self.standard_errors()
        rows = [f"{'parameter':<24} {'value':>12} {'std err':>11} {'bounds':>24}"]
        for j, p in enumerate(self.free.paths):
            se = err.se[p]
            rows.append(
                f"{p:<24} {self.params[p]:>12.6g} {se:>11.3g} "
                f"{f'[{self.free.lo[j]:.4g}, {self.free.hi[j]:.4g}]':>24}"
            )
        rows.append(f"loss {self.loss:.6g}; {len(self.losses) - len(self.dropped)} of "
                    f"{len(self.losses)} starts kept; {self.steps} steps in {self.seconds:.1f} s")
        return "\n".join(rows)

    def plot(self, recording: Recording | None = None, sweeps: Sequence[int] | None = None) -> Any:
        """A figure: recorded (grey) and fitted (colour) voltage per sweep, and the loss history."""
        from matplotlib.figure import Figure

        rec = self.recording if recording is None else recording
        idx = list(range(rec.n_sweeps)) if sweeps is None else list(sweeps)
        v_fit = self.predict(rec)
        fig = Figure(figsize=(8, 1.8 * (len(idx) + 1)))
        axes = fig.subplots(len(idx) + 1, 1, squeeze=False)
        for ax, k in zip(axes[:-1, 0], idx, strict=True):
            ax.plot(rec.t, rec.voltage[k], color="0.6", lw=1.0, label="data")
            ax.plot(rec.t, v_fit[k], color="C3", lw=0.8, label="fit")
            ax.set_ylabel("V (mV)")
        axes[0, 0].legend(loc="upper right", fontsize=8)
        axes[-2, 0].set_xlabel("t (ms)")
        ax = axes[-1, 0]
        ax.semilogy(np.where(np.isfinite(self.history), self.history, np.nan), lw=0.6, alpha=0.6)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        fig.tight_layout()
        return fig


def _initial(
    free: FreeParams, init: Mapping[str, Any] | None, starts: int, key: Array
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Initial u ``(K, p)``: random across the bounds, with ``init`` values overriding."""
    u = free.sample(key, starts)
    if init:
        unknown = set(init) - set(free.paths)
        if unknown:
            raise ValueError(f"init names parameters that are not free: {sorted(unknown)}")
        for j, path in enumerate(free.paths):
            if path in init:
                val = np.broadcast_to(np.asarray(init[path], float), (starts,))
                x = np.array(free.to_physical(jnp.asarray(u)), float)
                x[:, j] = val
                u[:, j] = free.to_unconstrained(x)[:, j]
    x0 = np.asarray(free.to_physical(jnp.asarray(u)), dtype=float)
    return u, free.as_dict(x0)


def _check_args(steps: int, starts: int, loss: Any) -> None:
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1; got {steps!r}")
    if not isinstance(starts, (int, np.integer)) or isinstance(starts, bool) or starts < 1:
        raise ValueError(f"starts must be an int >= 1; got {starts!r}")
    if loss is not None and not callable(loss):
        raise ValueError(f"loss must be callable loss(v_model, target) -> scalar; got {loss!r}")


def fit(
    model: hhjax.Model,
    recording: Recording,
    free: Sequence[str] | Mapping[str, tuple[float, float] | None],
    *,
    loss: Loss | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 300,
    starts: int = 1,
    key: Array | int | None = None,
    init: Mapping[str, Any] | None = None,
    learning_rate: float = 0.05,
    dt: float | None = None,
    method: str = "exp_euler",
    checkpoint: bool | str = "auto",
    patience: int = 100,
    rtol: float = 1e-4,
    refine: int = 0,
    progress: bool = True,
) -> FitResult:
    """Fit the free parameters of ``model`` to ``recording`` by gradient descent.

    Args:
        model: the model; parameters not in ``free`` stay frozen.
        recording: the data (all sweeps are fitted together, one vmapped simulation).
        free: parameter paths (default bounds) or ``{path: (lo, hi) or None}``; the
            fitting-only ``"area"`` (cm2) scales absolute currents.
        loss: ``loss(v_model, target) -> scalar`` (default :func:`~fitting.losses.voltage_mse`).
        optimizer: an Optax transformation (default :func:`default_optimizer`).
        steps: maximum number of optimisation steps.
        starts: K starts, optimised together as one vmapped program.
        key: PRNG key (or int seed) for the starts (default 0).
        init: initial values ``{path: scalar or (K,)}`` overriding the random draw.
        learning_rate: of the default optimizer.
        dt: simulation step, ms; the recording is resampled to it (default: its own).
        method: integrator (``"exp_euler"``, ``"rk4"``, ``"euler"``).
        checkpoint: gradient checkpointing (sqrt(T) memory); ``"auto"``: when the
            recording has more than 20000 steps.
        patience: stop when the best loss has not improved by ``rtol`` (relative) in
            this many steps.
        rtol: relative improvement counted as progress.
        refine: refinement steps after the first phase, each start restarting from its
            best point: Levenberg-Marquardt when the loss is a sum of squares with
            ``.residuals`` (every built-in loss), else L-BFGS (``optax.lbfgs`` with a
            line search). Fast final convergence on smooth losses.
        progress: print a progress line on stderr.

    Returns:
        A :class:`FitResult`.

    Raises:
        ValueError: bad arguments (before compiling); all starts dropped.
    """
    _check_args(steps, starts, loss)
    if not isinstance(recording, Recording):
        raise TypeError(f"recording must be a fitting.Recording; got {type(recording).__name__}")
    if checkpoint not in (True, False, "auto"):
        raise ValueError(f"checkpoint must be True, False or 'auto'; got {checkpoint!r}")
    get_method(method)
    free_p = make_free(model, free)
    rec = recording if dt is None or np.isclose(dt, recording.dt) else recording.resample(dt)
    ckpt = (rec.n_samples > _CHECKPOINT_STEPS) if checkpoint == "auto" else bool(checkpoint)
    loss_fn = loss or voltage_mse()
    if isinstance(key, int) or key is None:
        key = jax.random.PRNGKey(0 if key is None else key)
    u0, initial = _initial(free_p, init, starts, key)
    dtype = jnp.result_type(float)
    sim, drive = make_simulator(free_p, rec, method=method, checkpoint=ckpt, dtype=dtype)
    data = (drive, jnp.asarray(rec.voltage, dtype), jnp.asarray(rec.weights, dtype))
    opt = optimizer or default_optimizer(steps, learning_rate)
    if not isinstance(refine, (int, np.integer)) or isinstance(refine, bool) or refine < 0:
        raise ValueError(f"refine must be an int >= 0 (steps after the first phase); got {refine!r}")

    def loss_u(u: Array, data: tuple[Array, Array, Array]) -> tuple[Array, Array]:
        drive, voltage, weights = data
        v, v_max = sim(free_p.to_physical(u), drive)
        value = loss_fn(v, Target(voltage, weights, rec.dt))
        return value, v_max

    def make_step(opt: optax.GradientTransformation, line_search: bool) -> Any:
        def update_one(grad: Array, state: Any, u: Array, value: Array, data: Any) -> Any:
            if line_search:  # L-BFGS and friends evaluate the loss along the direction
                return opt.update(
                    grad, state, u, value=value, grad=grad, value_fn=lambda z: loss_u(z, data)[0]
                )
            return opt.update(grad, state, u)

        def step(
            u: Array, opt_state: Any, alive: Array, best: Array, best_u: Array, data: Any
        ) -> Any:
            value_grad = jax.vmap(jax.value_and_grad(loss_u, has_aux=True), in_axes=(0, None))
            (value, v_max), grad = value_grad(u, data)
            ok = alive & jnp.isfinite(value) & jnp.all(jnp.isfinite(grad), axis=-1)
            ok = ok & (v_max < _V_LIMIT)
            grad = jnp.where(ok[:, None], grad, 0.0)
            safe_value = jnp.where(ok, value, 0.0)
            updates, new_state = jax.vmap(update_one, in_axes=(0, 0, 0, 0, None))(
                grad, opt_state, u, safe_value, data
            )
            ok = ok & jnp.all(jnp.isfinite(updates), axis=-1)

            def keep(new: Array, old: Array) -> Array:
                return jnp.where(ok.reshape((-1,) + (1,) * (jnp.ndim(new) - 1)), new, old)

            new_u = keep(u + updates, u)
            new_state = jax.tree_util.tree_map(keep, new_state, opt_state)
            value = jnp.where(ok, value, jnp.nan)
            better = ok & (value < best)
            best = jnp.where(better, value, best)
            best_u = jnp.where(better[:, None], u, best_u)
            return new_u, new_state, ok, best, best_u, value

        return hhjax.jit(step)

    def make_lm_step() -> Any:
        """Levenberg-Marquardt on ``loss.residuals`` (one jvp per parameter + one forward)."""
        res_fn = loss_fn.residuals  # type: ignore[attr-defined]
        eye = jnp.eye(free_p.size, dtype=dtype)

        def resid(u: Array, data: Any) -> tuple[Array, Array]:
            drive, voltage, weights = data
            v, v_max = sim(free_p.to_physical(u), drive)
            return res_fn(v, Target(voltage, weights, rec.dt)).reshape(-1), v_max

        def one(u: Array, lam: Array, data: Any) -> tuple[Array, Array, Array, Array]:
            (r, v_max), (jac_t, _) = jax.vmap(
                lambda t: jax.jvp(lambda z: resid(z, data), (u,), (t,))
            )(eye)
            r, v_max = r[0], v_max[0]
            value = jnp.sum(r**2)
            a = jac_t @ jac_t.T
            g = jac_t @ r
            d = jnp.diag(a)
            damp = lam * (d + 1e-9 * jnp.max(d) + 1e-30)
            delta = -jnp.linalg.solve(a + jnp.diag(damp), g)
            r_new, v_max_new = resid(u + delta, data)
            new_value = jnp.sum(r_new**2)
            accept = jnp.isfinite(new_value) & (new_value < value) & (v_max_new < _V_LIMIT)
            accept = accept & jnp.all(jnp.isfinite(delta))
            u_next = jnp.where(accept, u + delta, u)
            lam = jnp.clip(jnp.where(accept, lam / 3.0, lam * 4.0), 1e-9, 1e9)
            return u_next, lam, value, v_max

        def step(u: Array, lam: Array, alive: Array, best: Array, best_u: Array, data: Any) -> Any:
            new_u, new_lam, value, v_max = jax.vmap(one, in_axes=(0, 0, None))(u, lam, data)
            ok = alive & jnp.isfinite(value) & (v_max < _V_LIMIT)
            new_u = jnp.where(ok[:, None], new_u, u)
            value = jnp.where(ok, value, jnp.nan)
            better = ok & (value < best)
            best = jnp.where(better, value, best)
            best_u = jnp.where(better[:, None], u, best_u)
            return new_u, new_lam, ok, best, best_u, value

        return hhjax.jit(step)

    phases: list[tuple[Any, int, str]] = [(opt, steps, "first")]
    if refine and hasattr(loss_fn, "residuals"):
        phases.append((None, refine, "lm"))
    elif refine:
        # Under vmap every start waits for the slowest line search: cap its length.
        search = optax.scale_by_zoom_linesearch(max_linesearch_steps=8)
        phases.append((optax.lbfgs(linesearch=search), refine, "lbfgs"))
    u = jnp.asarray(u0, dtype)
    alive = jnp.ones(starts, bool)
    best = jnp.full(starts, jnp.inf, dtype)
    best_u = u
    total = sum(n for _, n, _ in phases)
    history = np.full((total, starts), np.nan)
    elapsed = np.zeros(total)
    t0 = time.perf_counter()
    compile_s = 0.0
    global_best, since = np.inf, 0
    last_print = 0.0
    n_run = 0
    phase_starts = []
    for p_opt, n_steps, kind in phases:
        phase_starts.append(n_run)
        if kind != "first":  # refinements restart from each start's best point
            u = best_u
        if kind == "lm":
            step_jit = make_lm_step()
            opt_state = jnp.full(starts, 1e-2, dtype)  # the damping of each start
        else:
            step_jit = make_step(p_opt, kind == "lbfgs")
            opt_state = jax.vmap(p_opt.init)(u)
        since = 0
        for _ in range(n_steps):
            t_step = time.perf_counter()
            u, opt_state, alive, best, best_u, value = step_jit(
                u, opt_state, alive, best, best_u, data
            )
            history[n_run] = np.asarray(value)
            elapsed[n_run] = time.perf_counter() - t0
            n_run += 1
            if n_run == phase_starts[-1] + 1:
                compile_s += time.perf_counter() - t_step
            current = float(np.min(np.where(np.asarray(alive), np.asarray(best), np.inf)))
            if current < global_best - rtol * abs(global_best) or not np.isfinite(global_best):
                global_best, since = current, 0
            else:
                since += 1
            now = time.perf_counter()
            if progress and (now - last_print > 1.0 or n_run == total):
                last_print = now
                print(
                    f"\rfit: step {n_run}/{total}  best loss {global_best:.6g}  "
                    f"starts alive {int(np.sum(np.asarray(alive)))}/{starts}  {now - t0:.1f} s",
                    end="", file=sys.stderr, flush=True,
                )
            if not np.any(np.asarray(alive)) or since >= patience:
                break
    if progress:
        print(file=sys.stderr)
    seconds = time.perf_counter() - t0
    alive_np, best_np = np.asarray(alive), np.asarray(best, dtype=float)
    dropped = [int(i) for i in np.flatnonzero(~alive_np)]
    if dropped and progress:
        print(f"fit: dropped starts {dropped} (non-finite loss or gradient, or a diverging "
              "simulation); the others were unaffected", file=sys.stderr)
    losses = np.where(alive_np, best_np, np.inf)
    if not np.any(np.isfinite(losses)):
        raise ValueError(
            f"all {starts} starts were dropped (non-finite loss or gradient, or a diverging "
            "simulation); narrow the bounds, lower the learning rate or check the data"
        )
    i_best = int(np.argmin(losses))
    x_all = np.asarray(free_p.to_physical(best_u), dtype=float)
    x_best = x_all[i_best]
    params = {p: float(x_best[j]) for j, p in enumerate(free_p.paths)}
    fitted, _ = free_p.model({p: params[p] for p in free_p.paths})
    return FitResult(
        model=fitted, params=params, initial=initial, finals=free_p.as_dict(x_all), losses=losses, dropped=dropped,
        history=history[:n_run], elapsed=elapsed[:n_run], best=i_best, steps=n_run, seconds=seconds,
        compile_seconds=compile_s, free=free_p, recording=rec, loss_fn=loss_fn,
        method=method, checkpoint=ckpt, phase_starts=tuple(phase_starts),
    )
