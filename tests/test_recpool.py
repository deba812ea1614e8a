"""hhjax.recpool: a sweep writes into the records it dropped, never into the user's."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hhjax
from hhjax import recpool

DT = 0.025


@pytest.fixture(autouse=True)
def small_records_pooled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pool the small records of these tests (the default skips records under 16 MiB)."""
    monkeypatch.setattr(recpool, "MIN_BYTES", 0)
    recpool.clear()
    yield
    recpool.clear()


def _run(scale: float = 1.0, **kw):
    n = 2 * jax.local_device_count()  # splits evenly over the CPU devices: no padding
    t = np.arange(400) * DT
    amps = np.linspace(6.0, 14.0, n)[:, None]
    stim = jnp.asarray(scale * (t >= 2.0) * amps, jnp.float32)
    kw = {"dt": DT, "record": ("v", "gates"), **kw}
    return hhjax.simulate(hhjax.presets.neuron_hh(), stim, **kw)


def _pointer(x: jax.Array) -> int:
    return x.addressable_shards[0].data.unsafe_buffer_pointer()


def test_a_sweep_loop_writes_into_the_trace_it_dropped():
    ref = jax.tree_util.tree_map(np.array, _run())  # copies
    recpool.clear()
    trace = _run()
    first = _pointer(trace.v), _pointer(trace.gates["na.m"])
    trace = _run()  # the first trace is still held while this one runs: fresh arrays
    assert _pointer(trace.v) != first[0]
    trace = _run()  # the first is dropped now: its arrays are written again
    assert (_pointer(trace.v), _pointer(trace.gates["na.m"])) == first
    for x, y in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(trace),
                    strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))  # bit for bit


def test_arrays_the_user_still_holds_are_never_written():
    a = _run()
    held_v, held_gates = a.v, a.gates
    ref_v, ref_m = np.array(held_v), np.array(held_gates["na.m"])
    del a
    for _ in range(4):  # other values: an overwritten record would show
        _run(scale=0.5)
    assert not held_v.is_deleted() and not held_gates["na.m"].is_deleted()
    np.testing.assert_array_equal(np.asarray(held_v), ref_v)
    np.testing.assert_array_equal(np.asarray(held_gates["na.m"]), ref_m)
    # one device: np.asarray is a view of the record's buffer, not a copy
    view = np.asarray(_run(shard=False).v)
    ref_view = view.copy()
    for _ in range(4):
        _run(scale=0.5, shard=False)
    np.testing.assert_array_equal(view, ref_view)  # JAX copies rather than donate it


def test_other_shapes_replace_the_kept_records_and_clear_frees_them():
    a = _run()
    b = _run()  # a is held: b is fresh, and both are kept
    assert len(recpool._entries) == 2 and recpool.held_bytes() > 0
    del a, b
    _run()  # one of them is written again, the other stays
    assert len(recpool._entries) == 2
    _run(every=2)  # other record shapes: the others are dropped first
    assert len(recpool._entries) == 1
    _run(record="spikes")  # nothing recorded densely: nothing kept, the rest dropped
    assert recpool._entries == []
    _run()
    recpool.clear()
    assert recpool.held_bytes() == 0


def test_off_keeps_nothing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recpool, "enabled", False)
    for _ in range(3):
        trace = _run()
    assert recpool._entries == [] and recpool.take(("any",)) is None
    assert not trace.v.is_deleted()
