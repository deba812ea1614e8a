"""Independent references for the tests: a hand-written HH model solved by SciPy.

Nothing here imports hhjax: the right-hand side is typed in from Hodgkin & Huxley
(1952) / Dayan & Abbott (2001) eq. 5.22-5.24 in absolute potentials, so agreement with
hhjax is evidence, not an identity.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq


def _vtrap(x: float, y: float) -> float:
    """x / (exp(x / y) - 1), with its limit y at x = 0 (NEURON's vtrap)."""
    if abs(x / y) < 1e-6:
        return y * (1 - x / y / 2)
    return x / np.expm1(x / y)


def hh_rates(v: float) -> tuple[float, float, float, float, float, float]:
    """(alpha_m, beta_m, alpha_h, beta_h, alpha_n, beta_n) at v (mV), 6.3 C."""
    am = 0.1 * _vtrap(-(v + 40.0), 10.0)
    bm = 4.0 * np.exp(-(v + 65.0) / 18.0)
    ah = 0.07 * np.exp(-(v + 65.0) / 20.0)
    bh = 1.0 / (np.exp(-(v + 35.0) / 10.0) + 1.0)
    an = 0.01 * _vtrap(-(v + 55.0), 10.0)
    bn = 0.125 * np.exp(-(v + 65.0) / 80.0)
    return am, bm, ah, bh, an, bn


def hh_rhs(i_ext, e_leak: float = -54.387, g=(120.0, 36.0, 0.3)):
    """dy/dt for y = (V, m, h, n); i_ext(t) in uA/cm2."""

    def f(t: float, y: np.ndarray) -> np.ndarray:
        v, m, h, n = y
        am, bm, ah, bh, an, bn = hh_rates(v)
        i_ion = g[0] * m**3 * h * (v - 50.0) + g[1] * n**4 * (v + 77.0) + g[2] * (v - e_leak)
        return np.array([
            i_ext(t) - i_ion,
            am * (1 - m) - bm * m,
            ah * (1 - h) - bh * h,
            an * (1 - n) - bn * n,
        ])

    return f


def hh_rest(e_leak: float = -54.387) -> np.ndarray:
    """The resting state (V, m, h, n): root of the steady-state current by Brent's method."""

    def i_ss(v: float) -> float:
        am, bm, ah, bh, an, bn = hh_rates(v)
        m, h, n = am / (am + bm), ah / (ah + bh), an / (an + bn)
        return 120.0 * m**3 * h * (v - 50.0) + 36.0 * n**4 * (v + 77.0) + 0.3 * (v - e_leak)

    v = brentq(i_ss, -80.0, -50.0, xtol=1e-14, rtol=1e-15)
    am, bm, ah, bh, an, bn = hh_rates(v)
    return np.array([v, am / (am + bm), ah / (ah + bh), an / (an + bn)])


def hh_solve(i_ext, t_max: float, t_eval: np.ndarray, e_leak: float = -54.387) -> np.ndarray:
    """V(t_eval) of the HH squid model from rest, Radau at rtol 1e-10."""
    sol = solve_ivp(
        hh_rhs(i_ext, e_leak), (0.0, t_max), hh_rest(e_leak), method="Radau",
        t_eval=t_eval, rtol=1e-10, atol=1e-12, max_step=0.05,
    )
    assert sol.success, sol.message
    return sol.y[0]


def crossings(t: np.ndarray, v: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Upward threshold crossings of v, linearly interpolated (brute force)."""
    out = []
    for k in range(len(v) - 1):
        if v[k] < threshold <= v[k + 1]:
            out.append(t[k] + (threshold - v[k]) / (v[k + 1] - v[k]) * (t[k + 1] - t[k]))
    return np.array(out)


def cs_gates(v: float) -> list[tuple[float, float]]:
    """Connor-Stevens (Dayan & Abbott 2001, section 6.2): (x_inf, tau) of m, h, n, a, b."""
    am, bm = 0.38 * _vtrap(-(v + 29.7), 10), 15.2 * np.exp(-0.0556 * (v + 54.7))
    ah, bh = 0.266 * np.exp(-0.05 * (v + 48)), 3.8 / (1 + np.exp(-0.1 * (v + 18)))
    an, bn = 0.02 * _vtrap(-(v + 45.7), 10), 0.25 * np.exp(-0.0125 * (v + 55.7))
    a_inf = (0.0761 * np.exp(0.0314 * (v + 94.22)) / (1 + np.exp(0.0346 * (v + 1.17)))) ** (1 / 3)
    tau_a = 0.3632 + 1.158 / (1 + np.exp(0.0497 * (v + 55.96)))
    b_inf = (1 / (1 + np.exp(0.0688 * (v + 53.3)))) ** 4
    tau_b = 1.24 + 2.678 / (1 + np.exp(0.0624 * (v + 50)))
    return [
        (am / (am + bm), 1 / (am + bm)), (ah / (ah + bh), 1 / (ah + bh)),
        (an / (an + bn), 1 / (an + bn)), (a_inf, tau_a), (b_inf, tau_b),
    ]


def cs_rhs(i_ext: float):
    """dy/dt of Connor-Stevens for y = (V, m, h, n, a, b) under a constant current."""

    def f(t: float, y: np.ndarray) -> list[float]:
        v, m, h, n, a, b = y
        (mi, mt), (hi, ht), (ni, nt), (ai, at), (bi, bt) = cs_gates(v)
        i_ion = (120 * m**3 * h * (v - 55) + 20 * n**4 * (v + 72) + 47.7 * a**3 * b * (v + 75)
                 + 0.3 * (v + 17))
        return [i_ext - i_ion, (mi - m) / mt, (hi - h) / ht, (ni - n) / nt, (ai - a) / at,
                (bi - b) / bt]

    return f


def cs_rest() -> list[float]:
    """Connor-Stevens resting state by Brent's method."""

    def i_ss(v: float) -> float:
        return -cs_rhs(0.0)(0.0, np.array([v, *[x for x, _ in cs_gates(v)]]))[0]

    v = brentq(i_ss, -90.0, -50.0, xtol=1e-13)
    return [v, *[x for x, _ in cs_gates(v)]]


def squid_rhs(i_ext: float):
    """The squid model (E_L = -54.387 mV) under a constant current."""
    return hh_rhs(lambda t: i_ext)


def scipy_rate(rhs, y0, i_ext: float, duration: float, window: tuple[float, float]) -> float:
    """Rate (Hz): inverse mean ISI of the spikes (0 mV) in the window; LSODA at rtol 1e-8."""

    def spike(t: float, y: np.ndarray) -> float:
        return y[0]

    spike.direction = 1
    sol = solve_ivp(rhs(i_ext), (0.0, duration), y0, method="LSODA", events=spike,
                    rtol=1e-8, atol=1e-10)
    assert sol.success
    te = sol.t_events[0]
    te = te[(te >= window[0]) & (te < window[1])]
    if te.size < 2:
        return 1000.0 * te.size / (window[1] - window[0])
    return 1000.0 * (te.size - 1) / (te[-1] - te[0])


def scipy_onset(rhs, y0, lo: float, hi: float, duration: float, window, tol: float) -> float:
    """Smallest current with >= 2 spikes in the window, by bisection (the firing end)."""
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if scipy_rate(rhs, y0, mid, duration, window) * (window[1] - window[0]) / 1000 >= 1.5:
            hi = mid
        else:
            lo = mid
    return hi
