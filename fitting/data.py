"""Recorded data to fit: :class:`Recording` (voltage, injected current, time grid) and loaders.

Conventions (the same as :func:`hhjax.simulate`): ``voltage[..., k]`` is the membrane
potential (mV) at ``t = k * dt`` and ``current[..., k]`` the injected current held over
``[k * dt, (k + 1) * dt)``. A recording of ``n`` samples is therefore compared with a
simulation driven by its first ``n - 1`` current values.

Currents are densities (uA/cm2) when ``current_unit="uA/cm2"``; absolute currents
(``"pA"`` or ``"nA"``) need a membrane ``area`` (cm2) or a fitted ``"area"`` parameter
(see :mod:`fitting.params`).

Loaders: :func:`load` dispatches on the suffix: ``.npz`` (hhjax's own format, written by
:meth:`Recording.save`, and the format of ``shared/data/real``), ``.csv`` (columns
``t_ms``, ``V_mV``/``v``, ``I_pA``/``I_nA``/``i_uA_cm2``; one sweep) and ``.abf`` (Axon
Binary Format, through the optional ``pyabf`` package: ``pip install hhjax[abf]``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CURRENT_UNITS", "Recording", "load", "load_abf", "load_csv", "load_npz"]

# Factor converting each unit to uA (absolute) or, for densities, to uA/cm2.
CURRENT_UNITS: dict[str, float] = {"uA/cm2": 1.0, "pA": 1e-6, "nA": 1e-3}


def _as_2d(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (n_steps,) or (n_sweeps, n_steps); got shape {arr.shape}")
    if arr.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 samples; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite; found {arr[bad]!r} at (sweep, sample) {bad}")
    return arr


@dataclasses.dataclass(frozen=True)
class Recording:
    """One or several sweeps of a current-clamp recording on a uniform time grid.

    Attributes:
        voltage: membrane potential, mV, ``(n_sweeps, n_samples)`` (1-D input becomes
            one sweep).
        current: injected current, ``(n_sweeps, n_samples)`` or ``(n_samples,)`` (shared
            by all sweeps); value k is held over ``[k dt, (k+1) dt)``.
        dt: sampling interval, ms.
        current_unit: ``"uA/cm2"`` (a density), ``"pA"`` or ``"nA"`` (absolute).
        area: membrane area, cm2, converting absolute currents to densities; ``None``
            for densities or when ``"area"`` is fitted.
        weights: per-sample weights ``(n_sweeps, n_samples)`` (default ones); a
            window is a weight of 0 outside it.
        name: a label for plots and tables.
    """

    voltage: np.ndarray
    current: np.ndarray
    dt: float
    current_unit: str = "uA/cm2"
    area: float | None = None
    weights: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        v = _as_2d("voltage", self.voltage)
        i = _as_2d("current", self.current)
        if i.shape[0] == 1 and v.shape[0] > 1:
            i = np.broadcast_to(i, v.shape).copy()
        if i.shape != v.shape:
            raise ValueError(
                f"current shape {i.shape} does not match voltage shape {v.shape} "
                "(give one current value per voltage sample)"
            )
        if not isinstance(self.dt, (int, float, np.floating, np.integer)) or isinstance(self.dt, bool):
            raise ValueError(f"dt must be a number (ms); got {self.dt!r}")
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise ValueError(f"dt must be a finite number > 0 ms; got {self.dt!r}")
        if self.current_unit not in CURRENT_UNITS:
            raise ValueError(
                f"current_unit must be one of {sorted(CURRENT_UNITS)}; got {self.current_unit!r}"
            )
        if self.area is not None:
            if self.current_unit == "uA/cm2":
                raise ValueError("area (cm2) is only meaningful for absolute currents (pA, nA)")
            if not np.isfinite(self.area) or self.area <= 0:
                raise ValueError(f"area must be a finite number > 0 cm2; got {self.area!r}")
        if self.weights is None:
            w = np.ones_like(v)
        else:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.ndim == 1:
                w = np.broadcast_to(w, v.shape).copy()
            if w.shape != v.shape:
                raise ValueError(f"weights shape {w.shape} does not match voltage shape {v.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("weights must be finite and >= 0")
            if not np.any(w > 0):
                raise ValueError("weights are zero everywhere: nothing to fit")
        object.__setattr__(self, "voltage", v)
        object.__setattr__(self, "current", i)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "dt", float(self.dt))

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_times(cls, t: Any, voltage: Any, current: Any, **kwargs: Any) -> Recording:
        """A recording from time stamps ``t`` (ms, increasing), resampled to their mean step.

        Non-uniform stamps are linearly interpolated onto the uniform grid
        ``t[0] + k * dt`` with ``dt = (t[-1] - t[0]) / (len(t) - 1)``.
        """
        t = np.asarray(t, dtype=np.float64)
        v, i = _as_2d("voltage", voltage), _as_2d("current", current)
        if t.ndim != 1 or t.shape[0] != v.shape[-1]:
            raise ValueError(
                f"t must be 1-D with one stamp per sample ({v.shape[-1]}); got shape {t.shape}"
            )
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise ValueError("t must be finite and strictly increasing (ms)")
        dt = (t[-1] - t[0]) / (t.size - 1)
        grid = t[0] + dt * np.arange(t.size)
        if not np.allclose(grid, t, rtol=0, atol=1e-6 * dt):
            v = np.stack([np.interp(grid, t, row) for row in v])
            i = np.stack([np.interp(grid, t, row) for row in np.broadcast_to(i, v.shape)])
        return cls(voltage=v, current=i, dt=float(dt), **kwargs)

    # -- shape and views ----------------------------------------------------------------
    @property
    def n_sweeps(self) -> int:
        """Number of sweeps."""
        return int(self.voltage.shape[0])

    @property
    def n_samples(self) -> int:
        """Samples per sweep."""
        return int(self.voltage.shape[1])

    @property
    def t(self) -> np.ndarray:
        """Sample times, ms, ``(n_samples,)`` starting at 0."""
        return np.arange(self.n_samples) * self.dt

    @property
    def duration(self) -> float:
        """``(n_samples - 1) * dt``, ms."""
        return (self.n_samples - 1) * self.dt

    def sweeps(self, index: int | Sequence[int] | slice) -> Recording:
        """The recording restricted to some sweeps (an int keeps one sweep)."""
        idx = [index] if isinstance(index, (int, np.integer)) else index
        return dataclasses.replace(
            self, voltage=self.voltage[idx], current=self.current[idx], weights=self.weights[idx]
        )

    def crop(self, start: float, stop: float) -> Recording:
        """The samples with ``start <= t <= stop`` (ms); time restarts at 0."""
        k0 = int(np.ceil(start / self.dt - 1e-9))
        k1 = int(np.floor(stop / self.dt + 1e-9)) + 1
        if not 0 <= k0 < k1 - 1 < self.n_samples:
            raise ValueError(
                f"crop window [{start}, {stop}] ms is empty or outside [0, {self.duration}] ms"
            )
        s = slice(k0, k1)
        return dataclasses.replace(
            self, voltage=self.voltage[:, s], current=self.current[:, s], weights=self.weights[:, s]
        )

    def window(self, *windows: tuple[float, float]) -> Recording:
        """Weights set to zero outside the union of the ``(start, stop)`` windows (ms)."""
        if not windows:
            raise ValueError("window needs at least one (start, stop) pair in ms")
        inside = np.zeros(self.n_samples, dtype=bool)
        for w in windows:
            if len(w) != 2 or not w[0] < w[1]:
                raise ValueError(f"each window must be (start, stop) ms with start < stop; got {w!r}")
            inside |= (self.t >= w[0]) & (self.t <= w[1])
        if not inside.any():
            raise ValueError(f"windows {windows!r} hold no sample of this recording")
        return dataclasses.replace(self, weights=self.weights * inside)

    def resample(self, dt: float) -> Recording:
        """The recording on the grid ``k * dt`` (ms) covering the same duration.

        Voltage and weights are linearly interpolated; the current is treated as the
        step function it is (value k over ``[k dt_old, (k+1) dt_old)``) and each new
        value is its exact mean over ``[k dt, (k+1) dt)``, so charge is conserved (the
        last value is held past the end).
        """
        if not np.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be a finite number > 0 ms; got {dt!r}")
        n_new = int(np.floor(self.duration / dt + 1e-9)) + 1
        if n_new < 2:
            raise ValueError(f"dt = {dt} ms leaves fewer than 2 samples in {self.duration} ms")
        t_new = np.arange(n_new) * dt
        v = np.stack([np.interp(t_new, self.t, row) for row in self.voltage])
        w = np.stack([np.interp(t_new, self.t, row) for row in self.weights])
        # Charge C(t) = integral of the step function: piecewise linear with knots k dt_old.
        # The last value holds on past the end (the final new step may reach beyond it).
        pad = int(np.ceil(dt / self.dt)) + 1
        held = np.pad(self.current, ((0, 0), (0, pad)), mode="edge")
        knots = np.arange(held.shape[1] + 1) * self.dt
        charge = np.concatenate(
            [np.zeros((self.n_sweeps, 1)), np.cumsum(held * self.dt, axis=1)], axis=1
        )
        edges = np.arange(n_new + 1) * dt
        c_edges = np.stack([np.interp(edges, knots, row) for row in charge])
        i = np.diff(c_edges, axis=1) / dt
        return dataclasses.replace(self, voltage=v, current=i, weights=w, dt=float(dt))

    def current_density(self, area: float | None = None) -> np.ndarray:
        """The current in uA/cm2 (``area`` in cm2 overrides :attr:`area`)."""
        if self.current_unit == "uA/cm2":
            return self.current
        area = self.area if area is None else area
        if area is None:
            raise ValueError(
                f"the current is absolute ({self.current_unit}); give the membrane area (cm2) "
                "or fit the 'area' parameter"
            )
        return self.current * CURRENT_UNITS[self.current_unit] / area

    # -- files --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` in hhjax's format (read back by :func:`load`)."""
        path = Path(path)
        np.savez(
            path, voltage=self.voltage, current=self.current, dt=self.dt,
            current_unit=self.current_unit, area=np.nan if self.area is None else self.area,
            weights=self.weights, name=self.name,
        )
        return path


def load_npz(path: str | Path, sweeps: Sequence[int] | None = None) -> Recording:
    """Read an ``.npz``: hhjax's own format or the ``shared/data/real`` format.

    The real-data format holds ``t_ms``, ``V_mV`` and ``I_pA`` (absolute current, pA).

    Raises:
        ValueError: the file lacks the keys of either format (naming what is missing).
    """
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        if {"voltage", "current", "dt"} <= keys:
            area = float(f["area"]) if "area" in keys else np.nan
            unit = str(f["current_unit"]) if "current_unit" in keys else None
            if unit is None:
                raise ValueError(f"{path}: no 'current_unit' key: the current's unit is unknown")
            rec = Recording(
                voltage=f["voltage"], current=f["current"], dt=float(f["dt"]), current_unit=unit,
                area=None if np.isnan(area) else area,
                weights=f["weights"] if "weights" in keys else None,
                name=str(f["name"]) if "name" in keys else Path(path).stem,
            )
        elif {"V_mV", "t_ms"} <= keys and ({"I_pA"} & keys or {"I_nA"} & keys):
            unit = "pA" if "I_pA" in keys else "nA"
            rec = Recording.from_times(
                f["t_ms"], f["V_mV"], f["I_" + unit], current_unit=unit, name=Path(path).stem
            )
        else:
            raise ValueError(
                f"{path}: unrecognised npz keys {sorted(keys)}; expected hhjax's "
                "('voltage', 'current', 'dt', 'current_unit') or ('t_ms', 'V_mV', 'I_pA')"
            )
    return rec if sweeps is None else rec.sweeps(list(sweeps))


_CSV_V = ("V_mV", "v_mV", "v", "V", "voltage")
_CSV_I = {"I_pA": "pA", "I_nA": "nA", "i_uA_cm2": "uA/cm2", "I_uA_cm2": "uA/cm2"}


def load_csv(path: str | Path) -> Recording:
    """Read one sweep from a ``.csv`` with a header row.

    Columns: ``t_ms`` (time, ms), a voltage column (``V_mV``), and a current column
    whose name carries its unit: ``I_pA``, ``I_nA`` or ``i_uA_cm2``.

    Raises:
        ValueError: a missing column (e.g. a current without a unit), NaNs.
    """
    with open(path, encoding="utf-8") as fh:
        header = [h.strip() for h in fh.readline().split(",")]
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    if data.shape[1] != len(header):
        raise ValueError(f"{path}: {len(header)} header names but {data.shape[1]} columns")
    cols = dict(zip(header, data.T, strict=True))
    if "t_ms" not in cols:
        raise ValueError(f"{path}: no 't_ms' column (time in ms); columns are {header}")
    v_name = next((c for c in _CSV_V if c in cols), None)
    if v_name is None:
        raise ValueError(f"{path}: no voltage column (one of {_CSV_V}); columns are {header}")
    i_name = next((c for c in _CSV_I if c in cols), None)
    if i_name is None:
        raise ValueError(
            f"{path}: no current column with a unit (one of {sorted(_CSV_I)}); columns are {header}"
        )
    return Recording.from_times(
        cols["t_ms"], cols[v_name], cols[i_name], current_unit=_CSV_I[i_name], name=Path(path).stem
    )


def load_abf(path: str | Path, sweeps: Sequence[int] | None = None) -> Recording:
    """Read an Axon Binary Format file (current clamp) with ``pyabf``.

    The voltage is the recorded channel 0 (must be in mV); the current is the command
    waveform (``sweepC``, pA), as ABF files store it.

    Raises:
        ImportError: ``pyabf`` is not installed (``pip install hhjax[abf]``).
        ValueError: the channel is not in mV or the command is not in pA/nA.
    """
    try:
        import pyabf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading .abf files needs pyabf: pip install 'hhjax[abf]'") from err
    abf = pyabf.ABF(str(path))
    if abf.adcUnits[0] != "mV":
        raise ValueError(f"{path}: channel 0 is in {abf.adcUnits[0]!r}, not mV (not current clamp?)")
    unit = abf.dacUnits[0]
    if unit not in ("pA", "nA"):
        raise ValueError(f"{path}: command waveform in {unit!r}; expected pA or nA")
    idx = list(range(abf.sweepCount)) if sweeps is None else list(sweeps)
    v, i = [], []
    for k in idx:
        abf.setSweep(k, channel=0)
        v.append(np.array(abf.sweepY, dtype=np.float64))
        i.append(np.array(abf.sweepC, dtype=np.float64))
    return Recording(
        voltage=np.stack(v), current=np.stack(i), dt=1000.0 / abf.sampleRate,
        current_unit=unit, name=Path(path).stem,
    )


def load(path: str | Path, sweeps: Sequence[int] | None = None) -> Recording:
    """Read a recording, choosing the loader by suffix (``.npz``, ``.csv``, ``.abf``).

    Raises:
        ValueError: unknown suffix or malformed file; FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such recording file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, sweeps)
    if suffix == ".abf":
        return load_abf(path, sweeps)
    if suffix == ".csv":
        rec = load_csv(path)
        return rec if sweeps is None else rec.sweeps(list(sweeps))
    raise ValueError(f"unknown recording format {suffix!r} of {path}; use .npz, .csv or .abf")


def _meta(path: str | Path) -> dict[str, Any]:
    """The ``meta_json`` of a ``shared/data/real`` npz (empty dict if absent)."""
    with np.load(path, allow_pickle=False) as f:
        return json.loads(str(f["meta_json"])) if "meta_json" in f.files else {}
