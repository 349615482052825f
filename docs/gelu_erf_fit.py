"""How the coefficients of the vector GELU (runtime/pysofie_vmath.h, namespace gelu_rat) were made.

erf(u) / u on 0 <= u <= 3.9 is fitted by P(t) / Q(t), t = u^2, P of degree 5, Q of degree 5 with Q(0) = 1:
linearized least squares (P - f Q, weighted by u / Q of the previous step: the error of erf itself), with
Lawson-style reweighting towards equal ripple. |error| of erf(u) in exact arithmetic: 1.5e-8. The kernels take
x instead of u = x / sqrt(2) (P_i / (sqrt(2) 2^i), Q_i / 2^i) and clamp x to +-3.9 sqrt(2).

    python docs/gelu_erf_fit.py
"""
import math

import numpy as np


def fit(p=5, q=5, c=3.9, iters=30, n=6000):
    t = (np.cos(np.linspace(0, np.pi, n)) * 0.5 + 0.5) * c * c  # Chebyshev-spaced in t
    u = np.sqrt(t)
    f = np.array([math.erf(x) / x if x > 0 else 2 / math.sqrt(math.pi) for x in u])
    w = np.ones_like(t)
    qv = np.ones_like(t)
    tp = np.vstack([t ** i for i in range(p + 1)]).T
    tq = np.vstack([t ** i for i in range(1, q + 1)]).T
    for _ in range(iters):
        a = np.hstack([tp, -f[:, None] * tq])
        sc = (u / qv * w)[:, None]
        coef, *_ = np.linalg.lstsq(a * sc, f * sc[:, 0], rcond=None)
        pc, qc = coef[:p + 1], np.concatenate([[1.0], coef[p + 1:]])
        qv = np.polyval(qc[::-1], t)
        err = u * (np.polyval(pc[::-1], t) / qv - f)
        w = w * (1 + 3 * np.abs(err) / np.abs(err).max())
    return pc, qc, np.abs(err).max()


if __name__ == "__main__":
    pc, qc, e = fit()
    print(f"max |error| of erf: {e:.2e}")
    print("P:", ", ".join(f"{v:.9e}" for v in pc / (math.sqrt(2) * 2.0 ** np.arange(len(pc)))))
    print("Q:", ", ".join(f"{v:.9e}" for v in qc / 2.0 ** np.arange(len(qc))))
