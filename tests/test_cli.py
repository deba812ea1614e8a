"""The ``hhjax`` command, run as a user runs it (``python -m hhjax`` in a subprocess)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest

import hhjax
from hhjax import cli, stimulus
from hhjax.analysis import fi_curve

REPO = Path(__file__).resolve().parents[1]


def hhjax_cmd(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "hhjax", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------- simulate


def test_no_arguments_twice_writes_fresh_png_and_npz(tmp_path: Path) -> None:
    first = hhjax_cmd(cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "hhjax_out"
    assert (out / "trace.png").stat().st_size > 10_000
    data = np.load(out / "trace.npz")
    assert f"wrote {Path('hhjax_out') / 'trace.npz'}" in first.stdout
    # the default: squid, 10 uA/cm2 step from 10 ms, 100 ms at dt = 0.025 ms
    ref = hhjax.simulate(hhjax.presets.squid(), stimulus.step_current(10.0, 10.0), dt=0.025,
                         t_max=100.0)
    np.testing.assert_allclose(data["t_ms"], np.asarray(ref.t), rtol=1e-6)
    np.testing.assert_allclose(data["v_mV"], np.asarray(ref.v), atol=1e-3)
    assert {"i_ext_uA_cm2", "na.m", "na.h", "k.n", "I_na_uA_cm2", "I_k_uA_cm2"} <= set(data.files)
    assert data["i_ext_uA_cm2"][0] == 0.0 and data["i_ext_uA_cm2"][-1] == 10.0
    n_spikes = int(hhjax.analysis.spike_count(ref))
    assert f"{n_spikes} spikes" in first.stdout
    second = hhjax_cmd(cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (out / "trace-1.png").exists() and (out / "trace-1.npz").exists()
    assert "trace-1.png" in second.stdout


def test_simulate_explicit_outputs_refuse_overwrite_unless_forced(tmp_path: Path) -> None:
    args = ["simulate", "--preset", "squid", "--stimulus", "pulses:20@5-6,20@30-31",
            "--duration", "50", "--dt", "0.05", "--set", "na.g=100", "--set", "k.g=30",
            "-o", "run.png", "--data", "run.csv"]
    ok = hhjax_cmd(*args, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    table = np.genfromtxt(tmp_path / "run.csv", delimiter=",", names=True)
    model = hhjax.set_params(hhjax.presets.squid(), {"na.g": 100.0, "k.g": 30.0})
    pulses = stimulus.pulse_train(np.array([5.0, 30.0]), 1.0, np.array([20.0, 20.0]))
    ref = hhjax.simulate(model, pulses, dt=0.05, t_max=50.0)
    np.testing.assert_allclose(table["v_mV"], np.asarray(ref.v), atol=1e-3)
    assert table["i_ext_uA_cm2"].max() == pytest.approx(20.0)
    again = hhjax_cmd(*args, cwd=tmp_path)
    assert again.returncode == 2
    assert "run.png exists; pass --force" in again.stderr
    forced = hhjax_cmd(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stimulus", "stp:5"], "unknown kind 'stp'"),
        (["--stimulus", "step:10@60-10"], "must end after it starts"),
        (["--stimulus", "__import__('os').system('true')"], "stimulus term"),
        (["--set", "na.gg=1"], "unknown parameter path 'na.gg'"),
        (["--set", "na.g"], "PATH=VALUE"),
        (["--set", "na.g=-5"], "conductance"),
        (["--preset", "squd"], "did you mean squid"),
        (["--dt", "-0.1"], "dt must be"),
        (["--data", "x.txt"], ".npz or .csv"),
        (["--method", "heun"], "invalid choice"),
    ],
)
def test_simulate_bad_input_exits_2_with_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    args: list[str], message: str,
) -> None:
    # in-process (the same main() the console script calls) to keep the suite fast;
    # test_bad_input_as_subprocess runs the same path through a real process
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(["simulate", "--duration", "5", *args])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "hhjax_out").exists()


def test_bad_input_as_subprocess(tmp_path: Path) -> None:
    res = hhjax_cmd("--stimulus", "step:10@60-10", cwd=tmp_path)
    assert res.returncode == 2
    assert "hhjax simulate: error: stimulus term 'step:10@60-10'" in res.stderr
    res = hhjax_cmd("fi", "--currents", "5:1:1", cwd=tmp_path)
    assert res.returncode == 2 and "STOP >= START" in res.stderr
    assert not (tmp_path / "hhjax_out").exists()


def test_hh1952_threshold_and_no_plot(tmp_path: Path) -> None:
    res = hhjax_cmd("simulate", "--preset", "hh1952", "--stimulus", "pulses:150@0-1,50@10-11",
                    "--duration", "50", "--dt", "0.025", "--no-plot", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "2 spikes (threshold 65 mV)" in res.stdout  # rest is 0 mV in the 1952 convention
    assert (tmp_path / "hhjax_out" / "trace.npz").exists()
    assert not (tmp_path / "hhjax_out" / "trace.png").exists()


def test_divergence_exits_1(tmp_path: Path) -> None:
    res = hhjax_cmd("simulate", "--method", "euler", "--dt", "0.2", "--duration", "30", cwd=tmp_path)
    assert res.returncode == 1
    assert "diverged" in res.stderr


# ------------------------------------------------------------------------------- fi


def test_fi_several_presets(tmp_path: Path) -> None:
    res = hhjax_cmd("fi", "--preset", "squid", "connor_stevens", "--currents", "0,8,15",
                    "--duration", "300", "--window", "100:300", "-o", "fi.png", "--data", "fi.csv",
                    cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "fi_curve: 1/1 (100%)" in res.stderr  # the progress line
    assert (tmp_path / "fi.png").stat().st_size > 10_000
    table = np.genfromtxt(tmp_path / "fi.csv", delimiter=",", names=True)
    np.testing.assert_allclose(table["current_uA_cm2"], [0.0, 8.0, 15.0])
    for preset in ("squid", "connor_stevens"):
        ref = fi_curve(hhjax.presets.get(preset), [0.0, 8.0, 15.0], duration=300.0,
                       window=(100.0, 300.0))
        np.testing.assert_allclose(table[f"{preset}_rate_Hz"], np.asarray(ref.rate), rtol=1e-4)
    assert "squid: first firing at 8 uA/cm2" in res.stdout


def test_fi_default_outputs_get_fresh_names(tmp_path: Path) -> None:
    for _ in range(2):
        res = hhjax_cmd("fi", "--currents", "0,10", "--duration", "100", "--quiet", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "hhjax_out").iterdir())
    assert names == ["fi-1.npz", "fi-1.png", "fi.npz", "fi.png"]
    data = np.load(tmp_path / "hhjax_out" / "fi.npz")
    np.testing.assert_allclose(data["current_uA_cm2"], [0.0, 10.0])
    assert data["squid_rate_Hz"][0] == 0.0 and data["squid_rate_Hz"][1] > 50.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--currents", "5:1:1"], "STOP >= START"),
        (["--currents", "a,b"], "must be a number"),
        (["--window", "300"], "START:STOP"),
        (["--window", "100:5000"], "window must satisfy"),
        (["--preset", "squid", "nope"], "unknown preset 'nope'"),
    ],
)
def test_fi_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    args: list[str], message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fi", "--duration", "50", "--quiet", *args]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ presets, help, fit


def test_presets_lists_names_and_sources(tmp_path: Path) -> None:
    res = hhjax_cmd("presets", cwd=tmp_path)
    assert res.returncode == 0
    for name in hhjax.presets.PRESETS:
        assert any(line.startswith(name) for line in res.stdout.splitlines())
    assert res.stdout.count("source:") == len(hhjax.presets.PRESETS)
    assert "Hodgkin & Huxley (1952)" in res.stdout


@pytest.mark.parametrize("sub", ["", "simulate", "fi", "presets"])
def test_help_documents_options_with_units(tmp_path: Path, sub: str) -> None:
    res = hhjax_cmd(*([sub] if sub else []), "--help", cwd=tmp_path)
    assert res.returncode == 0
    assert "usage: hhjax" in res.stdout
    if sub in ("simulate", "fi"):
        for unit in ("ms", "uA/cm2", "mV", "degrees C"):
            assert unit in res.stdout
        assert "--force" in res.stdout and "--set" in res.stdout


def test_fit_help_or_unavailable(tmp_path: Path) -> None:
    try:
        importlib.import_module("fitting.cli")
        available = True
    except ImportError:
        available = False
    res = hhjax_cmd("fit", "--help", cwd=tmp_path)
    if available:
        assert res.returncode == 0 and "usage: hhjax fit" in res.stdout
    else:
        assert res.returncode == 2 and "fitting package is not available" in res.stderr


def test_fit_unavailable_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    real = importlib.import_module

    def fake(name: str, *a: object) -> object:
        if name == "fitting.cli":
            raise ImportError("No module named 'fitting.cli'")
        return real(name, *a)

    monkeypatch.setattr(cli.importlib, "import_module", fake)
    assert cli.main(["fit", "--help"]) == 2
    assert "fitting package is not available" in capsys.readouterr().err


def test_console_script_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["hhjax"] == "hhjax.cli:main"
    assert callable(cli.main)


# ------------------------------------------------------------------ stimulus grammar


def _same(spec: str, expected: stimulus.Stimulus, dt: float = 0.1, t_max: float = 120.0) -> None:
    np.testing.assert_allclose(np.asarray(cli.parse_stimulus(spec).sample(dt, t_max)),
                               np.asarray(expected.sample(dt, t_max)), rtol=1e-6, atol=1e-6)


def test_stimulus_grammar_matches_the_objects() -> None:
    _same("step:10@10-60", stimulus.step_current(10.0, 10.0, 60.0))
    _same("step:-2.5@10", stimulus.step_current(-2.5, 10.0))
    _same("step:3", stimulus.step_current(3.0))
    _same("4", stimulus.step_current(4.0))
    _same("const:4", stimulus.step_current(4.0))
    _same("pulses:150@0-1,50@10-11",
          stimulus.pulse_train(np.array([0.0, 10.0]), 1.0, np.array([150.0, 50.0])))
    _same("ramp:0-20@0-100", stimulus.ramp(0.0, 100.0, 20.0, 0.0))
    _same("ramp:-5-5@10-20", stimulus.ramp(10.0, 20.0, 5.0, -5.0))
    _same("sine:5,10Hz", stimulus.sine(5.0, 10.0))
    _same("sine:5,10Hz,offset=2@0-50", stimulus.sine(5.0, 10.0, offset=2.0, start=0.0, stop=50.0))
    _same("noise:sigma=3,tau=5,seed=123",
          stimulus.filtered_noise(jax.random.PRNGKey(123), 3.0, 5.0))
    _same("step:10@10-60 + noise:sigma=1,tau=2,seed=0,order=1,mean=0.5",
          stimulus.step_current(10.0, 10.0, 60.0)
          + stimulus.filtered_noise(jax.random.PRNGKey(0), 1.0, 2.0, order=1, mean=0.5))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty stimulus term"),
        ("step:10@10-60 +", "empty stimulus term"),
        ("step:ten", "must be a number"),
        ("step:1e999", "must be finite"),
        ("step:5@", "expected times"),
        ("pulses:150", "amplitude@start-stop"),
        ("ramp:5@0-10", "ramp:A0-A1@T0-T1"),
        ("sine:5,10", "sine:A,FHz"),
        ("noise:sigma=1", "needs sigma= (uA/cm2) and tau="),
        ("noise:sigma=1,tau=2,seed=x", "whole number"),
        ("noise:sigma=1,tau=2,color=pink", "unknown key 'color'"),
        ("noise:sigma=-1,tau=2", "sigma must be >= 0"),
        ("exec:print(1)", "unknown kind 'exec'"),
        ("open('/etc/passwd')", "expected kind:arguments"),
    ],
)
def test_stimulus_grammar_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        cli.parse_stimulus(spec)
    assert message in str(err.value)


def test_parse_currents() -> None:
    assert cli.parse_currents("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert cli.parse_currents("1, 2.5,-3") == [1.0, 2.5, -3.0]
    with pytest.raises(ValueError, match="START:STOP:STEP"):
        cli.parse_currents("0:1")
