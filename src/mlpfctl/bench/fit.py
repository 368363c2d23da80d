"""Scaling-law fit of validation loss against dataset size: L(D) = a * D^-b + c.

Least squares in log-space of D via scipy's ``curve_fit`` with parameter covariance; the
uncertainty of an extrapolated L(D) is propagated with the fit's Jacobian (delta method).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mlpfctl.errors import RuntimeFailure, UsageError


@dataclass
class PowerLawFit:
    a: float
    b: float
    c: float
    a_err: float
    b_err: float
    c_err: float
    covariance: list[list[float]]
    chi2_per_dof: float | None

    def predict(self, d: float) -> float:
        return float(self.a * d ** (-self.b) + self.c)

    def predict_err(self, d: float) -> float:
        grad = [d ** (-self.b), -self.a * math.log(d) * d ** (-self.b), 1.0]
        var = sum(grad[i] * self.covariance[i][j] * grad[j] for i in range(3) for j in range(3))
        return math.sqrt(max(var, 0.0))

    def as_dict(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "a_err": self.a_err,
            "b_err": self.b_err,
            "c_err": self.c_err,
            "covariance": self.covariance,
            "chi2_per_dof": self.chi2_per_dof,
        }


def fit_power_law(
    sizes: Sequence[float], losses: Sequence[float], errors: Sequence[float] | None = None
) -> PowerLawFit:
    """Fit L(D) = a*D^-b + c. Needs at least four distinct sizes (three parameters + one dof)."""
    import numpy as np
    from scipy.optimize import curve_fit

    d = np.asarray(sizes, dtype=float)
    y = np.asarray(losses, dtype=float)
    if d.shape != y.shape or len(np.unique(d)) < 4:
        raise UsageError(
            f"a scaling-law fit needs losses at >= 4 distinct dataset sizes, got {len(np.unique(d))}",
            "pass e.g. --train-events 250,500,1000,2000",
        )
    if np.any(d <= 0) or not np.all(np.isfinite(y)):
        raise UsageError("dataset sizes must be positive and losses finite", "check the scaling-law points")
    sigma = np.asarray(errors, dtype=float) if errors is not None else None
    if sigma is not None and np.any(sigma <= 0):
        sigma = None

    def model(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        result: np.ndarray = a * np.power(x, -b) + c
        return result

    c0 = float(max(0.0, y.min() - 0.1 * float(np.ptp(y))))
    b0 = 0.3
    a0 = float(max((y.max() - c0) * d.min() ** b0, 1e-6))
    try:
        params, cov = curve_fit(
            model,
            d,
            y,
            p0=[a0, b0, c0],
            sigma=sigma,
            absolute_sigma=sigma is not None,
            bounds=([0.0, 0.0, -np.inf], [np.inf, 5.0, np.inf]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError) as exc:
        raise RuntimeFailure(
            f"the power-law fit did not converge: {exc}", "use more or wider-spread dataset sizes"
        ) from None
    residual = y - model(d, *params)
    dof = len(d) - 3
    chi2 = float(np.sum((residual / sigma) ** 2) / dof) if sigma is not None else None
    errs = np.sqrt(np.clip(np.diag(cov), 0.0, np.inf))
    cov_list = [[float(v) if np.isfinite(v) else float("nan") for v in row] for row in cov]
    return PowerLawFit(
        float(params[0]),
        float(params[1]),
        float(params[2]),
        float(errs[0]),
        float(errs[1]),
        float(errs[2]),
        cov_list,
        chi2,
    )
