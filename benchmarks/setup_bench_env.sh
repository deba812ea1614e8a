#!/usr/bin/env bash
# Create .venv-bench in the repository root with hhjax and the peer simulators
# (the `bench` extra: scipy, numpy<2.4, brian2, neuron, jaxley, brainpy, cma).
#
# The peers live in their own virtual environment because they pin numpy and jax
# versions that can differ from the main hhjax environment; benchmarks/run.py calls
# them out of process (`.venv-bench/bin/python -m benchmarks.peers NAME ...`).
#
# Usage: bash benchmarks/setup_bench_env.sh [python executable, default python3.11]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python_exe="${1:-python3.11}"
venv="${repo_root}/.venv-bench"

cd "${repo_root}"
if [[ ! -x "${venv}/bin/python" ]]; then
    "${python_exe}" -m venv "${venv}"
fi
"${venv}/bin/python" -m pip install --quiet --upgrade pip
"${venv}/bin/python" -m pip install --quiet -e ".[bench]"
# Print what was installed, one line per peer (also a smoke test of every import).
"${venv}/bin/python" - <<'PY'
import importlib
for name in ("numpy", "scipy", "jax", "brian2", "neuron", "jaxley", "brainpy", "hhjax"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:8s} {getattr(mod, '__version__', '?')}")
    except Exception as exc:  # report every failure, keep going
        print(f"{name:8s} IMPORT FAILED: {type(exc).__name__}: {exc}")
PY
