"""Every example runs in smoke mode (HHJAX_SMOKE=1), headless, and writes its figure(s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "01_two_pulses_1952.py": ["01_two_pulses_1952.png"],
    "02_step_gates_currents.py": ["02_step_gates_currents.png"],
    "03_fi_curves.py": ["03_fi_curves.png"],
    "04_integrators.py": ["04_integrators.png", "04_gate_kinetics.png"],
    "05_explorer.py": ["05_explorer.png"],
    "06_population_fi.py": ["06_population_fi.png"],
    "07_fit_real_data.py": ["07_fit_real_data.png"],
}


def test_every_example_is_listed() -> None:
    found = {p.name for p in (REPO / "examples").glob("[0-9][0-9]_*.py")}
    assert found == set(EXAMPLES)


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_runs_in_smoke_mode(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "HHJAX_SMOKE": "1", "HHJAX_OUT": str(tmp_path), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("DISPLAY", None)
    res = subprocess.run([sys.executable, str(REPO / "examples" / script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in EXAMPLES[script]:
        figure = tmp_path / name
        assert figure.exists(), f"{script} did not write {name}"
        assert figure.stat().st_size > 20_000
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {figure}" in res.stdout
