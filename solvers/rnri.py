"""Regularized Newton-Raphson inversion (RNRI; Samuel, Meiri et al., arXiv 2312.12540 v2-v4, ICLR 2025 "GNRI").

Each inversion step minimises the scalar objective F(y) = ‖y − T(y)‖₁ + λ·G(y), G the Gaussian negative
log-likelihood of the noising step, by the per-coordinate Newton-Raphson update
y_i ← y_i − F(y) / (numel · (∂F/∂y_i + η·sgn ∂F/∂y_i))   (docs/methods.md §4).
"""
from functools import partial
from typing import Callable, Optional

import torch

from .core import (
    Callback,
    Denoiser,
    InputScale,
    InversionResult,
    StepProblem,
    StepRule,
    euler_rule,
    invert_by_steps,
    keep_best,
    rms,
    vp_input_scale,
)

GRADIENTS = ("autograd", "jacobian-free")

Prior = Callable[[torch.Tensor, float, float], tuple]
"""prior(x_lo, σ_lo, σ_hi) -> (mean, variance) of the noising step q(x_hi | x_lo)."""


def ve_transition_prior(x_lo: torch.Tensor, sigma_lo: float, sigma_hi: float) -> tuple:
    """q(x_hi | x_lo) = N(x_lo, (σ_hi² − σ_lo²)·I) in σ space: the paper's one-step transition (docs/methods.md §4)."""
    return x_lo, sigma_hi ** 2 - sigma_lo ** 2


def flow_transition_prior(x_lo: torch.Tensor, sigma_lo: float, sigma_hi: float) -> tuple:
    """Rectified flow: mean ((1−σ_hi)/(1−σ_lo))·x_lo, variance σ_hi² − ((1−σ_hi)/(1−σ_lo))²·σ_lo²
    (docs/methods.md §4)."""
    shrink = (1.0 - sigma_hi) / (1.0 - sigma_lo)
    return shrink * x_lo, sigma_hi ** 2 - (shrink * sigma_lo) ** 2


def rnri_objective(y: torch.Tensor, mapped: torch.Tensor, mean: torch.Tensor, variance: float,
                   regularization: float) -> torch.Tensor:
    """Per-sample F(y) = ‖y − T(y)‖₁ + λ·½‖y − μ‖²/s² (RNRI's regularized scalar residual)."""
    residual = (y - mapped).flatten(1).abs().sum(1)
    prior = 0.5 * (y - mean).flatten(1).pow(2).sum(1) / variance
    return residual + regularization * prior


def jacobian_free_gradient(y, mapped, mean, variance, regularization) -> torch.Tensor:
    """∂F/∂y with ∂T/∂y taken as 0: sgn(y − T(y)) + λ·(y − μ)/s² (what the authors' code does, no backward pass)."""
    return torch.sign(y - mapped) + regularization * (y - mean) / variance


def newton_step(y: torch.Tensor, objective: torch.Tensor, gradient: torch.Tensor, damping: float) -> torch.Tensor:
    """y_i − F/(numel·(g_i + η·sgn g_i)): the paper's per-coordinate update, finite where g_i vanishes."""
    numel = y[0].numel()
    sign = torch.where(gradient >= 0, 1.0, -1.0)
    scale = (objective / numel).view(-1, *[1] * (y.ndim - 1))
    return y - scale / (gradient + damping * sign)


def objective_and_gradient(T, y: torch.Tensor, mean: torch.Tensor, variance: float, regularization: float,
                           gradient: str) -> tuple:
    """(T(y), per-sample F(y), ∂F/∂y): by one vector-Jacobian product through T, or with ∂T/∂y taken as 0."""
    if gradient == "jacobian-free":
        mapped = T(y)
        return (mapped, rnri_objective(y, mapped, mean, variance, regularization),
                jacobian_free_gradient(y, mapped, mean, variance, regularization))
    # ComfyUI runs prompts under inference mode; the product needs y as a normal tensor that records a graph.
    with torch.inference_mode(False), torch.enable_grad():
        leaf = y.detach().clone().requires_grad_(True)
        mapped = T(leaf)
        objective = rnri_objective(leaf, mapped, mean, variance, regularization)
        (grad,) = torch.autograd.grad(objective.sum(), leaf)
    return mapped.detach(), objective.detach(), grad


def rnri_solve(problem: StepProblem, on_iteration: Callable[[int, float], None], iterations: int,
               regularization: float, gradient: str, damping: float, prior: Prior) -> tuple:
    """Newton-Raphson on F from y0; returns T(y) of each sample's best-objective iterate and the residual trace."""
    mean, variance = prior(problem.x_lo, problem.sigma_lo, problem.sigma_hi)
    y, best, best_objective, trace = problem.y0, None, None, []
    for iteration in range(iterations):
        last = iteration + 1 == iterations  # its gradient would go unused: skip the backward pass
        mapped, objective, grad = objective_and_gradient(problem.T, y, mean, variance, regularization,
                                                         "jacobian-free" if last else gradient)
        best, best_objective = keep_best(best, best_objective, mapped, objective)
        trace.append(float(rms(mapped - y).max()))
        on_iteration(iteration, trace[-1])
        if not last:
            y = newton_step(y, objective, grad, damping)
    return best, trace


def rnri_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, iterations: int = 2,
                regularization: float = 0.1, gradient: str = "jacobian-free", damping: float = 0.1,
                prior: Prior = ve_transition_prior, input_scale: InputScale = vp_input_scale,
                callback: Optional[Callback] = None, rule: StepRule = euler_rule,
                noises: Optional[list] = None) -> InversionResult:
    """Invert every Euler step by regularized Newton-Raphson, `iterations` evaluations per step (RNRI)."""
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient: expected one of {GRADIENTS}, got {gradient!r}")
    if iterations < 1:
        raise ValueError(f"iterations: expected at least 1, got {iterations}")
    if regularization < 0:
        raise ValueError(f"regularization: expected λ ≥ 0, got {regularization}")
    if damping <= 0:
        raise ValueError(f"damping: expected η > 0, got {damping}")
    solve = partial(rnri_solve, iterations=iterations, regularization=regularization, gradient=gradient,
                    damping=damping, prior=prior)
    return invert_by_steps(solve, denoiser, x0, sigmas, input_scale, callback, rule, noises)
