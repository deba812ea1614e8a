"""Shared fixtures (keep this small)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import pytest

# the suite never writes a compile cache to the user's home (the CLI would)
os.environ.setdefault("HHJAX_COMPILE_CACHE", "0")


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> Iterator[jnp.dtype]:
    """Run the test in float32 (JAX's default) and in float64 (x64 on for the test only)."""
    with jax.enable_x64(request.param == "float64"):
        yield jnp.dtype(request.param)

