"""Fixed-point inversion (FPI, Meiri, Samuel et al., arXiv 2312.12540 §3.2) and DDIM inversion, its one-iteration case."""
from functools import partial
from typing import Callable, Optional

import torch

from .core import (Callback, Denoiser, InputScale, InversionResult, StepProblem, StepRule, euler_rule,
                   invert_by_steps, rms, vp_input_scale)


def fixed_point_solve(problem: StepProblem, on_iteration: Callable[[int, float], None], max_iterations: int,
                      tolerance: float) -> tuple:
    """Picard iteration y ← T(y) from y0 (FPI eq. 6); stop once every sample has ‖T(y) − y‖/√numel ≤ tolerance.

    Returns T(y) of each sample's best-residual iterate, and the per-iteration residual trace (largest over the batch).
    """
    y, best, best_residual, trace = problem.y0, None, None, []
    for iteration in range(max_iterations):
        mapped = problem.T(y)
        residual = rms(mapped - y)
        if best is None:
            best, best_residual = mapped, residual
        else:
            improved = residual < best_residual
            best = torch.where(improved.view(-1, *[1] * (y.ndim - 1)), mapped, best)
            best_residual = torch.where(improved, residual, best_residual)
        trace.append(float(residual.max()))
        on_iteration(iteration, trace[-1])
        if bool((residual <= tolerance).all()):
            break
        y = mapped
    return best, trace


def fixed_point_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, max_iterations: int = 20,
                       tolerance: float = 1e-4, input_scale: InputScale = vp_input_scale,
                       callback: Optional[Callback] = None, rule: StepRule = euler_rule,
                       noises: Optional[list] = None) -> InversionResult:
    """Invert every sampler step by fixed-point iteration, at most `max_iterations` evaluations per step (FPI §3.2)."""
    solve = partial(fixed_point_solve, max_iterations=max_iterations, tolerance=tolerance)
    return invert_by_steps(solve, denoiser, x0, sigmas, input_scale, callback, rule, noises)


def ddim_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, input_scale: InputScale = vp_input_scale,
                callback: Optional[Callback] = None, rule: StepRule = euler_rule,
                noises: Optional[list] = None) -> InversionResult:
    """Classic DDIM inversion: x_hi = T(x̂_lo), the model seeing the previous latent at the next timestep (§2.1, §3.3 b).

    The residual it reports is that of its starting point, ‖T(x̂_lo) − x̂_lo‖/√numel (no extra evaluation).
    """
    return fixed_point_invert(denoiser, x0, sigmas, max_iterations=1, tolerance=0.0, input_scale=input_scale,
                              callback=callback, rule=rule, noises=noises)
