"""The guided run: a solver runs where ComfyUI runs a sampler, inside ComfyUI's own CFGGuider, so the denoiser it
inverts is exactly the one a stock sampler regenerates the image with (same conds, cfg, patches, LoRAs,
ControlNets)."""
import math
from dataclasses import dataclass
from typing import Callable, Optional

import comfy.model_management
import comfy.samplers
import comfy.utils
import torch

from ...solvers import InversionMethod
from .checks import nonfinite_cause, validate_inputs
from .progress import progress_reporter


def guided_denoiser(model_wrap, extra_args: dict, latent_image: torch.Tensor, on_output=None) -> tuple:
    """(D(x, σ), c_in(σ)) from the model wrapper ComfyUI hands a sampler; `on_output(denoised, σ)` sees each D."""
    sampling = model_wrap.inner_model.model_sampling
    ones = latent_image.new_ones(latent_image.shape[0])

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        denoised = model_wrap(x, sigma * ones, **extra_args)
        if on_output is not None:
            on_output(denoised, sigma)
        return denoised

    def input_scale(sigma: float) -> float:
        return float(sampling.calculate_input(torch.tensor(sigma), torch.ones(())))

    return denoise, input_scale


def _same_tensor(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def differentiable(model):
    """A clone whose layers re-materialise their weights on each forward, as core's LoRA training node does.

    Prompts run under inference mode, where the loaded weights are inference tensors that autograd cannot
    save. A weight wrapper makes comfy.ops cast a fresh copy per layer and forward (inside the solver's
    inference_mode(False) block those copies are normal tensors), so a vector-Jacobian product works with
    weight casting and low-VRAM offloading, and no second resident copy outlives the backward pass.
    """
    patched = model.clone()
    for name, module in model.model.named_modules():
        for kind in ("weight", "bias"):  # layer_norm saves its bias for backward too
            if hasattr(module, f"{kind}_function") and getattr(module, kind, None) is not None:
                patched.add_weight_wrapper(f"{name}.{kind}", _same_tensor)
    return patched


class SolverSampler(comfy.samplers.Sampler):
    """Runs a solver where ComfyUI runs a sampler, with the guider as the denoiser D(x, σ)."""

    def __init__(self, method: InversionMethod, on_event: Callable[[dict], None]):
        self.method, self.on_event = method, on_event
        self.nonfinite_at: Optional[float] = None
        """The first σ at which the guided model returned NaN/inf, if it did."""

    def watch(self, denoised: torch.Tensor, sigma: float) -> None:
        if self.nonfinite_at is None and not torch.isfinite(denoised).all():
            self.nonfinite_at = sigma

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        denoise, input_scale = guided_denoiser(model_wrap, extra_args, latent_image, self.watch)
        self.result = self.method(denoise, latent_image, sigmas, input_scale=input_scale, callback=self.on_event)
        max_denoise = self.max_denoise(model_wrap, sigmas)
        unit = torch.ones(())
        # noise_scaling is linear in (noise, latent): its two coefficients are what the samplers multiply by.
        self.noise_factor = float(sampling.noise_scaling(sigmas[0], unit, torch.zeros(()), max_denoise))
        self.latent_factor = float(sampling.noise_scaling(sigmas[0], torch.zeros(()), unit, max_denoise))
        return self.result.latent


def run_guided(method: InversionMethod, model, positive, negative, cfg: float, latent: dict, sigmas: torch.Tensor,
               needs_gradient: bool = False) -> SolverSampler:
    """Run `method` on `latent` with D = CFGGuider(model, positive, negative, cfg) over `sigmas`.

    Returns the sampler: `.result` (the method's InversionResult, latent in model space), `.output` (that latent
    in the LATENT format, as a sampler's output), `.noise_factor` and `.latent_factor` (what a stock sampler
    multiplies a NOISE and a LATENT by at sigmas[0]).
    """
    validate_inputs(model, positive, negative, cfg, latent)
    guider = comfy.samplers.CFGGuider(differentiable(model) if needs_gradient else model)
    guider.inner_set_conds(prompt_conds(positive, negative))
    guider.set_cfg(cfg)
    sampler = SolverSampler(method, progress_reporter(len(sigmas) - 1))
    return sample_checked(guider, sampler, model, latent, sigmas, cfg)


def prompt_conds(positive, negative, prefix: str = "") -> dict:
    """A guider's conds for one prompt pair (no negative at cfg 1), under `prefix`-named keys."""
    conds = {f"{prefix}positive": positive}
    if negative is not None:
        conds[f"{prefix}negative"] = negative
    return conds


def sample_checked(guider, sampler: SolverSampler, model, latent: dict, sigmas: torch.Tensor, cfg: float,
                   denoise_mask: Optional[torch.Tensor] = None):
    """guider.sample with `sampler` on `latent` (and `denoise_mask`, which ComfyUI fits to the latent and hands the
    sampler); refuses a non-finite result, naming its likely cause."""
    steps = len(sigmas) - 1
    samples = latent["samples"]
    zeros = torch.zeros(samples.shape, dtype=samples.dtype, device="cpu")
    sampler.output = guider.sample(zeros, samples, sampler, sigmas, denoise_mask=denoise_mask, disable_pbar=True,
                                   seed=0)
    comfy.utils.ProgressBar(steps).update_absolute(steps, steps)
    finals = [min(trace) for trace in sampler.result.residuals if trace]
    if not (torch.isfinite(sampler.result.latent).all() and torch.isfinite(sampler.output).all()
            and all(math.isfinite(r) for r in finals)):
        raise ValueError(nonfinite_cause(model, samples, cfg, sampler.nonfinite_at))
    return sampler


@dataclass
class Prompt:
    """One side of an edit: its conditioning pair and cfg."""
    positive: list
    negative: Optional[list]
    cfg: float


class EditGuider(comfy.samplers.CFGGuider):
    """CFGGuider holding a source and a target prompt, each with its cfg, so that an edit evaluates both velocities in
    one sampling run (ComfyUI's own Guider_DualCFG holds several conds the same way). `role` picks the prompt."""

    def set_prompts(self, source: Prompt, target: Prompt) -> None:
        self.inner_set_conds({**prompt_conds(source.positive, source.negative, "source_"),
                              **prompt_conds(target.positive, target.negative, "target_")})
        self.cfgs = {"source": source.cfg, "target": target.cfg}
        self.role = "target"

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006  (CFGGuider's signature)
        return comfy.samplers.sampling_function(self.inner_model, x, timestep, self.conds.get(f"{self.role}_negative"),
                                                self.conds.get(f"{self.role}_positive"), self.cfgs[self.role],
                                                model_options=model_options, seed=seed)


Edit = Callable[..., object]
"""edit(source_denoiser, target_denoiser, x0, sigmas, mask=, callback=) -> InversionResult (the edited latent; `mask`:
the latent's noise_mask fitted to it, or None)."""


class EditSampler(SolverSampler):
    """Runs an edit where ComfyUI runs a sampler, with the source- and the target-prompted denoisers."""

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        denoise, _ = guided_denoiser(model_wrap, extra_args, latent_image, self.watch)

        def as_role(role: str):
            def role_denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
                model_wrap.role = role
                return denoise(x, sigma)
            return role_denoise

        self.result = self.method(as_role("source"), as_role("target"), latent_image, sigmas, mask=denoise_mask,
                                  callback=self.on_event)
        return self.result.latent


def run_edit(edit: Edit, model, source: Prompt, target: Prompt, latent: dict, sigmas: torch.Tensor) -> SolverSampler:
    """Run `edit` on `latent` over `sigmas` (inside its noise_mask, if it has one) with the source and target prompts
    through one EditGuider; returns the sampler with `.result` and `.output` (the edited latent in the LATENT
    format)."""
    validate_inputs(model, source.positive, source.negative, source.cfg, latent, prefix="source_")
    validate_inputs(model, target.positive, target.negative, target.cfg, latent, prefix="target_")
    guider = EditGuider(model)
    guider.set_prompts(source, target)
    sampler = EditSampler(edit, progress_reporter(len(sigmas) - 1))
    return sample_checked(guider, sampler, model, latent, sigmas, max(source.cfg, target.cfg),
                          latent.get("noise_mask"))
