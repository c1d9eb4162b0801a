"""Fixed-point inversion (FPI, Meiri, Samuel et al., arXiv 2312.12540 §3.2) and DDIM inversion, its one-iteration
case."""
from functools import partial
from typing import Callable, Optional

import torch

from .core import (
    Callback,
    Denoiser,
    InputScale,
    InversionResult,
    Stepper,
    StepProblem,
    StepRule,
    euler_rule,
    invert_by_steps,
    keep_best,
    rms,
    vp_input_scale,
)

ACCELERATIONS = ("anderson", "none")
SWEEPS = 8
"""Most sweeps over a multistep sampler's stages (docs/methods.md §14); they stop once a sweep changes nothing."""


def anderson_step(iterates: list, images: list, regularization: float = 1e-10) -> torch.Tensor:
    """Anderson acceleration (Anderson 1965; Walker & Ni 2011, type II, β = 1): the next iterate
    T(y_k) − ΔG·γ with γ = argmin ‖f_k − ΔF·γ‖, f = T(y) − y, per sample over the last len(iterates) pairs."""
    batch = iterates[-1].shape[0]
    residuals = [(image - iterate).reshape(batch, -1).double() for iterate, image in zip(iterates, images)]
    flat_images = [image.reshape(batch, -1).double() for image in images]
    delta_f = torch.stack([b - a for a, b in zip(residuals, residuals[1:])], dim=2)  # (batch, numel, window)
    delta_g = torch.stack([b - a for a, b in zip(flat_images, flat_images[1:])], dim=2)
    gram = delta_f.transpose(1, 2) @ delta_f
    scale = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-300).view(-1, 1, 1)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
    rhs = delta_f.transpose(1, 2) @ residuals[-1].unsqueeze(2)
    gamma = torch.linalg.solve(gram + regularization * scale * eye, rhs)
    mixed = flat_images[-1] - (delta_g @ gamma).squeeze(2)
    # residual differences at float rounding make the Gram matrix singular: those samples take the plain T(y)
    mixed = torch.where(torch.isfinite(mixed).all(1, keepdim=True), mixed, flat_images[-1])
    return mixed.to(images[-1].dtype).view_as(images[-1])


def fixed_point_solve(problem: StepProblem, on_iteration: Callable[[int, float], None], max_iterations: int,
                      tolerance: float, acceleration: str = "none", window: int = 5, *,
                      keep_iterate: bool = False) -> tuple:
    """Fixed-point iteration from y0 (FPI eq. 6), plain y ← T(y) or Anderson-accelerated; stop once every sample has
    ‖T(y) − y‖/√numel ≤ tolerance.

    Returns T(y) of each sample's best-residual iterate, and the per-iteration residual trace (largest over the batch);
    with `keep_iterate` also that iterate y and its residual (what a solver that continues from it needs).
    """
    y, best, best_residual, trace = problem.y0, None, None, []
    iterates, images = [], []
    for iteration in range(max_iterations):
        mapped = problem.T(y)
        residual = rms(mapped - y)
        candidate = torch.stack([mapped, y], 1) if keep_iterate else mapped
        best, best_residual = keep_best(best, best_residual, candidate, residual)
        trace.append(float(residual.max()))
        on_iteration(iteration, trace[-1])
        if not iteration:
            goal = torch.clamp(problem.forcing * residual, min=tolerance)
        if bool((residual <= goal).all()):
            break
        if acceleration == "anderson":
            iterates, images = (iterates + [y])[-(window + 1):], (images + [mapped])[-(window + 1):]
            y = anderson_step(iterates, images) if len(iterates) > 1 else mapped
        else:
            y = mapped
    if keep_iterate:
        return best[:, 0], trace, best[:, 1], best_residual
    return best, trace


def fixed_point_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, *, max_iterations: int = 20,
                       tolerance: float = 1e-4, input_scale: InputScale = vp_input_scale,
                       callback: Optional[Callback] = None, rule: StepRule = euler_rule,
                       noises: Optional[list] = None, acceleration: str = "none",
                       warm_start: bool = False, stepper: Optional[Stepper] = None,
                       sweeps: int = SWEEPS) -> InversionResult:
    """Invert every sampler step by fixed-point iteration, at most `max_iterations` evaluations (of T) per step
    (docs/methods.md §3); a multistep `stepper`'s stages in up to `sweeps` sweeps (§14)."""
    if acceleration not in ACCELERATIONS:
        raise ValueError(f"acceleration: expected one of {ACCELERATIONS}, got {acceleration!r}")
    solve = partial(fixed_point_solve, max_iterations=max_iterations, tolerance=tolerance, acceleration=acceleration)
    return invert_by_steps(solve, denoiser, x0, sigmas, input_scale=input_scale, callback=callback, rule=rule,
                           noises=noises, warm_start=warm_start, stepper=stepper, sweeps=sweeps, tolerance=tolerance,
                           mix=anderson_step if acceleration == "anderson" else None)


def ddim_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, *,
                input_scale: InputScale = vp_input_scale,
                callback: Optional[Callback] = None, rule: StepRule = euler_rule,
                noises: Optional[list] = None, stepper: Optional[Stepper] = None) -> InversionResult:
    """Classic DDIM inversion: x_hi = T(x̂_lo), the model seeing the previous latent at the next timestep
    (docs/methods.md §2); for a `stepper`'s stages one sweep, each multistep stage as its first-order step (§14).

    The residual it reports is that of its starting point, ‖T(x̂_lo) − x̂_lo‖/√numel (no extra evaluation).
    """
    return fixed_point_invert(denoiser, x0, sigmas, max_iterations=1, tolerance=0.0, input_scale=input_scale,
                              callback=callback, rule=rule, noises=noises, stepper=stepper, sweeps=1)
