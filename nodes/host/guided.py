"""The guided run: a solver runs where ComfyUI runs a sampler, inside ComfyUI's own CFGGuider, so the denoiser it
inverts is exactly the one a stock sampler regenerates the image with (same conds, cfg, patches, LoRAs,
ControlNets)."""
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import comfy.model_management
import comfy.samplers
import comfy.utils
import torch

from ...solvers import InversionMethod, InversionResult, ModelGradient
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


@dataclass(frozen=True)
class Regeneration:
    """The seed sampled back through the same guided denoiser by the sampler that regenerates it: the latent it gives
    (model space) and the evaluations that cost."""
    latent: torch.Tensor
    evaluations: int


@dataclass(frozen=True)
class SolverRun:
    """What one solver run inside the guider produced: the method's result (latent in model space), the two
    coefficients by which ComfyUI's noise_scaling multiplies a NOISE and a LATENT at sigmas[0], and the seed's
    regeneration if one was asked for."""
    result: InversionResult
    noise_factor: float
    latent_factor: float
    regeneration: Optional[Regeneration] = None


@dataclass(frozen=True, kw_only=True)
class GuidedRun(SolverRun):
    """A checked guided run: the solver's run and `output`, its latent in the LATENT format (as a sampler's output)."""
    output: torch.Tensor


class SolverSampler(comfy.samplers.Sampler):
    """Runs a solver where ComfyUI runs a sampler, with the guider as the denoiser D(x, σ). The guider calls sample()
    and keeps only the latent it returns: the run itself is appended to `runs`."""

    def __init__(self, method: InversionMethod, on_event: Callable[[dict], None],
                 regenerate: Optional[comfy.samplers.Sampler] = None):
        self.method, self.on_event, self.regenerate = method, on_event, regenerate
        self.runs: list = []
        """Each sample() call's SolverRun."""
        self.nonfinite_at: list = []
        """The first σ at which the guided model returned NaN/inf, if it did."""

    def watch(self, denoised: torch.Tensor, sigma: float) -> None:
        if not self.nonfinite_at and not torch.isfinite(denoised).all():
            self.nonfinite_at.append(sigma)

    def solve(self, model_wrap, sigmas, extra_args, latent_image, denoise_mask) -> InversionResult:
        """The method on the image latent (model space), D(x, σ) the guided model. An inversion never gets a
        `denoise_mask`: validate_inputs refuses a masked latent before the run."""
        denoise, input_scale = guided_denoiser(model_wrap, extra_args, latent_image, self.watch)
        return self.method(denoise, latent_image, sigmas, input_scale=input_scale, callback=self.on_event)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        result = self.solve(model_wrap, sigmas, extra_args, latent_image, denoise_mask)
        max_denoise = self.max_denoise(model_wrap, sigmas)
        unit = torch.ones(())
        # noise_scaling is linear in (noise, latent): its two coefficients are what the samplers multiply by.
        noise_factor = float(sampling.noise_scaling(sigmas[0], unit, torch.zeros(()), max_denoise))
        regeneration = None
        if self.regenerate is not None and torch.isfinite(result.latent).all():
            regeneration = regenerated(self.regenerate, model_wrap, sigmas, extra_args, result.latent / noise_factor,
                                       latent_image)
        self.runs.append(SolverRun(
            result=result, noise_factor=noise_factor,
            latent_factor=float(sampling.noise_scaling(sigmas[0], torch.zeros(()), unit, max_denoise)),
            regeneration=regeneration))
        return result.latent


def regenerated(sampler: comfy.samplers.Sampler, model_wrap, sigmas, extra_args: dict, noise: torch.Tensor,
                latent_image: torch.Tensor) -> Regeneration:
    """`sampler` run from the seed `noise` on an empty latent (what SamplerCustomAdvanced does with the node's noise
    output) through the guider's own model wrapper; each evaluation is counted by a post-cfg function, the patch point
    core's guidance nodes use, which also lets Cancel stop it within one evaluation."""
    count = [0]

    def counted(args: dict) -> torch.Tensor:
        count[0] += 1
        comfy.model_management.throw_exception_if_processing_interrupted()
        return args["denoised"]

    options = dict(extra_args.get("model_options", {}))
    options["sampler_post_cfg_function"] = list(options.get("sampler_post_cfg_function", [])) + [counted]
    # a copy: ComfyUI's uni_pc sets the last σ to 0.001 in place, and these σ's are the node's SIGMAS output
    latent = sampler.sample(model_wrap, sigmas.clone(), {**extra_args, "model_options": options}, None,
                            noise.to(latent_image), torch.zeros_like(latent_image), disable_pbar=True)
    return Regeneration(latent=latent, evaluations=count[0])


def run_guided(method: InversionMethod, model, prompt: "Prompt", latent: dict, sigmas: torch.Tensor,
               gradient: ModelGradient = ModelGradient.NONE,
               regenerate: Optional[comfy.samplers.Sampler] = None, progress_steps: Optional[int] = None) -> GuidedRun:
    """Run `method` on `latent` with D = CFGGuider(model, prompt) over `sigmas`; with ModelGradient.VJP through a
    clone of the model that autograd can differentiate (`differentiable`); then, with a `regenerate` sampler, sample
    the seed back through the same guider (`SolverRun.regeneration`). The ProgressBar counts the method's events'
    `step` up to `progress_steps` (default: the schedule's steps)."""
    validate_inputs(model, prompt.positive, prompt.negative, prompt.cfg, latent)
    guider = comfy.samplers.CFGGuider(differentiable(model) if gradient is ModelGradient.VJP else model)
    guider.inner_set_conds(prompt_conds(prompt.positive, prompt.negative))
    guider.set_cfg(prompt.cfg)
    sampler = SolverSampler(method, progress_reporter(progress_steps or len(sigmas) - 1), regenerate)
    return sample_checked(guider, sampler, model, latent, sigmas, prompt.cfg)


def prompt_conds(positive, negative, prefix: str = "") -> dict:
    """A guider's conds for one prompt pair (no negative at cfg 1), under `prefix`-named keys."""
    conds = {f"{prefix}positive": positive}
    if negative is not None:
        conds[f"{prefix}negative"] = negative
    return conds


def sample_checked(guider, sampler: SolverSampler, model, latent: dict, sigmas: torch.Tensor, cfg: float,
                   denoise_mask: Optional[torch.Tensor] = None) -> GuidedRun:
    """guider.sample with `sampler` on `latent` (and `denoise_mask`, which ComfyUI fits to the latent and hands the
    sampler); refuses a non-finite result, naming its likely cause."""
    steps = len(sigmas) - 1
    samples = latent["samples"]
    zeros = torch.zeros(samples.shape, dtype=samples.dtype, device="cpu")
    output = guider.sample(zeros, samples, sampler, sigmas, denoise_mask=denoise_mask, disable_pbar=True, seed=0)
    comfy.utils.ProgressBar(steps).update_absolute(steps, steps)
    run = sampler.runs[-1]
    finals = [min(trace) for trace in run.result.residuals if trace]
    if not (torch.isfinite(run.result.latent).all() and torch.isfinite(output).all()
            and all(math.isfinite(r) for r in finals)):
        raise ValueError(nonfinite_cause(model, samples, cfg, next(iter(sampler.nonfinite_at), None)))
    return GuidedRun(result=run.result, noise_factor=run.noise_factor, latent_factor=run.latent_factor,
                     regeneration=run.regeneration, output=output)


@dataclass(frozen=True)
class Prompt:
    """A prompt as the guider applies it: its conditioning pair and cfg."""
    positive: list
    negative: Optional[list]
    cfg: float


PROMPT_ROLE = "seedfinder_prompt"
"""The key in an evaluation's model_options by which an edit names the prompt (a key of its EditGuider's prompts)."""


class EditGuider(comfy.samplers.CFGGuider):
    """CFGGuider holding several prompts by role (an edit's source and target), each with its cfg, so that an edit
    evaluates both velocities in one sampling run (ComfyUI's own Guider_DualCFG holds several conds the same way). Each
    evaluation names its prompt in model_options[PROMPT_ROLE]."""

    def __init__(self, model_patcher, prompts: Mapping[str, Prompt]):
        super().__init__(model_patcher)
        self.inner_set_conds({key: cond for role, prompt in prompts.items()
                              for key, cond in prompt_conds(prompt.positive, prompt.negative, f"{role}_").items()})
        self.cfgs = {role: prompt.cfg for role, prompt in prompts.items()}

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006  (CFGGuider's signature)
        role = model_options[PROMPT_ROLE]
        options = {key: value for key, value in model_options.items() if key != PROMPT_ROLE}
        return comfy.samplers.sampling_function(self.inner_model, x, timestep, self.conds.get(f"{role}_negative"),
                                                self.conds.get(f"{role}_positive"), self.cfgs[role],
                                                model_options=options, seed=seed)


Edit = Callable[..., object]
"""edit(source_denoiser, target_denoiser, x0, sigmas, mask=, callback=) -> InversionResult (the edited latent; `mask`:
the latent's noise_mask fitted to it, or None)."""


class EditSampler(SolverSampler):
    """Runs an edit where ComfyUI runs a sampler, with the source- and the target-prompted denoisers."""

    def solve(self, model_wrap, sigmas, extra_args, latent_image, denoise_mask) -> InversionResult:
        def denoiser(role: str):
            options = {**extra_args["model_options"], PROMPT_ROLE: role}
            return guided_denoiser(model_wrap, {**extra_args, "model_options": options}, latent_image, self.watch)[0]

        return self.method(denoiser("source"), denoiser("target"), latent_image, sigmas, mask=denoise_mask,
                           callback=self.on_event)


def run_edit(edit: Edit, model, source: Prompt, target: Prompt, latent: dict, sigmas: torch.Tensor) -> GuidedRun:
    """Run `edit` on `latent` over `sigmas` (inside its noise_mask, if it has one) with the source and target prompts
    through one EditGuider; its `output` is the edited latent in the LATENT format."""
    validate_inputs(model, source.positive, source.negative, source.cfg, latent, prefix="source_")
    validate_inputs(model, target.positive, target.negative, target.cfg, latent, prefix="target_")
    guider = EditGuider(model, {"source": source, "target": target})
    sampler = EditSampler(edit, progress_reporter(len(sigmas) - 1))
    return sample_checked(guider, sampler, model, latent, sigmas, max(source.cfg, target.cfg),
                          latent.get("noise_mask"))
