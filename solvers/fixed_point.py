"""Fixed-point inversion (FPI, Meiri, Samuel et al., arXiv 2312.12540 §3.2) and DDIM inversion, its one-iteration
case."""
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

import torch

from .core import (
    EULER,
    NOT_ON_NODE,
    Callback,
    Denoiser,
    InputScale,
    InversionResult,
    Stepping,
    StepProblem,
    Sweeps,
    invert_by_steps,
    keep_best,
    rms,
    vp_input_scale,
)

ACCELERATIONS = ("anderson", "none")


@dataclass(frozen=True)
class FixedPointOptions:
    """FixedPoint Invert's options. These defaults are the node's: its schema, bench/ and the tests read them here."""
    max_iterations: int = 20
    """Most evaluations of T per step."""
    tolerance: float = 1e-4
    """A step stops once every sample's RMS residual ‖T(y) − y‖/√numel is at or under this (model latent units)."""
    acceleration: str = "anderson"
    """anderson: Anderson acceleration over the last 5 iterates; none: plain y ← T(y), as the paper."""
    warm_start: bool = True
    """Start each step from the previous step's solved direction instead of the DDIM guess."""
    sweeps: Optional[int] = field(default=None, metadata=NOT_ON_NODE)
    """Most sweeps over a multistep sampler's stages; None: the sampler's own (samplers.SAMPLER_SWEEPS)."""

    def __post_init__(self):
        if self.acceleration not in ACCELERATIONS:
            raise ValueError(f"acceleration: expected one of {ACCELERATIONS}, got {self.acceleration!r}")

    def stage_sweeps(self) -> Sweeps:
        """How a multistep sampler's stages are swept with these options (Anderson mixes whole sweeps too)."""
        return Sweeps(count=self.sweeps, tolerance=self.tolerance,
                      mix=anderson_step if self.acceleration == "anderson" else None)


FPI_PAPER = FixedPointOptions(acceleration="none", warm_start=False)
"""The paper's settings: plain y ← T(y) from classic DDIM's evaluation point (Meiri, Samuel et al. §3.2)."""
DDIM = FixedPointOptions(max_iterations=1, tolerance=0.0, acceleration="none", warm_start=False, sweeps=1)
"""Classic DDIM inversion as fixed-point iteration: one evaluation of T per step (docs/methods.md §2)."""


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


def fixed_point_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor,
                       options: FixedPointOptions = FixedPointOptions(), *, input_scale: InputScale = vp_input_scale,
                       callback: Optional[Callback] = None, stepping: Stepping = EULER) -> InversionResult:
    """Invert every step of the sampler `stepping` describes by fixed-point iteration, at most
    `options.max_iterations` evaluations (of T) per step (docs/methods.md §3); a multistep sampler's stages in up to
    `options.sweeps` sweeps (§14)."""
    solve = partial(fixed_point_solve, max_iterations=options.max_iterations, tolerance=options.tolerance,
                    acceleration=options.acceleration)
    return invert_by_steps(solve, denoiser, x0, sigmas, input_scale=input_scale, callback=callback, stepping=stepping,
                           warm_start=options.warm_start, sweeps=options.stage_sweeps())


def ddim_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, *,
                input_scale: InputScale = vp_input_scale, callback: Optional[Callback] = None,
                stepping: Stepping = EULER) -> InversionResult:
    """Classic DDIM inversion: x_hi = T(x̂_lo), the model seeing the previous latent at the next timestep
    (docs/methods.md §2); for a sampler's stages one sweep, each multistep stage as its first-order step (§14).

    The residual it reports is that of its starting point, ‖T(x̂_lo) − x̂_lo‖/√numel (no extra evaluation).
    """
    return fixed_point_invert(denoiser, x0, sigmas, DDIM, input_scale=input_scale, callback=callback,
                              stepping=stepping)
