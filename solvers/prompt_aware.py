"""Prompt-aware adjustment (FPI paper, Meiri, Samuel et al. 2023, §3.3): move a real image's latent to one the
sampler can reach with the inversion prompt, by a short noising/denoising cycle at the smallest σ's.

The authors' code noises once with seeded Gaussian noise to σ_depth and runs Euler back to 0 (`seeded`); the
paper describes deterministic noise-addition steps, done here as classic DDIM inversion (`inverted`).
"""
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .core import (
    Callback,
    CountingDenoiser,
    Denoiser,
    InputScale,
    InversionResult,
    notify,
    rms,
    sample,
    validate_schedule,
    vp_input_scale,
)
from .fixed_point import ddim_invert

MODES = ("seeded", "inverted")


@dataclass(frozen=True)
class PromptAwareOptions:
    """Prompt-Aware Encode's options. These defaults are the node's (depth 2 and the seeded jump are the authors'): its
    schema, bench/ and the tests read them here."""
    depth: int = 2
    """How many of the schedule's smallest-σ steps the cycle spans (cycle_schedule)."""
    cycles: int = 1
    mode: str = "seeded"
    """seeded: one Gaussian jump to the top of the cycle; inverted: DDIM-inversion steps up."""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {self.mode!r}")
        if self.cycles < 1:
            raise ValueError(f"cycles: expected at least 1, got {self.cycles}")

AddNoise = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
"""add_noise(x0, noise, σ) -> x_σ: the model family's forward noising (VE: x0 + σ·n)."""


def ve_add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """x_σ = x0 + σ·n: one stochastic jump of the forward process in σ space (docs/methods.md §8)."""
    return x0 + sigma * noise


def cycle_schedule(sigmas: torch.Tensor, depth: int) -> torch.Tensor:
    """The `depth` smallest-σ steps of an inversion schedule: [σ_depth, …, σ_1, 0]."""
    validate_schedule(sigmas)
    steps = len(sigmas) - 1
    if not 1 <= depth <= steps:
        raise ValueError(f"depth: expected 1 … {steps} (the steps of the inversion schedule), got {depth}")
    return sigmas[-(depth + 1):]


def prompt_aware_adjust(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor,
                        options: PromptAwareOptions = PromptAwareOptions(), *,
                        noises: Optional[Sequence[torch.Tensor]] = None, add_noise: AddNoise = ve_add_noise,
                        input_scale: InputScale = vp_input_scale, callback: Optional[Callback] = None
                        ) -> InversionResult:
    """Noise x0 to sigmas[0] (a seeded jump, or classic DDIM inversion), then Euler back to 0; `cycles` times.

    `sigmas` is the short cycle schedule (cycle_schedule); `noises` holds one Gaussian tensor per cycle for the
    seeded mode. Residuals: per cycle, the RMS distance the latent moved.
    """
    validate_schedule(sigmas)
    mode, cycles = options.mode, options.cycles
    if mode == "seeded" and (noises is None or len(noises) < cycles):
        raise ValueError(f"noises: the seeded mode needs one noise tensor per cycle ({cycles})")
    counter = CountingDenoiser(denoiser)
    steps = len(sigmas) - 1
    moves, x = [], x0
    for cycle in range(cycles):
        def progress(event: dict, cycle=cycle) -> None:
            notify(callback, **{**event, "step": cycle * steps + event["step"], "steps": cycles * steps})

        if mode == "seeded":
            noisy = add_noise(x, noises[cycle], float(sigmas[0]))
        else:
            noisy = ddim_invert(counter, x, sigmas, input_scale=input_scale).latent
        adjusted = sample(counter, noisy, sigmas, callback=progress)
        moves.append([float(rms(adjusted - x).max())])
        x = adjusted
    return InversionResult(latent=x, residuals=moves, evaluations=counter.evaluations)
