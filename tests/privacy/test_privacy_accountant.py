"""The RDP accountant against references computed here, independently of dp-accounting."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from glade import ConfigError
from glade.privacy import PrivacyAccountant, compute_epsilon, gaussian_delta, gaussian_sigma

pytest.importorskip("dp_accounting")


def gaussian_rdp_epsilon(*, sigma: float, rounds: int, delta: float) -> float:
    """Closed form: T Gaussian mechanisms have RDP eps(a) = T a / (2 sigma^2); convert to
    (eps, delta) with the bound of Canonne-Kamath-Steinke (2020, Prop. 12) and minimise over
    a fine grid of orders a (a continuous minimum, up to the grid step)."""
    alphas = np.linspace(1.02, 400.0, 400_000)
    rdp = rounds * alphas / (2 * sigma**2)
    eps = rdp + np.log1p(-1 / alphas) - np.log(delta * alphas) / (alphas - 1)
    return float(eps.min())


def exact_gaussian_epsilon(*, sigma: float, delta: float) -> float:
    """The exact epsilon of one Gaussian mechanism (Balle & Wang), by bisection on the
    privacy profile written out here: delta(e) = Phi(1/2s - e s) - e^e Phi(-1/2s - e s)."""

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    def profile(e: float) -> float:
        return phi(1 / (2 * sigma) - e * sigma) - math.exp(e) * phi(-1 / (2 * sigma) - e * sigma)

    low, high = 0.0, 100.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if profile(mid) > delta else (low, mid)
    return high


@pytest.mark.parametrize(("sigma", "rounds"), [(0.8, 1), (2.0, 10), (5.0, 100), (1.0, 50)])
def test_gaussian_without_sampling_matches_the_closed_form(sigma, rounds):
    reference = gaussian_rdp_epsilon(sigma=sigma, rounds=rounds, delta=1e-5)
    accountant = PrivacyAccountant(noise_multiplier=sigma, delta=1e-5)
    for _ in range(rounds):
        accountant.step(sampling_rate=1.0)
    assert accountant.rounds == rounds
    # The library picks the best of a discrete set of orders: never below the continuous
    # minimum, and within 1% of it.
    assert reference - 1e-9 <= accountant.epsilon <= reference * 1.01


@pytest.mark.parametrize(("sigma", "rounds"), [(1.0, 1), (2.0, 10), (4.0, 100)])
def test_rdp_epsilon_bounds_the_exact_gaussian_epsilon(sigma, rounds):
    # T Gaussian mechanisms of std sigma compose into one of std sigma / sqrt(T) exactly.
    exact = exact_gaussian_epsilon(sigma=sigma / math.sqrt(rounds), delta=1e-5)
    got = compute_epsilon(noise_multiplier=sigma, sampling_rate=1.0, rounds=rounds, delta=1e-5)
    assert exact <= got <= 1.6 * exact


def test_subsampling_amplifies_privacy_and_rounds_compose():
    def eps(rate: float, rounds: int, sigma: float = 1.0) -> float:
        return compute_epsilon(
            noise_multiplier=sigma, sampling_rate=rate, rounds=rounds, delta=1e-5
        )

    assert eps(0.01, 100) < eps(0.1, 100) < eps(0.5, 100) < eps(1.0, 100)
    assert eps(0.1, 10) < eps(0.1, 100) < eps(0.1, 1000)
    assert eps(0.1, 100, sigma=2.0) < eps(0.1, 100)
    # Stepping round by round gives what composing all rounds at once gives.
    accountant = PrivacyAccountant(noise_multiplier=1.0, delta=1e-5)
    for _ in range(40):
        accountant.step(sampling_rate=0.1)
    assert accountant.epsilon == pytest.approx(eps(0.1, 40), rel=1e-9)
    # Mixed rates: between the all-low and the all-high runs.
    accountant.step(sampling_rate=0.5, rounds=40)
    assert eps(0.1, 80) < accountant.epsilon < eps(0.5, 80)


def test_edge_cases_and_validation():
    accountant = PrivacyAccountant(noise_multiplier=1.0, delta=1e-5)
    assert accountant.epsilon == 0.0
    accountant.step(sampling_rate=0.0)
    assert accountant.epsilon == 0.0 and accountant.rounds == 0
    silent = PrivacyAccountant(noise_multiplier=0.0, delta=1e-5)
    silent.step(sampling_rate=0.5)
    assert silent.epsilon == math.inf
    with pytest.raises(ConfigError, match="delta"):
        PrivacyAccountant(noise_multiplier=1.0, delta=0.0)
    with pytest.raises(ConfigError, match="sampling_rate"):
        accountant.step(sampling_rate=1.5)
    with pytest.raises(ConfigError, match="noise_multiplier"):
        PrivacyAccountant(noise_multiplier=-1.0, delta=1e-5)


def test_missing_dp_accounting_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    with pytest.raises(ImportError, match=r"pip install 'glade\[privacy\]'"):
        PrivacyAccountant(noise_multiplier=1.0, delta=1e-5)


# -- the analytic Gaussian mechanism (no dp-accounting involved) ----------------------------
@pytest.mark.parametrize(("epsilon", "delta"), [(0.5, 1e-5), (1.0, 1e-6), (4.0, 1e-5)])
def test_calibrated_sigma_is_tight(epsilon, delta):
    sigma = gaussian_sigma(epsilon=epsilon, delta=delta, sensitivity=2.0)
    assert gaussian_delta(sigma=sigma, epsilon=epsilon, sensitivity=2.0) <= delta
    assert gaussian_delta(sigma=sigma * 0.999, epsilon=epsilon, sensitivity=2.0) > delta
    assert exact_gaussian_epsilon(sigma=sigma / 2.0, delta=delta) == pytest.approx(
        epsilon, rel=1e-6
    )
    if epsilon < 1:  # the classic sufficient condition is never tighter than the exact one
        assert sigma <= 2.0 * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def test_calibration_validates_its_inputs():
    with pytest.raises(ConfigError):
        gaussian_sigma(epsilon=0.0, delta=1e-5)
    with pytest.raises(ConfigError):
        gaussian_sigma(epsilon=1.0, delta=1.0)
    with pytest.raises(ConfigError):
        gaussian_sigma(epsilon=1.0, delta=1e-5, sensitivity=0.0)
