"""The hand-off: how an inverted seed reaches ComfyUI's own samplers (docs/architecture.md §5).

A `Seed` is the NOISE for SamplerCustomAdvanced and knows its LATENT form for KSamplerAdvanced; the SAMPLER that
regenerates it is ComfyUI's own (with a stochastic sampler's fixed per-step noises), or for EDICT/BDIA the coupled
sampler that undoes the inversion exactly.
"""
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import comfy.model_management
import comfy.samplers
import torch

from ...solvers import InversionMethod, InversionResult, ModelGradient, describe_sigmas, rms
from .family import model_family
from .guided import Prompt, guided_denoiser, run_guided
from .progress import sampler_progress

log = logging.getLogger("seedfinder")


def fixed_noises(shape: tuple, count: int, seed: int) -> list:
    """`count` Gaussian noises from a CPU generator seeded with `seed` (same seed, same noises)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for _ in range(count)]


class FixedNoiseSampler:
    """k-diffusion noise_sampler(σ, σ_next) that returns the noise fixed for that step of the inverted schedule."""

    def __init__(self, noises: list, sigmas: torch.Tensor):
        self.noises, self.sigmas, self.levels = noises, sigmas, sigmas[:-1].tolist()
        self.device = comfy.model_management.get_torch_device()

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        sigma = float(sigma)
        for index, known in enumerate(self.levels):
            if math.isclose(known, sigma, rel_tol=1e-5, abs_tol=1e-7):
                return self.noises[index].to(self.device)
        raise ValueError(f"sampler: this sampler carries the noises of the inverted schedule "
                         f"{describe_sigmas(self.sigmas)}, but it was asked for σ={sigma:.6g}; sample with the invert "
                         f"node's sigmas output")


@dataclasses.dataclass(kw_only=True)
class Seed:
    """An inverted seed as a NOISE for SamplerCustomAdvanced, carrying what downstream nodes need.

    `noise` is x_N divided by what ComfyUI's noise_scaling multiplies a NOISE by at sigmas[0] (√(1+σ²) or σ for
    EPS/V, σ for flow), so it is a unit-variance seed; the rest says how to hand it back to a sampler.
    """
    noise: torch.Tensor
    sigmas: torch.Tensor
    noise_factor: float
    """What a stock sampler multiplies a NOISE by at sigmas[0]."""
    latent_factor: float
    """What a stock sampler multiplies its latent_image by at sigmas[0]."""
    family: str
    latent_format: object
    method: str
    sampler: str = "euler"
    step_noises: Optional[list] = None
    """A stochastic sampler's fixed per-step noises."""
    pair: Optional[tuple] = None
    """EDICT/BDIA: the full-precision state x_N and its partner, which only their coupled sampler regenerates."""
    seed: int = 0
    """ComfyUI's NOISE interface: SamplerCustomAdvanced passes it on to the sampler."""
    trajectory: Optional[list] = None
    """A step-by-step inversion's latents at sigmas[0], …, sigmas[N] (model space, CPU; one latent per σ): what an
    attention edit's exact source branch follows (nodes/host/attention_edit.py)."""

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        """The NOISE that makes the sampler start at x_N from `latent_image`: an empty latent, or the source latent
        itself (with a noise_mask: a masked edit), since the sampler starts at noise_factor·n + latent_factor·latent."""
        samples = input_latent["samples"]
        if tuple(samples.shape) != tuple(self.noise.shape):
            raise ValueError(f"noise: this seed has shape {tuple(self.noise.shape)} but latent_image has shape "
                             f"{tuple(samples.shape)}; connect an empty latent of the inverted image's size and batch, "
                             f"or the inverted image's own latent")
        if not torch.count_nonzero(samples):  # ComfyUI does not shift an empty latent either
            return self.noise.clone()
        start = self.latent_format.process_in(samples.float().cpu())
        return (self.model_latent() - self.latent_factor * start) / self.noise_factor

    def model_latent(self) -> torch.Tensor:
        """x_N in the model's latent space."""
        return self.noise * self.noise_factor

    def as_latent(self) -> torch.Tensor:
        """The LATENT-route tensor: what KSamplerAdvanced (add_noise disabled) turns back into x_N."""
        if abs(self.latent_factor) < 1e-4:
            log.info("seedfinder: a flow model keeps nothing of a LATENT at σ=%.3g; use the noise output "
                        "with SamplerCustomAdvanced and an empty latent", float(self.sigmas[0]))
            return self.latent_format.process_out(self.model_latent())
        return self.latent_format.process_out(self.model_latent() / self.latent_factor)

    def with_noise(self, noise: torch.Tensor, method: str, step_noises: Optional[list] = None) -> "Seed":
        """The same hand-off for another seed tensor (e.g. an interpolated batch) and its per-step noises."""
        return dataclasses.replace(self, noise=noise, method=method, step_noises=step_noises, pair=None,
                                   trajectory=None)

    def regenerating_sampler(self):
        """The SAMPLER that turns this seed back into its image(s): ComfyUI's own, with the fixed noises if any."""
        return regenerating_stock_sampler(self.sampler, self.step_noises, self.sigmas)


def regenerating_stock_sampler(name: str, step_noises: Optional[list], sigmas: torch.Tensor):
    """ComfyUI's own sampler `name`, with a stochastic sampler's fixed per-step noises over `sigmas` if any."""
    if step_noises is None:
        return comfy.samplers.sampler_object(name)
    return comfy.samplers.ksampler(name, extra_options={"noise_sampler": FixedNoiseSampler(step_noises, sigmas)})


class CoupledSampler(comfy.samplers.Sampler):
    """Regenerates an EDICT or BDIA seed with the matching coupled rule (SamplerCustom / SamplerCustomAdvanced).

    The partner latent and the full-precision state travel in the seed; the start the sampler receives (from the
    LATENT or the NOISE route) must be this seed. Other prompts or cfg edit; the same ones reconstruct exactly.
    `generate(denoiser, state, partner, sigmas, input_scale=, callback=, model_dtype=)` is the method's sampler.
    """

    def __init__(self, seed: Seed, generate: Callable[..., torch.Tensor]):
        self.seed, self.generate = seed, generate

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        inverted, method = self.seed.sigmas, self.seed.method
        if sigmas.shape != inverted.shape or not torch.allclose(sigmas.float().cpu(), inverted, rtol=1e-5, atol=1e-7):
            raise ValueError(f"sigmas: this {method} sampler regenerates its seed over the schedule it was "
                             f"inverted on ({len(inverted) - 1} steps, {describe_sigmas(inverted)}), got "
                             f"{len(sigmas) - 1} steps, {describe_sigmas(sigmas.float().cpu())}; connect the invert "
                             f"node's sigmas output to the sampler's sigmas")
        start = sampling.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
        state, partner = self.seed.pair
        if tuple(start.shape) != tuple(state.shape):
            raise ValueError(f"sampler: this {method} sampler regenerates a seed of shape "
                             f"{tuple(state.shape)}, got a start of shape {tuple(start.shape)}")
        if not torch.allclose(start.float().cpu(), state.float(), rtol=1e-4, atol=1e-4 * float(state.abs().max())):
            raise ValueError(f"noise: this {method} sampler only regenerates the seed its invert node "
                             f"made, from that node's latent output (add_noise off) or its noise output with an "
                             f"empty latent; it got another start latent")
        denoise, input_scale = guided_denoiser(model_wrap, extra_args, latent_image)
        device = latent_image.device
        x = self.generate(denoise, state.to(device), partner.to(device), sigmas, input_scale=input_scale,
                          callback=sampler_progress(callback, start), model_dtype=latent_image.dtype)
        if not torch.isfinite(x).all():
            raise ValueError(f"sampler: the {method} regeneration diverged to NaN/inf. With other prompts or "
                             f"cfg than the inversion's, a small mix/gamma amplifies the difference at every step: "
                             f"raise it, or lower cfg")
        return sampling.inverse_noise_scaling(sigmas[-1], x.to(latent_image.dtype))


class FunctionSampler(comfy.samplers.Sampler):
    """A sampler whose steps are a solver's sampling function, run inside the stock sampler nodes' guider: FireFlow's
    and RF-Solver's midpoint sampling, RF-Inversion's controlled reverse ODE. It starts where any sampler starts
    (ComfyUI's noise_scaling of NOISE and latent_image), so it generates from fresh noise as well as from a seed.
    `generate(denoiser, x, sigmas, callback=)` returns x at sigmas[-1]; with `scaled`, it is also given the model's
    `input_scale=` c_in(σ) (BDIA Sampler's level scales)."""

    def __init__(self, name: str, generate: Callable[..., torch.Tensor], scaled: bool = False):
        self.name, self.generate, self.scaled = name, generate, scaled

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        start = sampling.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
        denoise, input_scale = guided_denoiser(model_wrap, extra_args, latent_image)
        scale = {"input_scale": input_scale} if self.scaled else {}

        def interruptible(x: torch.Tensor, sigma: float) -> torch.Tensor:
            denoised = denoise(x, sigma)
            comfy.model_management.throw_exception_if_processing_interrupted()
            return denoised

        x = self.generate(interruptible, start, sigmas.float().cpu(), callback=sampler_progress(callback, start),
                          **scale)
        if not torch.isfinite(x).all():
            raise ValueError(f"sampler: the {self.name} sampler diverged to NaN/inf; lower cfg or use more steps")
        return sampling.inverse_noise_scaling(sigmas[-1], x.to(latent_image.dtype))


@dataclass
class Inversion:
    """An inversion's hand-off to ComfyUI's samplers, with what it cost."""
    latent: dict
    noise: Seed
    sigmas: torch.Tensor
    result: InversionResult
    latent_rms: float
    """RMS of the image latent in the model's space (the scale the residuals are measured in)."""
    round_trip: Optional[float] = None
    """Measured relative round trip ‖x_rec − x‖/‖x‖ of the LATENT, x_rec the seed regenerated by its stock sampler
    through the same guider; None where not measured."""
    round_trip_evaluations: int = 0
    """The model evaluations that regeneration cost."""


@dataclass(frozen=True)
class HandOff:
    """What the seed carries back to a sampler: the method that made it, the ComfyUI sampler that regenerates it and
    that sampler's fixed per-step noises (euler_ancestral, lcm); with `measure`, that stock sampler also regenerates
    the seed inside the guided run and the round trip is measured."""
    method: str
    sampler: str = "euler"
    step_noises: Optional[list] = None
    measure: bool = False


def run_inversion(method: InversionMethod, model, prompt: Prompt, latent: dict, sigmas: torch.Tensor,
                  handoff: HandOff, gradient: ModelGradient = ModelGradient.NONE) -> Inversion:
    """Invert `latent` with `method` through CFGGuider(model, prompt) over `sigmas`; the seed as `handoff` says."""
    if latent.get("noise_mask") is not None:
        raise ValueError("latent: carries a noise_mask (Set Latent Noise Mask, VAE Encode for Inpainting), which a "
                         "seed cannot carry: a masked sampler would keep the seed, not the image, outside the mask. "
                         "Invert the unmasked latent; for a masked edit give SamplerCustomAdvanced this node's noise "
                         "output and the masked source latent as latent_image")
    regenerate = regenerating_stock_sampler(handoff.sampler, handoff.step_noises, sigmas) if handoff.measure else None
    run = run_guided(method, model, prompt, latent, sigmas, gradient, regenerate)
    result = run.result
    partner, trajectory = result.extras.get("partner"), result.extras.get("trajectory")
    seed = Seed(noise=(result.latent / run.noise_factor).float().cpu(), sigmas=sigmas, noise_factor=run.noise_factor,
                latent_factor=run.latent_factor, family=model_family(model),
                latent_format=model.get_model_object("latent_format"), method=handoff.method, sampler=handoff.sampler,
                step_noises=handoff.step_noises, pair=None if partner is None else (result.latent.cpu(), partner.cpu()),
                trajectory=None if trajectory is None else [x.float().cpu() for x in trajectory])
    out = dict(latent)
    out["samples"] = seed.as_latent().to(comfy.model_management.intermediate_device())
    latent_rms = float(rms(seed.latent_format.process_in(latent["samples"].float())).max())
    inversion = Inversion(latent=out, noise=seed, sigmas=sigmas, result=result, latent_rms=latent_rms)
    if run.regeneration is not None:
        back = seed.latent_format.process_out(run.regeneration.latent.float().cpu())
        target = latent["samples"].float().cpu()
        inversion.round_trip = float((back - target).norm() / target.norm().clamp_min(1e-12))
        inversion.round_trip_evaluations = run.regeneration.evaluations
    return inversion
