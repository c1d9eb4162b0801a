"""RNRI on analytic oracles (no ComfyUI).

What the theory says, and what these tests check:
- λ = 0: F(y) = ‖y − T(y)‖₁ ≥ 0 and its only root is the exact inverse of the step, so Newton-Raphson on F
  can only stop there. With a linear T whose Jacobian is c·I (the Gaussian-data oracle), the autograd step
  maps the residual r = y − T(y) to r − sgn(r)·mean|r|·(1 − c)/(1 − c + η) exactly: every coordinate moves by
  the same amount, so convergence is linear at best (the mean absolute deviation of |r| over its mean), not
  the quadratic rate of a vector Newton method.
- jacobian-free: ∂T/∂y = 0 gives the authors' sign step y + mean|r|/(1 + η)·sgn(T(y) − y).
- λ > 0: F ≥ λ·G > 0 wherever the exact inverse is not the prior mean, so F has no root there; the
  iteration trades residual for prior likelihood, and the residual it settles at does not shrink as λ grows.
"""
import pytest
import torch
from support.oracles import GaussianDataDenoiser, karras_sigmas, random_linear_denoiser

from solvers import StepProblem, inverse_step_map, rms, sample
from solvers.rnri import (
    flow_transition_prior,
    newton_step,
    objective_and_gradient,
    rnri_invert,
    rnri_objective,
    rnri_solve,
    ve_transition_prior,
)

F64 = torch.float64


def gaussian_step(sigma_lo=0.4, sigma_hi=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=F64) * 0.5
    oracle = GaussianDataDenoiser(mean, std=0.7)
    x_lo = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=F64)
    problem = StepProblem(T=inverse_step_map(oracle, x_lo, sigma_lo, sigma_hi), x_lo=x_lo, sigma_lo=sigma_lo,
                          sigma_hi=sigma_hi, y0=x_lo)
    return oracle, problem


def solve(problem, iterations, regularization=0.0, gradient="autograd", damping=0.1):
    return rnri_solve(problem, lambda *_: None, iterations, regularization, gradient, damping, ve_transition_prior)


def test_autograd_step_moves_every_residual_by_the_mean():
    oracle, p = gaussian_step()
    c = oracle.contraction(p.sigma_lo, p.sigma_hi)
    eta = 0.1
    mean, variance = ve_transition_prior(p.x_lo, p.sigma_lo, p.sigma_hi)
    mapped, objective, grad = objective_and_gradient(p.T, p.y0, mean, variance, 0.0, "autograd")
    y1 = newton_step(p.y0, objective, grad, eta)
    r0, r1 = p.y0 - mapped, y1 - p.T(y1)
    mean_abs = r0.flatten(1).abs().mean(1).view(-1, 1, 1, 1)
    assert torch.allclose(r1, r0 - torch.sign(r0) * mean_abs * (1 - c) / (1 - c + eta), atol=1e-12)


def test_jacobian_free_step_is_the_authors_sign_step():
    _, p = gaussian_step()
    mean, variance = ve_transition_prior(p.x_lo, p.sigma_lo, p.sigma_hi)
    mapped, objective, grad = objective_and_gradient(p.T, p.y0, mean, variance, 0.0, "jacobian-free")
    y1 = newton_step(p.y0, objective, grad, 0.1)
    mean_abs = (mapped - p.y0).flatten(1).abs().mean(1).view(-1, 1, 1, 1)
    assert torch.allclose(y1, p.y0 + mean_abs / 1.1 * torch.sign(mapped - p.y0), atol=1e-12)


@pytest.mark.parametrize("sigmas", [(0.0, 0.05), (0.4, 2.0), (2.0, 14.6)])
def test_unregularized_rnri_converges_to_the_exact_step_inverse_gaussian(sigmas):
    oracle, p = gaussian_step(*sigmas)
    exact = oracle.exact_step_inverse(p.x_lo, *sigmas)
    errors = [float(rms(solve(p, k)[0] - exact).max()) for k in (1, 5, 20, 100, 400)]
    assert all(b <= a * 1.0001 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.03 * errors[0], errors


def test_unregularized_rnri_converges_on_the_linear_oracle():
    oracle = random_linear_denoiser(dim=24, seed=1)
    x_lo = torch.randn(2, 24, generator=torch.Generator().manual_seed(1), dtype=F64)
    p = StepProblem(T=inverse_step_map(oracle, x_lo, 0.5, 1.2), x_lo=x_lo, sigma_lo=0.5, sigma_hi=1.2, y0=x_lo)
    exact = oracle.exact_step_inverse(x_lo, 0.5, 1.2)
    errors = [float(rms(solve(p, k)[0] - exact).max()) for k in (1, 20, 400)]
    assert errors[2] < 0.05 * errors[0], errors


def test_regularization_trades_residual_for_prior_likelihood():
    _, p = gaussian_step()
    settled = []
    for lam in (0.0, 1.0, 10.0):
        _, trace = solve(p, 200, regularization=lam)
        settled.append(min(trace))
    assert settled[0] < settled[1] <= settled[2], settled


def test_best_objective_iterate_is_returned():
    _, p = gaussian_step(2.0, 14.6)
    mean, variance = ve_transition_prior(p.x_lo, p.sigma_lo, p.sigma_hi)
    result, _ = solve(p, 6, regularization=0.1)
    candidates, y = [], p.y0
    for _ in range(6):
        mapped, objective, grad = objective_and_gradient(p.T, y, mean, variance, 0.1, "autograd")
        candidates.append((objective, mapped))
        y = newton_step(y, objective, grad, 0.1)
    for b in range(result.shape[0]):
        best = min(candidates, key=lambda c: float(c[0][b]))[1][b]
        assert torch.allclose(result[b], best)


def test_autograd_gradient_matches_finite_differences():
    def smooth(x, sigma):  # a nonlinear denoiser: no closed form, smooth everywhere
        return torch.tanh(x) * (1.0 / (1.0 + sigma ** 2)) + 0.1 * x.roll(1, -1)

    x_lo = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    T = inverse_step_map(smooth, x_lo, 0.3, 0.9)
    mean, variance = ve_transition_prior(x_lo, 0.3, 0.9)
    y = x_lo * 1.1
    _, _, grad = objective_and_gradient(T, y, mean, variance, 0.5, "autograd")
    direction = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    eps = 1e-6
    def F(point):
        return rnri_objective(point, T(point), mean, variance, 0.5)
    numeric = (F(y + eps * direction) - F(y - eps * direction)) / (2 * eps)
    analytic = (grad * direction).flatten(1).sum(1)
    assert torch.allclose(numeric, analytic, rtol=1e-5)


def test_full_inversion_round_trip_improves_on_ddim_with_iterations():
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=F64) * 0.5
    oracle = GaussianDataDenoiser(mean, std=0.7)
    x0 = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=F64)
    sigmas = karras_sigmas(10)
    errors = {}
    for k in (1, 2, 50):
        result = rnri_invert(oracle, x0, sigmas, iterations=k, regularization=0.0, gradient="autograd")
        assert result.evaluations == 10 * k
        errors[k] = float((sample(oracle, result.latent, sigmas) - x0).norm() / x0.norm())
    assert errors[50] < errors[2] < errors[1], errors


def test_flow_prior_reduces_to_the_ve_prior_shape():
    x_lo = torch.ones(1, 4, dtype=F64)
    mean, variance = flow_transition_prior(x_lo, 0.0, 0.5)
    assert torch.allclose(mean, 0.5 * x_lo) and variance == pytest.approx(0.25)
    mean, variance = flow_transition_prior(x_lo, 0.2, 0.6)
    assert torch.allclose(mean, x_lo * 0.4 / 0.8) and variance == pytest.approx(0.36 - (0.5 * 0.2) ** 2)


@pytest.mark.parametrize("options,message", [
    ({"iterations": 0}, "iterations: expected at least 1, got 0"),
    ({"regularization": -1.0}, "regularization: expected λ ≥ 0, got -1.0"),
    ({"gradient": "numeric"}, "gradient: expected one of"),
    ({"damping": 0.0}, "damping: expected η > 0"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        rnri_invert(lambda x, s: x, torch.ones(1, 4), karras_sigmas(2), **options)
