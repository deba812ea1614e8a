"""hhjax.hostmem: freed host memory is reused without page faults, and only when it may be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hhjax import hostmem

pytestmark = pytest.mark.skipif(hostmem._glibc() is None, reason="needs Linux with glibc")

_FAULTS = """
import json, resource, sys, time
import jax, jax.numpy as jnp
if sys.argv[1] == "late":
    jnp.ones(2).block_until_ready()  # a JAX backend starts before hhjax is imported
import hhjax
make = jax.jit(lambda x: jnp.full((64, 2**19), x))  # 128 MiB: above glibc's mmap threshold
out = make(0.0).block_until_ready()
faults = []
for x in range(1, 6):
    del out  # freed: back to the kernel, or kept in the heap
    time.sleep(0.05)  # the buffer is released by XLA's runtime, soon after
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out = make(float(x)).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
faults = min(faults)
print(json.dumps({"kept": hhjax.hostmem.kept, "faults": faults, "sum": float(out.sum()),
                  "kept_bytes": hhjax.hostmem.kept_bytes()}))
"""


def _faults(case: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k != "HHJAX_KEEP_MEMORY"}
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, case], env={**base, **env}, capture_output=True,
        text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_freed_record_is_reused_without_page_faults():
    pages = 64 * 2**19 * 4 // 4096  # 32768 pages of 4 kB in one record
    on = _faults("fresh")
    assert on["kept"] and on["sum"] == 5.0 * 64 * 2**19
    assert on["faults"] < pages // 20, on  # the freed 128 MiB was handed out again
    off = _faults("fresh", HHJAX_KEEP_MEMORY="0")  # opted out: glibc's defaults
    assert not off["kept"] and off["kept_bytes"] == 0
    assert off["faults"] > pages // 2, off  # so keeping is what made the difference
    late = _faults("late")  # a backend already started: threads have their arenas
    assert not late["kept"]


_RELEASE = """
import json
import numpy as np
import hhjax

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

block = np.ones(2**25)  # 256 MiB from the heap, touched
del block
kept, held = hhjax.hostmem.kept_bytes(), rss()
available = hhjax.population.available_memory()
released = hhjax.hostmem.release()
print(json.dumps({"kept_bytes": kept, "rss_drop": held - rss(), "released": released,
                  "available": available}))
"""


def test_kept_memory_counts_as_available_and_release_gives_it_back():
    out = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["kept_bytes"] >= 2**28  # the freed block stays in the process
    assert res["available"] > res["kept_bytes"]  # and counts as available for chunking
    assert res["released"] and res["rss_drop"] > 2**27  # release() returns it


def test_nothing_is_set_off_glibc(monkeypatch):
    # (the opt-out, HHJAX_KEEP_MEMORY=0, is tested in a fresh process above: here JAX has
    # started, so keep_freed_memory() would refuse anyway)
    monkeypatch.setattr(hostmem, "_glibc", lambda: None)
    monkeypatch.setattr(hostmem, "kept", True)
    assert not hostmem.set_malloc_options() and not hostmem.release()
    assert hostmem.kept_bytes() == 0
