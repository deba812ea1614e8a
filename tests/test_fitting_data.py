"""fitting.data: Recording validation, resampling, windows and the loaders."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fitting import Recording, load

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def test_recording_shapes_and_validation():
    rec = Recording(voltage=np.zeros(5), current=np.ones(5), dt=0.1)
    assert rec.voltage.shape == (1, 5) and rec.weights.shape == (1, 5)
    two = Recording(voltage=np.zeros((2, 5)), current=np.ones(5), dt=0.1)  # shared current
    assert two.current.shape == (2, 5)
    with pytest.raises(ValueError, match="current shape .* does not match voltage"):
        Recording(voltage=np.zeros((2, 5)), current=np.ones((2, 4)), dt=0.1)
    bad = np.zeros(5)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="voltage must be finite.*nan.*\\(0, 3\\)"):
        Recording(voltage=bad, current=np.ones(5), dt=0.1)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        Recording(voltage=np.zeros(5), current=np.ones(5), dt=-1.0)
    with pytest.raises(ValueError, match="current_unit must be one of"):
        Recording(voltage=np.zeros(5), current=np.ones(5), dt=0.1, current_unit="amps")
    with pytest.raises(ValueError, match="area .* only meaningful"):
        Recording(voltage=np.zeros(5), current=np.ones(5), dt=0.1, area=1e-5)
    rec = Recording(voltage=np.zeros(5), current=np.ones(5), dt=0.1, current_unit="pA")
    with pytest.raises(ValueError, match="give the membrane area"):
        rec.current_density()
    np.testing.assert_allclose(rec.current_density(area=1e-5), 0.1)  # 1 pA / 1e-5 cm2


def test_resample_conserves_charge_exactly():
    rng = np.random.default_rng(0)
    dt = 0.05
    i = rng.normal(size=(2, 401))
    v = rng.normal(size=(2, 401))
    rec = Recording(voltage=v, current=i, dt=dt)
    for new_dt in (0.1, 0.02, 0.07):
        new = rec.resample(new_dt)
        # brute-force oracle: the step function on a 1e-4 ms grid, averaged per new step
        fine = 0.0005
        t_f = (np.arange(int(round(new.n_samples * new_dt / fine))) + 0.5) * fine
        idx = np.minimum((t_f / dt).astype(int), i.shape[1] - 1)
        per = int(round(new_dt / fine))
        expected = i[:, idx][:, : (new.n_samples) * per].reshape(2, new.n_samples, per).mean(-1)
        np.testing.assert_allclose(new.current, expected, atol=1e-9)
        np.testing.assert_allclose(new.voltage[:, 0], v[:, 0])
        k = 3
        np.testing.assert_allclose(new.voltage[:, k], [np.interp(k * new_dt, rec.t, row) for row in v])
    # total charge over whole new steps inside the old record is exact
    new = rec.resample(0.1)
    np.testing.assert_allclose(new.current[:, :200].sum(1) * 0.1, i[:, :400].sum(1) * dt, rtol=1e-12)


def test_from_times_interpolates_irregular_stamps():
    t = np.array([0.0, 0.1, 0.25, 0.3])
    rec = Recording.from_times(t, 2 * t, np.zeros(4))
    np.testing.assert_allclose(rec.voltage[0], 2 * rec.t)
    with pytest.raises(ValueError, match="strictly increasing"):
        Recording.from_times(t[::-1], t, t)


def test_crop_and_window():
    rec = Recording(voltage=np.arange(11.0), current=np.zeros(11), dt=1.0)
    c = rec.crop(2.0, 5.0)
    np.testing.assert_allclose(c.voltage[0], [2, 3, 4, 5])
    w = rec.window((1.0, 2.0), (8.0, 9.0))
    np.testing.assert_allclose(w.weights[0], [0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0])
    with pytest.raises(ValueError, match="empty or outside"):
        rec.crop(20.0, 30.0)


def test_npz_round_trip_and_real_data_format(tmp_path):
    rec = Recording(voltage=np.ones((2, 6)), current=np.arange(12.0).reshape(2, 6), dt=0.2,
                    current_unit="nA", area=2e-5, name="x")
    back = load(rec.save(tmp_path / "r.npz"))
    for f in ("voltage", "current", "weights"):
        np.testing.assert_array_equal(getattr(back, f), getattr(rec, f))
    assert (back.dt, back.current_unit, back.area) == (0.2, "nA", 2e-5)
    real = load(DATA / "fitting_18711001_excerpt.npz")
    assert real.current_unit == "pA" and real.n_sweeps == 2 and real.dt == pytest.approx(0.05)
    np.testing.assert_allclose(real.current[1, [0, -1]], [0.0, 100.0])  # the 100 pA step at 823.4 ms
    with pytest.raises(ValueError, match="unrecognised npz keys"):
        np.savez(tmp_path / "bad.npz", v=np.zeros(3))
        load(tmp_path / "bad.npz")
    np.savez(tmp_path / "nounit.npz", voltage=np.zeros(3), current=np.zeros(3), dt=0.1)
    with pytest.raises(ValueError, match="current's unit is unknown"):
        load(tmp_path / "nounit.npz")


def test_csv_loader(tmp_path):
    t = np.arange(5) * 0.1
    path = tmp_path / "s.csv"
    np.savetxt(path, np.c_[t, -65 + t, 10 * t], delimiter=",", header="t_ms,V_mV,I_pA", comments="")
    rec = load(path)
    assert rec.current_unit == "pA" and rec.dt == pytest.approx(0.1)
    np.testing.assert_allclose(rec.voltage[0], -65 + t)
    np.savetxt(path, np.c_[t, -65 + t, 10 * t], delimiter=",", header="t_ms,V_mV,I", comments="")
    with pytest.raises(ValueError, match="no current column with a unit"):
        load(path)
    with pytest.raises(ValueError, match="unknown recording format"):
        load(DATA / "fitting_18711001_excerpt.LICENSE.md")


def test_abf_loader_matches_the_converted_npz():
    pytest.importorskip("pyabf")
    abf = SHARED / "18711001.abf"
    if not abf.exists():
        pytest.skip(f"the original ABF file is not in this checkout ({abf})")
    rec = load(abf, sweeps=[0, 10])
    ref = load(SHARED / "pyabf_18711001_ficurve.npz", sweeps=[0, 10])
    assert rec.current_unit == "pA" and rec.dt == pytest.approx(ref.dt)
    np.testing.assert_allclose(rec.voltage, ref.voltage, atol=1e-3)
    np.testing.assert_allclose(rec.current, ref.current, atol=1e-3)
    assert dataclasses.replace(rec, name="").n_samples == 30000
