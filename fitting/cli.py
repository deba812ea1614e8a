"""``hhjax fit``: fit a preset's parameters to a recording file and print a table.

``hhjax/cli.py`` builds the ``fit`` subcommand from :func:`add_arguments` and calls
:func:`run`. Example::

    hhjax fit data.npz --model squid --free na.g k.g leak.g --steps 300 --output fit.json
    hhjax fit cell.abf --model cortical_pyramidal --sweeps 8 12 --crop 800 1350 \\
        --free na.g k.g leak.g leak.e_rev area --dt 0.05 --loss spike
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]

_LOSSES = ("mse", "subthreshold", "spike")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``hhjax fit`` options to ``parser``."""
    parser.add_argument("data", help="recording: .npz (hhjax or shared/data/real format), .csv or .abf")
    parser.add_argument("--model", default="squid", help="preset to start from (hhjax.presets)")
    parser.add_argument(
        "--free", nargs="+", default=["na.g", "k.g", "leak.g"], metavar="PATH",
        help="parameter paths to fit (see hhjax.get_params); 'area' (cm2) scales pA/nA currents",
    )
    parser.add_argument(
        "--bounds", nargs="+", default=[], metavar="PATH=LO:HI",
        help="bounds overriding the defaults, e.g. na.g=50:200",
    )
    parser.add_argument("--sweeps", nargs="+", type=int, default=None, help="sweep indices to fit (all)")
    parser.add_argument("--crop", nargs=2, type=float, default=None, metavar=("START", "STOP"),
                        help="keep only this time window, ms")
    parser.add_argument("--dt", type=float, default=None, help="simulation step, ms (the recording's)")
    parser.add_argument("--area", type=float, default=None,
                        help="membrane area, cm2, for absolute currents (or free 'area')")
    parser.add_argument("--temperature", type=float, default=None, help="model temperature, C")
    parser.add_argument("--loss", choices=_LOSSES, default="mse", help="loss function")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps")
    parser.add_argument("--refine", type=int, default=30, help="L-BFGS refinement steps afterwards")
    parser.add_argument("--starts", type=int, default=4, help="random starts, fitted together")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the starts")
    parser.add_argument("--output", "-o", type=Path, default=None, help="write fitted parameters to this JSON")
    parser.add_argument("--figure", type=Path, default=None, help="write a data-vs-fit figure (PNG)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def _bounds(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        try:
            path, rng = item.split("=", 1)
            lo, hi = (float(x) for x in rng.split(":", 1))
        except ValueError as err:
            raise ValueError(f"--bounds entries look like PATH=LO:HI; got {item!r}") from err
        out[path] = (lo, hi)
    return out


def run(args: argparse.Namespace) -> int:
    """Load, fit, print the parameter table and optionally write JSON and a figure.

    Returns:
        0 on success, 2 on bad input (the message goes to stderr).
    """
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"hhjax fit: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    import hhjax

    from .data import load
    from .losses import spike_loss, subthreshold_mse, voltage_mse
    from .optimize import fit

    for out in (args.output, args.figure):
        if out is not None and out.exists() and not args.force:
            raise ValueError(f"{out} exists; pass --force to overwrite it")
    rec = load(args.data, sweeps=args.sweeps)
    if args.crop is not None:
        rec = rec.crop(*args.crop)
    if args.area is not None:
        rec = dataclasses.replace(rec, area=args.area)
    kwargs = {} if args.temperature is None else {"temperature": args.temperature}
    model = hhjax.presets.get(args.model, **kwargs)
    bounds = _bounds(args.bounds)
    free: dict[str, tuple[float, float] | None] = {p: bounds.get(p) for p in args.free}
    extra = set(bounds) - set(free)
    if extra:
        raise ValueError(f"--bounds names parameters that are not --free: {sorted(extra)}")
    loss = {"mse": voltage_mse, "subthreshold": subthreshold_mse, "spike": spike_loss}[args.loss]()
    result = fit(
        model, rec, free, loss=loss, steps=args.steps, refine=args.refine, starts=args.starts,
        key=args.seed, learning_rate=args.lr, dt=args.dt, progress=not args.quiet,
    )
    print(f"# {Path(args.data).name}: {result.recording.n_sweeps} sweep(s) of "
          f"{result.recording.duration:g} ms at dt {result.recording.dt:g} ms; model {args.model}; "
          f"loss {args.loss}")
    print(result.table())
    if args.output is not None:
        err = result.standard_errors()
        payload = {
            "data": str(args.data), "model": args.model, "loss_name": args.loss,
            "loss": result.loss, "steps": result.steps, "seconds": result.seconds,
            "params": result.params, "std_errors": err.se, "noise_sigma_mV": err.sigma,
            "unidentifiable": err.unidentifiable,
            "start_losses": [float(x) if np.isfinite(x) else None for x in result.losses],
            "dropped_starts": result.dropped,
        }
        args.output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    if args.figure is not None:
        fig = result.plot()
        fig.savefig(args.figure, dpi=120)
        print(f"wrote {args.figure}")
    return 0
