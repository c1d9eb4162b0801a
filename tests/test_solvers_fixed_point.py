"""Fixed-point and DDIM inversion on analytic oracles (no ComfyUI)."""
from dataclasses import replace

import pytest
import torch
from support.oracles import GaussianDataDenoiser, karras_sigmas, random_linear_denoiser

from solvers import (
    FPI_PAPER,
    StepProblem,
    ddim_invert,
    fixed_point_invert,
    fixed_point_solve,
    inverse_step_map,
    invert_by_steps,
    sample,
    validate_schedule,
)

F64 = torch.float64


def gaussian_case(seed=0, batch=2, shape=(4, 6, 6)):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(1, *shape, generator=g, dtype=F64) * 0.5
    oracle = GaussianDataDenoiser(mean, std=0.7)
    x0 = mean + 0.7 * torch.randn(batch, *shape, generator=g, dtype=F64)
    return oracle, x0


@pytest.mark.parametrize("sigma_lo,sigma_hi", [(0.0, 0.03), (0.03, 0.4), (0.4, 2.0), (2.0, 14.6)])
def test_fixed_point_converges_to_exact_step_inverse_gaussian(sigma_lo, sigma_hi):
    oracle, x_lo = gaussian_case()
    T = inverse_step_map(oracle, x_lo, sigma_lo, sigma_hi)
    problem = StepProblem(T=T, x_lo=x_lo, sigma_lo=sigma_lo, sigma_hi=sigma_hi, y0=x_lo)
    y, trace = fixed_point_solve(problem, lambda *_: None, max_iterations=200, tolerance=1e-12)
    exact = oracle.exact_step_inverse(x_lo, sigma_lo, sigma_hi)
    assert torch.allclose(y, exact, atol=1e-10)
    # residuals shrink geometrically at the contraction rate of T
    rate = oracle.contraction(sigma_lo, sigma_hi)
    for before, after in zip(trace[:3], trace[1:4]):
        if before > 1e-13:
            assert after == pytest.approx(rate * before, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_point_converges_to_exact_step_inverse_linear(seed):
    oracle = random_linear_denoiser(dim=24, seed=seed)
    x_lo = torch.randn(3, 24, generator=torch.Generator().manual_seed(seed), dtype=F64)
    for sigma_lo, sigma_hi in [(0.0, 0.05), (0.5, 1.2), (5.0, 9.0)]:
        T = inverse_step_map(oracle, x_lo, sigma_lo, sigma_hi)
        problem = StepProblem(T=T, x_lo=x_lo, sigma_lo=sigma_lo, sigma_hi=sigma_hi, y0=x_lo)
        y, _ = fixed_point_solve(problem, lambda *_: None, max_iterations=500, tolerance=1e-13)
        assert torch.allclose(y, oracle.exact_step_inverse(x_lo, sigma_lo, sigma_hi), atol=1e-10)


@pytest.mark.parametrize("steps", [4, 10, 25])
def test_fixed_point_round_trip_through_euler_is_exact(steps):
    oracle, x0 = gaussian_case(seed=steps)
    sigmas = karras_sigmas(steps)
    result = fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, max_iterations=100, tolerance=1e-12))
    assert torch.allclose(sample(oracle, result.latent, sigmas), x0, atol=1e-9)


def test_early_stop_saves_evaluations_and_respects_tolerance():
    oracle, x0 = gaussian_case(seed=3)
    sigmas = karras_sigmas(10)
    loose = fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, max_iterations=50, tolerance=1e-3))
    tight = fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, max_iterations=50, tolerance=1e-10))
    assert loose.evaluations < tight.evaluations < 50 * 10
    for trace in loose.residuals:
        assert len(trace) == 50 or trace[-1] <= 1e-3
        assert all(r > 1e-3 for r in trace[:-1])  # it stopped at the first iterate under tolerance
    assert loose.evaluations == sum(len(t) for t in loose.residuals)


def test_best_iterate_is_kept_when_iteration_diverges():
    # T(y) = x_lo + 3·(y − x_lo) has its fixed point at x_lo and expands everything else: the best iterate is y0.
    x_lo = torch.ones(1, 8, dtype=F64)
    y0 = x_lo + 0.1
    problem = StepProblem(T=lambda y: x_lo + 3.0 * (y - x_lo), x_lo=x_lo, sigma_lo=0.0, sigma_hi=1.0, y0=y0)
    y, trace = fixed_point_solve(problem, lambda *_: None, max_iterations=6, tolerance=0.0)
    assert trace == sorted(trace)  # residuals grow
    assert torch.allclose(y, x_lo + 0.3)  # T(y0), the image of the best-residual iterate


def test_ddim_is_one_fixed_point_iteration_from_the_classic_evaluation_point():
    oracle, x0 = gaussian_case(seed=4)
    sigmas = karras_sigmas(6)
    ddim = ddim_invert(oracle, x0, sigmas)
    assert ddim.evaluations == 6 and all(len(t) == 1 for t in ddim.residuals)
    # the classic (diffusers) convention: the model sees x_lo·√((1+σ_hi²)/(1+σ_lo²)) at σ_hi
    x = x0
    for sigma_hi, sigma_lo in zip(sigmas.flip(0)[1:].tolist(), sigmas.flip(0)[:-1].tolist()):
        seen = x * ((1 + sigma_hi ** 2) / (1 + sigma_lo ** 2)) ** 0.5
        x = x + (sigma_hi - sigma_lo) * (seen - oracle(seen, sigma_hi)) / sigma_hi
    assert torch.allclose(ddim.latent, x, atol=1e-12)


def test_ddim_round_trip_error_shrinks_as_steps_grow():
    oracle, x0 = gaussian_case(seed=5)
    errors = []
    for steps in (5, 10, 20, 40, 80):
        sigmas = karras_sigmas(steps)
        latent = ddim_invert(oracle, x0, sigmas).latent
        errors.append(float((sample(oracle, latent, sigmas) - x0).norm() / x0.norm()))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 4


def test_fixed_point_beats_ddim_against_the_exact_flow():
    oracle, x0 = gaussian_case(seed=6)
    sigmas = karras_sigmas(10)
    exact = oracle.flow(x0, 0.0, float(sigmas[0]))  # the true seed of x0 under the probability-flow ODE
    euler_exact = fixed_point_invert(oracle, x0, sigmas,
                                     replace(FPI_PAPER, max_iterations=200, tolerance=1e-13)).latent
    ddim = ddim_invert(oracle, x0, sigmas).latent
    # both approximate the ODE seed; FPI is exact for the Euler sampler, DDIM is not
    assert float((sample(oracle, euler_exact, sigmas) - x0).abs().max()) < 1e-10
    assert float((sample(oracle, ddim, sigmas) - x0).abs().max()) > 1e-3
    assert float((euler_exact - exact).norm() / exact.norm()) < 0.5


def test_progress_callback_sees_every_evaluation_and_can_stop():
    oracle, x0 = gaussian_case(seed=7)
    sigmas = karras_sigmas(5)
    events = []
    fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, max_iterations=3, tolerance=0.0),
                       callback=events.append)
    assert len(events) == 15 and events[-1]["step"] == 4 and events[-1]["steps"] == 5

    class Stop(Exception):
        pass

    def stop_at_third(event):
        if len(seen) == 2:
            raise Stop
        seen.append(event)

    seen = []
    with pytest.raises(Stop):
        fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, max_iterations=3, tolerance=0.0),
                           callback=stop_at_third)


@pytest.mark.parametrize("bad,message", [
    (torch.tensor([1.0]), "at least 2"),
    (torch.tensor([1.0, 2.0, 0.0]), "strictly decreasing"),
    (torch.tensor([2.0, 1.0, 0.5]), "ending at 0"),
    (torch.tensor([float("nan"), 0.0]), "finite"),
])
def test_bad_schedules_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_schedule(bad)


def test_invert_by_steps_never_evaluates_at_sigma_zero():
    seen = []

    def probe(x, sigma):
        seen.append(sigma)
        return x * 0.5

    invert_by_steps(lambda p, cb: (p.T(p.y0), [0.0]), probe, torch.ones(1, 4, dtype=F64), karras_sigmas(3))
    assert min(seen) > 0


def test_anderson_solves_a_linear_step_that_plain_iteration_cannot():
    # T(y) = x* + A·(y − x*) with A = −1.5·I on half the coordinates and 0.5·I on the rest: Picard diverges.
    target = torch.randn(2, 16, generator=torch.Generator().manual_seed(8), dtype=F64)
    gains = torch.cat([torch.full((8,), -1.5, dtype=F64), torch.full((8,), 0.5, dtype=F64)])
    problem = StepProblem(T=lambda y: target + gains * (y - target), x_lo=target, sigma_lo=0.0, sigma_hi=1.0,
                          y0=torch.zeros_like(target))
    _, plain = fixed_point_solve(problem, lambda *_: None, max_iterations=10, tolerance=1e-12)
    y, anderson = fixed_point_solve(problem, lambda *_: None, max_iterations=10, tolerance=1e-12,
                                    acceleration="anderson")
    assert plain[-1] > plain[0]  # diverges
    assert len(anderson) <= 5 and anderson[-1] <= 1e-12  # two eigenvalues: exact after two secant updates
    assert torch.allclose(y, target, atol=1e-10)


@pytest.mark.parametrize("sigma_lo,sigma_hi", [(0.03, 0.4), (2.0, 14.6)])
def test_anderson_needs_fewer_evaluations_to_tolerance(sigma_lo, sigma_hi):
    oracle = random_linear_denoiser(dim=24, seed=4)
    x_lo = torch.randn(3, 24, generator=torch.Generator().manual_seed(4), dtype=F64)
    problem = StepProblem(T=inverse_step_map(oracle, x_lo, sigma_lo, sigma_hi), x_lo=x_lo, sigma_lo=sigma_lo,
                          sigma_hi=sigma_hi, y0=x_lo)
    exact = oracle.exact_step_inverse(x_lo, sigma_lo, sigma_hi)
    counts = {}
    for acceleration in ("none", "anderson"):
        y, trace = fixed_point_solve(problem, lambda *_: None, max_iterations=500, tolerance=1e-11,
                                     acceleration=acceleration)
        assert torch.allclose(y, exact, atol=1e-9)
        counts[acceleration] = len(trace)
    assert counts["anderson"] < counts["none"], counts


def test_anderson_full_inversion_round_trip():
    oracle, x0 = gaussian_case(seed=9)
    sigmas = karras_sigmas(10)
    result = fixed_point_invert(oracle, x0, sigmas,
                                replace(FPI_PAPER, max_iterations=50, tolerance=1e-12, acceleration="anderson"))
    assert torch.allclose(sample(oracle, result.latent, sigmas), x0, atol=1e-9)
    with pytest.raises(ValueError, match="acceleration: expected one of"):
        fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, acceleration="broyden"))


def test_warm_start_saves_evaluations_on_a_smooth_trajectory():
    oracle, x0 = gaussian_case(seed=10)
    sigmas = karras_sigmas(30)
    cold = fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, max_iterations=100, tolerance=1e-8))
    warm = fixed_point_invert(oracle, x0, sigmas,
                              replace(FPI_PAPER, max_iterations=100, tolerance=1e-8, warm_start=True))
    assert warm.evaluations < cold.evaluations
    assert torch.allclose(sample(oracle, warm.latent, sigmas), x0, atol=1e-6)
