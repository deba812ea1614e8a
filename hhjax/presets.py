"""Named models with their published parameters.

=====================  ==========================================================
``hh1952()``           Hodgkin & Huxley (1952), original convention: V is the
                       depolarisation from rest (rest = 0 mV), modern sign.
``squid()``            The same model in absolute potentials (rest near -65 mV),
                       Dayan & Abbott (2001) section 5.6.
``neuron_hh()``        NEURON's built-in ``hh`` mechanism (E_L = -54.3 mV), for
                       trace-by-trace comparison with NEURON.
``cortical_pyramidal()`` Gerstner et al. (2014), Neuronal Dynamics, section 2.2,
                       table 2.1 (Mainen et al. 1995; Naud).
``connor_stevens()``   Dayan & Abbott (2001) section 6.2: HH-like Na and K plus the
                       transient A-type K+ current; class I excitability.
=====================  ==========================================================

Each function returns a fresh :class:`~hhjax.model.Model`; change parameters with
:func:`hhjax.set_params` or the keyword ``temperature``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from .channels import AlphaBetaGate, Channel, InfTauGate
from .model import Model
from .rates import Constant, ExpLinear, Exponential, Power, Product, Sigmoid, Sum

__all__ = [
    "PRESETS",
    "connor_stevens",
    "cortical_pyramidal",
    "get",
    "hh1952",
    "neuron_hh",
    "squid",
]


def _hh(shift: float, e_na: float, e_k: float, e_leak: float, temperature: float) -> Model:
    """The squid-axon model with every rate midpoint at ``HH-1952 value + shift`` mV."""
    m = AlphaBetaGate(
        alpha=ExpLinear(rate=1.0, midpoint=25.0 + shift, scale=10.0),
        beta=Exponential(rate=4.0, midpoint=shift, scale=-18.0),
        power=3,
    )
    h = AlphaBetaGate(
        alpha=Exponential(rate=0.07, midpoint=shift, scale=-20.0),
        beta=Sigmoid(rate=1.0, midpoint=30.0 + shift, scale=10.0),
    )
    n = AlphaBetaGate(
        alpha=ExpLinear(rate=0.1, midpoint=10.0 + shift, scale=10.0),
        beta=Exponential(rate=0.125, midpoint=shift, scale=-80.0),
        power=4,
    )
    return Model(
        channels={
            "na": Channel(g=120.0, e_rev=e_na, gates={"m": m, "h": h}),
            "k": Channel(g=36.0, e_rev=e_k, gates={"n": n}),
            "leak": Channel(g=0.3, e_rev=e_leak),
        },
        c_m=1.0,
        temperature=temperature,
        q10=3.0,
        t_ref=6.3,
    )


def hh1952(temperature: float = 6.3) -> Model:
    """Hodgkin-Huxley squid axon in the original 1952 convention.

    V is the depolarisation from rest (rest = 0 mV; modern sign, outward current
    positive): E_Na = 115, E_K = -12, E_L = 10.613 mV; g = 120, 36, 0.3 mS/cm2;
    c_m = 1 uF/cm2; Q10 = 3 from 6.3 C.

    Args:
        temperature: degrees Celsius.

    References:
        Hodgkin & Huxley (1952), J. Physiol. 117:500-544, eqs. 20-29 (sign of V
        reversed to the modern convention).
    """
    return _hh(0.0, e_na=115.0, e_k=-12.0, e_leak=10.613, temperature=temperature)


def squid(temperature: float = 6.3) -> Model:
    """Hodgkin-Huxley squid axon in absolute potentials (rest near -65 mV).

    The 1952 model shifted by -65 mV: E_Na = 50, E_K = -77, E_L = -54.387 mV. Its
    true resting potential is -64.996 mV.

    Args:
        temperature: degrees Celsius.

    References:
        Dayan & Abbott (2001), Theoretical Neuroscience, section 5.6 and eqs. 5.22-5.24.
    """
    return _hh(-65.0, e_na=50.0, e_k=-77.0, e_leak=-54.387, temperature=temperature)


def neuron_hh(temperature: float = 6.3) -> Model:
    """NEURON's built-in ``hh`` mechanism (``hh.mod``): squid with E_L = -54.3 mV.

    ``gnabar = 0.12``, ``gkbar = 0.036``, ``gl = 0.0003`` S/cm2, ``ena = 50``,
    ``ek = -77``, ``el = -54.3`` mV, ``celsius = 6.3``, ``q10 = 3``, cm = 1 uF/cm2.

    Args:
        temperature: degrees Celsius (NEURON's ``celsius``).

    References:
        NEURON, ``src/nrnoc/hh.mod``.
    """
    return _hh(-65.0, e_na=50.0, e_k=-77.0, e_leak=-54.3, temperature=temperature)


def cortical_pyramidal(temperature: float = 6.3) -> Model:
    """HH-type model of a cortical pyramidal neuron (Neuronal Dynamics, table 2.1).

    E_Na = 55, E_K = -77, E_L = -65 mV; g = 40, 35, 0.3 mS/cm2; c_m = 1 uF/cm2;
    I_Na = g m^3 h (V - E_Na), I_K = g n^4 (V - E_K). The book gives no temperature
    dependence, so ``temperature`` equals ``t_ref`` by default (phi = 1) and Q10 = 3
    applies when it is changed.

    Args:
        temperature: degrees Celsius.

    References:
        Gerstner, Kistler, Naud & Paninski (2014), Neuronal Dynamics, section 2.2,
        table 2.1; n, m from Mainen et al. (1995), h from Naud.
    """
    m = AlphaBetaGate(
        alpha=ExpLinear(rate=0.182 * 9.0, midpoint=-35.0, scale=9.0),
        beta=ExpLinear(rate=0.124 * 9.0, midpoint=-35.0, scale=-9.0),
        power=3,
    )
    h = AlphaBetaGate(
        alpha=Exponential(rate=0.25, midpoint=-90.0, scale=-12.0),
        # 0.25 exp((V+62)/6) / exp((V+90)/12) = 0.25 exp((V+34)/12)
        beta=Exponential(rate=0.25, midpoint=-34.0, scale=12.0),
    )
    n = AlphaBetaGate(
        alpha=ExpLinear(rate=0.02 * 9.0, midpoint=25.0, scale=9.0),
        beta=ExpLinear(rate=0.002 * 9.0, midpoint=25.0, scale=-9.0),
        power=4,
    )
    return Model(
        channels={
            "na": Channel(g=40.0, e_rev=55.0, gates={"m": m, "h": h}),
            "k": Channel(g=35.0, e_rev=-77.0, gates={"n": n}),
            "leak": Channel(g=0.3, e_rev=-65.0),
        },
        c_m=1.0,
        temperature=temperature,
        q10=3.0,
        t_ref=6.3,
    )


def connor_stevens(temperature: float = 6.3) -> Model:
    """Connor-Stevens model with the transient A-type K+ current (class I firing).

    c_m = 1 uF/cm2; g_Na = 120, g_K = 20, g_A = 47.7, g_L = 0.3 mS/cm2;
    E_Na = 55, E_K = -72, E_A = -75, E_L = -17 mV; I_A = g_A a^3 b (V - E_A), with a
    and b given by steady states and time constants. No temperature dependence is
    published; ``temperature`` equals ``t_ref`` by default (phi = 1).

    Args:
        temperature: degrees Celsius.

    References:
        Dayan & Abbott (2001), Theoretical Neuroscience, section 6.2 and the model
        appendix of chapter 6; Connor & Stevens (1971), J. Physiol. 213:31-53.
    """
    m = AlphaBetaGate(
        alpha=ExpLinear(rate=0.38 * 10.0, midpoint=-29.7, scale=10.0),
        beta=Exponential(rate=15.2, midpoint=-54.7, scale=-1.0 / 0.0556),
        power=3,
    )
    h = AlphaBetaGate(
        alpha=Exponential(rate=0.266, midpoint=-48.0, scale=-20.0),
        beta=Sigmoid(rate=3.8, midpoint=-18.0, scale=10.0),
    )
    n = AlphaBetaGate(
        alpha=ExpLinear(rate=0.02 * 10.0, midpoint=-45.7, scale=10.0),
        beta=Exponential(rate=0.25, midpoint=-55.7, scale=-80.0),
        power=4,
    )
    a = InfTauGate(
        inf=Power(
            Product((
                Exponential(rate=0.0761, midpoint=-94.22, scale=1.0 / 0.0314),
                Sigmoid(rate=1.0, midpoint=-1.17, scale=-1.0 / 0.0346),
            )),
            1.0 / 3.0,
        ),
        tau=Sum((Constant(0.3632), Sigmoid(rate=1.158, midpoint=-55.96, scale=-1.0 / 0.0497))),
        power=3,
    )
    b = InfTauGate(
        inf=Power(Sigmoid(rate=1.0, midpoint=-53.3, scale=-1.0 / 0.0688), 4.0),
        tau=Sum((Constant(1.24), Sigmoid(rate=2.678, midpoint=-50.0, scale=-1.0 / 0.0624))),
        power=1,
    )
    return Model(
        channels={
            "na": Channel(g=120.0, e_rev=55.0, gates={"m": m, "h": h}),
            "k": Channel(g=20.0, e_rev=-72.0, gates={"n": n}),
            "a": Channel(g=47.7, e_rev=-75.0, gates={"a": a, "b": b}),
            "leak": Channel(g=0.3, e_rev=-17.0),
        },
        c_m=1.0,
        temperature=temperature,
        q10=3.0,
        t_ref=6.3,
    )


PRESETS: dict[str, Callable[..., Model]] = {
    "hh1952": hh1952,
    "squid": squid,
    "neuron_hh": neuron_hh,
    "cortical_pyramidal": cortical_pyramidal,
    "connor_stevens": connor_stevens,
}


def get(name: str, **kwargs: float) -> Model:
    """The preset called ``name`` (see :data:`PRESETS`).

    Raises:
        ValueError: unknown name, with the closest matches and the full list.
    """
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"unknown preset {name!r}; {hint}available: {', '.join(PRESETS)}")
    return PRESETS[name](**kwargs)
