"""SeedSelect through the guided model: a seed refined so that the image its euler sampler generates matches a few
reference latents (solvers/seed_select.py), the gradient through a differentiable clone of the MODEL."""
from functools import partial

import torch

from ...solvers import InversionResult, ModelGradient
from ...solvers.seed_select import SeedSelectOptions, seed_select
from .guided import Prompt, run_guided
from .handoff import Seed

DIFFERENTIABLE_SAMPLERS = ("euler", "ddim")
"""The samplers SeedSelect differentiates through (ComfyUI's ddim is its euler)."""


def check_seed_and_references(seed: Seed, references: torch.Tensor) -> None:
    """One seed for euler, and reference latents of its shape."""
    if seed.noise.shape[0] != 1:
        raise ValueError(f"seed: expected a single seed (batch 1; Seed Centroid makes one), got a batch of "
                         f"{seed.noise.shape[0]}")
    if seed.sampler not in DIFFERENTIABLE_SAMPLERS or seed.step_noises is not None:
        raise ValueError(f"seed: SeedSelect differentiates through euler; expected a seed inverted for "
                         f"{' or '.join(DIFFERENTIABLE_SAMPLERS)}, got one for {seed.sampler}")
    if references.ndim != seed.noise.ndim or tuple(references.shape[1:]) != tuple(seed.noise.shape[1:]):
        raise ValueError(f"references: expected latents of shape (batch, {', '.join(map(str, seed.noise.shape[1:]))}) "
                         f"like the seed (encode the reference images with this model's VAE at the seed's size), got "
                         f"{tuple(references.shape)}")
    if references.shape[0] == 0 or not torch.isfinite(references).all():
        raise ValueError(f"references: expected at least one finite latent, got shape {tuple(references.shape)} with "
                         f"{int((~torch.isfinite(references)).sum())} NaN/inf")


def run_seed_select(model, prompt: Prompt, seed: Seed, references: dict,
                    options: SeedSelectOptions) -> tuple[Seed, InversionResult]:
    """The refined seed as the same hand-off, and the optimisation's result (losses per iteration, evaluations).
    The guided run is handed the seed itself as its latent (x_N, in the LATENT format), and the solver starts there."""
    samples = references["samples"].float().cpu()
    check_seed_and_references(seed, samples)
    method = partial(seed_select, references=seed.latent_format.process_in(samples), options=options)
    start = {"samples": seed.latent_format.process_out(seed.model_latent())}
    run = run_guided(method, model, prompt, start, seed.sigmas, ModelGradient.VJP, progress_steps=options.iterations)
    refined = (run.result.latent / run.noise_factor).float().cpu()
    return seed.with_noise(refined, "seed_select"), run.result
