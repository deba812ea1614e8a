"""The ``hhjax`` command: simulate, f-I curves, fitting and the list of presets.

``hhjax`` with no arguments simulates the squid axon under a 10 uA/cm2 step and writes
a figure and the trace into ``hhjax_out/`` (a fresh name each time). Stimuli are given
in a small grammar, parsed and never evaluated::

    step:10@10-60            10 uA/cm2 from 10 to 60 ms  (step:10@10 = to the end)
    pulses:150@0-1,50@10-11  rectangular pulses, amplitude@start-stop each
    ramp:0-20@0-100          linear ramp from 0 to 20 uA/cm2 over 0-100 ms
    sine:5,10Hz              5 uA/cm2 sine at 10 Hz (sine:5,10Hz,offset=2@0-50)
    noise:sigma=3,tau=5,seed=123   twice-filtered Gaussian noise (order=, mean=)
    const:4   or   4         a constant current
    step:10@10 + noise:sigma=1,tau=2,seed=0   terms add

Units: mV, ms, uA/cm2, mS/cm2, degrees C, Hz.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "parse_currents", "parse_stimulus"]

DEFAULT_DIR = Path("hhjax_out")
STIMULUS_HELP = (
    "stimulus in uA/cm2, terms joined by '+': step:A@T0-T1 (or step:A@T0), "
    "pulses:A@T0-T1,A@T0-T1,..., ramp:A0-A1@T0-T1, sine:A,FHz[,offset=B][@T0-T1], "
    "noise:sigma=S,tau=TAU[,seed=N][,order=K][,mean=M], const:A (times in ms)"
)

_NUM = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE]-?\d+)?"
_RANGE = re.compile(rf"^({_NUM})-({_NUM})$")


class UsageError(ValueError):
    """Bad command-line input (exit status 2)."""


# ------------------------------------------------------------------- stimulus grammar


def _number(text: str, what: str, term: str) -> float:
    if not re.fullmatch(_NUM, text.strip()):
        raise UsageError(f"stimulus term {term!r}: {what} must be a number; got {text.strip()!r}")
    value = float(text)
    if not math.isfinite(value):
        raise UsageError(f"stimulus term {term!r}: {what} must be finite; got {text!r}")
    return value


def _interval(text: str, term: str, *, open_end: bool = False) -> tuple[float, float | None]:
    text = text.strip()
    m = _RANGE.match(text)
    if m:
        t0, t1 = float(m.group(1)), float(m.group(2))
        if t1 <= t0:
            raise UsageError(f"stimulus term {term!r}: the interval {text!r} must end after it starts")
        return t0, t1
    if open_end and re.fullmatch(_NUM, text):
        return float(text), None
    form = "T0-T1 or T0" if open_end else "T0-T1"
    raise UsageError(f"stimulus term {term!r}: expected times {form} in ms after '@'; got {text!r}")


def _keywords(parts: Sequence[str], allowed: dict[str, type], term: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        if "=" not in part:
            raise UsageError(f"stimulus term {term!r}: expected key=value; got {part.strip()!r}")
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in allowed:
            raise UsageError(
                f"stimulus term {term!r}: unknown key {key!r}; allowed: {', '.join(allowed)}"
            )
        if allowed[key] is int:
            if not re.fullmatch(r"\d+", value):
                raise UsageError(f"stimulus term {term!r}: {key} must be a whole number; got {value!r}")
            out[key] = int(value)
        else:
            out[key] = _number(value, key, term)
    return out


def _term(term: str) -> Any:
    import numpy as np

    from . import stimulus as stim

    text = term.strip()
    if not text:
        raise UsageError("empty stimulus term (check for a doubled or trailing '+')")
    if re.fullmatch(_NUM, text):
        return stim.step_current(float(text), 0.0)
    kind, sep, body = text.partition(":")
    kind = kind.strip().lower()
    if not sep:
        raise UsageError(f"stimulus term {text!r}: expected kind:arguments, e.g. step:10@10-60")
    if kind in ("const", "constant"):
        return stim.step_current(_number(body, "the amplitude", text), 0.0)
    if kind == "step":
        amp, at, when = body.partition("@")
        start, stop = _interval(when, text, open_end=True) if at else (0.0, None)
        return stim.step_current(_number(amp, "the amplitude", text), start, stop)
    if kind in ("pulse", "pulses"):
        starts, widths, amps = [], [], []
        for item in body.split(","):
            amp, at, when = item.partition("@")
            if not at:
                raise UsageError(f"stimulus term {text!r}: each pulse is amplitude@start-stop; got {item!r}")
            t0, t1 = _interval(when, text)
            starts.append(t0)
            widths.append(t1 - t0)
            amps.append(_number(amp, "a pulse amplitude", text))
        return stim.pulse_train(starts, widths, np.asarray(amps))
    if kind == "ramp":
        amps, at, when = body.partition("@")
        m = _RANGE.match(amps.strip())
        if not m or not at:
            raise UsageError(f"stimulus term {text!r}: expected ramp:A0-A1@T0-T1 (uA/cm2, ms)")
        t0, t1 = _interval(when, text)
        return stim.ramp(t0, t1, float(m.group(2)), float(m.group(1)))
    if kind == "sine":
        args, at, when = body.partition("@")
        parts = [p for p in args.split(",")]
        if len(parts) < 2 or not parts[1].strip().lower().endswith("hz"):
            raise UsageError(f"stimulus term {text!r}: expected sine:A,FHz[,offset=B][@T0-T1]")
        amp = _number(parts[0], "the amplitude", text)
        freq = _number(parts[1].strip()[:-2], "the frequency (Hz)", text)
        kw = _keywords(parts[2:], {"offset": float, "phase": float}, text)
        start, stop = _interval(when, text, open_end=True) if at else (0.0, None)
        return stim.sine(amp, freq, start=start, stop=stop, **kw)
    if kind == "noise":
        import jax

        kw = _keywords(body.split(","), {"sigma": float, "tau": float, "seed": int, "order": int,
                                         "mean": float}, text)
        if "sigma" not in kw or "tau" not in kw:
            raise UsageError(f"stimulus term {text!r}: noise needs sigma= (uA/cm2) and tau= (ms)")
        seed = kw.pop("seed", 0)
        return stim.filtered_noise(jax.random.PRNGKey(seed), kw.pop("sigma"), kw.pop("tau"), **kw)
    raise UsageError(
        f"stimulus term {text!r}: unknown kind {kind!r}; use step, pulses, ramp, sine, noise or const"
    )


def parse_stimulus(text: str) -> Any:
    """Parse the stimulus grammar (see the module docstring) into a Stimulus.

    Raises:
        ValueError: a malformed term, naming it and the expected form.
    """
    terms = text.split("+")
    try:
        parts = [_term(t) for t in terms]
    except UsageError:
        raise
    except ValueError as err:  # the stimulus constructors' own checks
        raise UsageError(f"stimulus {text!r}: {err}") from err
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def parse_currents(text: str) -> list[float]:
    """``"0:20:0.5"`` (start:stop:step, stop included) or ``"1,2,5"``, in uA/cm2."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise UsageError(f"--currents: expected START:STOP:STEP (uA/cm2); got {text!r}")
        a, b, s = (_number(p, "--currents", text) for p in parts)
        if s <= 0 or b < a:
            raise UsageError(f"--currents: need STOP >= START and STEP > 0; got {text!r}")
        n = int(math.floor((b - a) / s * (1 + 1e-9))) + 1
        if n > 100_000:
            raise UsageError(f"--currents: {n} currents is too many (at most 100000)")
        return [a + k * s for k in range(n)]
    values = [_number(p, "--currents", text) for p in text.split(",") if p.strip()]
    if not values:
        raise UsageError("--currents: give START:STOP:STEP or a comma-separated list")
    return values


def _overrides(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--set expects PATH=VALUE (e.g. na.g=100); got {item!r}")
        out[key.strip()] = _number(value, f"--set {key.strip()}", item)
    return out


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    m = re.fullmatch(rf"\s*({_NUM})\s*[:,]\s*({_NUM})\s*", text)
    if not m:
        raise UsageError(f"--window: expected START:STOP in ms; got {text!r}")
    return float(m.group(1)), float(m.group(2))


# --------------------------------------------------------------------------- outputs


def _fresh(directory: Path, stem: str, suffixes: Sequence[str]) -> list[Path]:
    """``stem.x``, else ``stem-1.x``, ``stem-2.x``...: the first index free for all suffixes."""
    for k in range(10_000):
        name = stem if k == 0 else f"{stem}-{k}"
        paths = [directory / f"{name}{s}" for s in suffixes]
        if not any(p.exists() for p in paths):
            return paths
    raise UsageError(f"no free file name for {stem} in {directory}")


def _claim(path: Path, force: bool, flag: str) -> Path:
    if path.exists() and not force:
        raise UsageError(f"{flag} {path} exists; pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise UsageError(f"{flag} {path} is a directory")
    return path


def _output_paths(args: argparse.Namespace, stem: str) -> tuple[Path | None, Path | None]:
    """(figure, data) paths: explicit ones are checked, defaults get fresh names."""
    fig = None if args.no_plot else args.output
    data = None if args.no_data else args.data
    if args.data is not None and args.data.suffix.lower() not in (".npz", ".csv"):
        raise UsageError(f"--data must end in .npz or .csv; got {args.data}")
    if fig is not None and fig.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--output must end in .png, .pdf or .svg; got {fig}")
    want_fig, want_data = not args.no_plot, not args.no_data
    if want_fig and fig is None and want_data and data is None:
        fig, data = _fresh(DEFAULT_DIR, stem, [".png", ".npz"])
    elif want_fig and fig is None:
        fig = (_fresh(data.parent, data.stem, [".png"])[0] if data else
               _fresh(DEFAULT_DIR, stem, [".png"])[0])
    elif want_data and data is None:
        data = _fresh(fig.parent, fig.stem, [".npz"])[0] if fig else _fresh(DEFAULT_DIR, stem, [".npz"])[0]
    if args.output is not None and fig is not None:
        _claim(fig, args.force, "--output")
    if args.data is not None and data is not None:
        _claim(data, args.force, "--data")
    if fig is not None and data is not None and fig.resolve() == data.resolve():
        raise UsageError("--output and --data name the same file")
    return fig, data


def _write_table(path: Path, columns: dict[str, Any]) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in columns.items()}
    if path.suffix.lower() == ".npz":
        np.savez(path, **arrays)
        return
    header = ",".join(arrays)
    table = np.column_stack([a.reshape(len(a), -1) for a in arrays.values()])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.9g")


# ------------------------------------------------------------------------- commands


def _model(args: argparse.Namespace, preset: str) -> Any:
    from . import presets, set_params

    kwargs = {} if args.temperature is None else {"temperature": args.temperature}
    model = presets.get(preset, **kwargs)
    if args.set:
        model = set_params(model, _overrides(args.set))
    return model


def _threshold(model: Any, given: float | None) -> float:
    """Spike threshold: given, else 65 mV above rest (0 mV for squid, 65 for hh1952)."""
    if given is not None:
        return given
    from . import resting_state

    rest = float(resting_state(model).v)
    return float(round(rest + 65.0))


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from . import simulate
    from .analysis import spike_times

    if args.preset not in _preset_names():
        raise UsageError(_unknown_preset(args.preset))
    stim = parse_stimulus(args.stimulus)
    model = _model(args, args.preset)
    fig_path, data_path = _output_paths(args, "trace")
    record = ("v", "gates", "currents")
    trace = simulate(model, stim, dt=args.dt, t_max=args.duration, method=args.method, record=record)
    i_ext = np.asarray(stim.sample(args.dt, args.duration))
    thr = _threshold(model, args.threshold)
    sp = spike_times(trace, threshold=thr)
    times = np.asarray(sp.times)[: int(sp.count)]
    print(
        f"{args.preset}: {trace.t.shape[0] - 1} steps of {args.dt} ms ({args.method}), "
        f"{int(sp.count)} spikes (threshold {thr:g} mV)"
        + (f", first at {times[0]:.2f} ms" if times.size else "")
    )
    if data_path is not None:
        t = np.asarray(trace.t)
        columns: dict[str, Any] = {"t_ms": t, "v_mV": np.asarray(trace.v),
                                   "i_ext_uA_cm2": np.append(i_ext, i_ext[-1])}
        columns |= {f"{k}": np.asarray(x) for k, x in trace.gates.items()}
        columns |= {f"I_{k}_uA_cm2": np.asarray(x) for k, x in trace.currents.items()}
        _write_table(data_path, columns)
        print(f"wrote {data_path}")
    if fig_path is not None:
        from . import plot

        title = f"{args.preset}: {args.stimulus}"
        fig = plot.overview(trace, i_ext, threshold=thr, title=title)
        fig_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(fig_path, dpi=args.dpi)
        print(f"wrote {fig_path}")
    return 0


def cmd_fi(args: argparse.Namespace) -> int:
    import numpy as np

    from . import plot
    from .analysis import fi_curve

    for p in args.preset:
        if p not in _preset_names():
            raise UsageError(_unknown_preset(p))
    currents = np.asarray(parse_currents(args.currents))
    window = _window(args.window)
    fig_path, data_path = _output_paths(args, "fi")
    curves = {}
    chunk = max(8, -(-currents.size // 10))
    for p in args.preset:
        model = _model(args, p)
        if not args.quiet:
            print(f"{p}: {currents.size} currents, {args.duration} ms each", file=sys.stderr)
        curves[p] = fi_curve(
            model, currents, duration=args.duration, dt=args.dt, method=args.method,
            window=window, threshold=_threshold(model, args.threshold), chunk=chunk,
            progress=not args.quiet,
        )
    for p, fi in curves.items():
        rate = np.asarray(fi.rate)
        firing = np.flatnonzero(rate > 0)
        if firing.size:
            k = firing[0]
            print(f"{p}: first firing at {currents[k]:g} uA/cm2 ({rate[k]:.1f} Hz); "
                  f"{rate[-1]:.1f} Hz at {currents[-1]:g} uA/cm2")
        else:
            print(f"{p}: no sustained firing up to {currents[-1]:g} uA/cm2")
    if data_path is not None:
        cols = {"current_uA_cm2": currents}
        cols |= {f"{p}_rate_Hz": np.asarray(fi.rate) for p, fi in curves.items()}
        _write_table(data_path, cols)
        print(f"wrote {data_path}")
    if fig_path is not None:
        w = next(iter(curves.values())).window
        fig = plot.fi_curves(curves, title=f"f-I: {args.duration:g} ms steps, rate over {w[0]:g}-{w[1]:g} ms")
        fig_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(fig_path, dpi=args.dpi)
        print(f"wrote {fig_path}")
    return 0


def _preset_names() -> list[str]:
    from .presets import PRESETS

    return list(PRESETS)


def _unknown_preset(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, _preset_names(), n=2, cutoff=0.4)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"unknown preset {name!r}{hint}; run 'hhjax presets' for the list"


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    for name, fn in PRESETS.items():
        doc = inspect.getdoc(fn) or ""
        summary = doc.splitlines()[0] if doc else ""
        refs = doc.split("References:", 1)[1].strip().splitlines() if "References:" in doc else []
        source = " ".join(line.strip() for line in refs)
        print(f"{name:20s} {summary}")
        if source:
            print(f"{'':20s} source: {source}")
    return 0


FITTING_MISSING = (
    "hhjax fit: the fitting package is not available ({err}); install hhjax with its "
    "fitting package (pip install -e .) to fit models to recordings"
)


def cmd_fit(argv: Sequence[str]) -> int:
    """``hhjax fit ...``: imported lazily from ``fitting.cli`` (add_arguments, run)."""
    try:
        mod = importlib.import_module("fitting.cli")
        add_arguments, run = mod.add_arguments, mod.run
    except (ImportError, AttributeError) as err:
        print(FITTING_MISSING.format(err=err), file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog="hhjax fit", description="Fit a model's parameters to a recording (see fitting).",
        formatter_class=_Formatter,
    )
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    return int(run(args) or 0)


# --------------------------------------------------------------------------- parser


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except empty ones and where the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _common(p: argparse.ArgumentParser, *, default_duration: float) -> None:
    p.add_argument("--duration", type=float, default=default_duration, metavar="MS",
                   help="length of the run, ms")
    p.add_argument("--dt", type=float, default=0.025, metavar="MS", help="integration step, ms")
    p.add_argument("--method", choices=["exp_euler", "rk4", "euler"], default="exp_euler",
                   help="integration method")
    p.add_argument("--temperature", type=float, default=None, metavar="C",
                   help="temperature in degrees C (rates scale by Q10 = 3; default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a parameter in the model's units, e.g. --set na.g=100 (mS/cm2) "
                        "or --set leak.e_rev=-60 (mV); repeatable; see hhjax.get_params")
    p.add_argument("--threshold", type=float, default=None, metavar="MV",
                   help="spike threshold, mV (default: 65 mV above rest: 0 mV for squid)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FIG",
                   help="figure file (.png, .pdf or .svg; default: a fresh name in hhjax_out/)")
    p.add_argument("--data", type=Path, default=None, metavar="FILE",
                   help="data file, .npz or .csv (default: next to the figure, .npz)")
    p.add_argument("--no-plot", action="store_true", help="write no figure")
    p.add_argument("--no-data", action="store_true", help="write no data file")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--dpi", type=int, default=120, help="figure resolution, dots per inch")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hhjax`` (the ``fit`` options come from ``fitting.cli``)."""
    fmt = _Formatter
    parser = argparse.ArgumentParser(
        prog="hhjax",
        description="Hodgkin-Huxley neuron simulation on JAX. Units: mV, ms, uA/cm2, mS/cm2. "
                    "Without a command: 'hhjax simulate' with its defaults (squid axon, "
                    "10 uA/cm2 step), writing a figure and the trace into hhjax_out/.",
        formatter_class=fmt,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"hhjax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser("simulate", help="simulate one neuron and plot V, the stimulus, gates "
                         "and currents", formatter_class=fmt,
                         description="Simulate a preset under a stimulus; write a figure and the "
                                     "trace (t, V, stimulus, gates, currents).")
    sim.add_argument("--preset", default="squid", metavar="NAME",
                     help="model preset (see 'hhjax presets')")
    sim.add_argument("--stimulus", default="step:10@10", metavar="SPEC", help=STIMULUS_HELP)
    _common(sim, default_duration=100.0)
    sim.set_defaults(func=cmd_simulate)

    fi = sub.add_parser("fi", help="f-I curves of one or more presets", formatter_class=fmt,
                        description="Steady-state firing rate against step current, all "
                                    "currents in one compiled call per preset.")
    fi.add_argument("--preset", nargs="+", default=["squid"], metavar="NAME",
                    help="one or more presets, drawn on one axes")
    fi.add_argument("--currents", default="0:20:0.5", metavar="SPEC",
                    help="step amplitudes, uA/cm2: START:STOP:STEP (STOP included) or a list 1,2,5")
    fi.add_argument("--window", default=None, metavar="START:STOP",
                    help="where the rate is measured, ms (default: the last 80%% of the run)")
    fi.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(fi, default_duration=1000.0)
    fi.set_defaults(func=cmd_fi)

    sub.add_parser("fit", help="fit a model to a recording (options: 'hhjax fit --help')",
                   add_help=False)
    pre = sub.add_parser("presets", help="list the presets and their sources", formatter_class=fmt)
    pre.set_defaults(func=cmd_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hhjax`` command; returns the exit status."""
    from .xla import enable_compile_cache

    enable_compile_cache()  # a second command skips the compiles of the first
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "fit":
        return cmd_fit(argv[1:])
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["simulate", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from .simulate import DivergenceError

    try:
        return args.func(args)
    except DivergenceError as err:
        print(f"hhjax {args.command}: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as err:
        print(f"hhjax {args.command}: error: {err}", file=sys.stderr)
        return 2
