"""The one adapter between Seedfinder's solvers and ComfyUI (DESIGN.md §1, §3).

It runs a solver as a `comfy.samplers.Sampler` inside ComfyUI's own `CFGGuider`, so the denoiser the
solver inverts is exactly the one a stock sampler will use to regenerate the image: same conds, cfg,
model patches, LoRAs and ControlNets. It also knows the model family and turns the inverted seed into
the two hand-offs ComfyUI's samplers accept (a LATENT for KSamplerAdvanced, a NOISE for
SamplerCustomAdvanced).
"""
import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import comfy.utils
import torch

from ..solvers import InversionResult, StepRule, describe_sigmas, rms, validate_schedule
from ..solvers.rnri import flow_transition_prior, ve_transition_prior
from ..solvers.samplers import sampler_rule

log = logging.getLogger("seedfinder")

InversionMethod = Callable[..., InversionResult]
"""method(denoiser, x0, sigmas, input_scale=..., callback=...) -> InversionResult"""

FAMILIES = (  # most specific first: EDM subclasses V_PREDICTION, which (like X0) subclasses EPS
    (comfy.model_sampling.EDM, "EDM"),
    (comfy.model_sampling.V_PREDICTION, "V_PREDICTION"),
    (comfy.model_sampling.X0, "X0"),
    (comfy.model_sampling.EPS, "EPS"),
    (comfy.model_sampling.CONST, "CONST"),
    (comfy.model_sampling.COSMOS_RFLOW, "COSMOS_RFLOW"),
)


def model_family(model) -> str:
    """The prediction type of ComfyUI's model sampling (EPS, V_PREDICTION, EDM, X0, CONST = flow, COSMOS_RFLOW).

    Every inverter needs only D(x, σ) and the family's noise_scaling, but a sampling class outside these (another
    pack's) may noise differently; it is refused rather than inverted with a guessed prior.
    """
    sampling = model.get_model_object("model_sampling")
    for cls, name in FAMILIES:
        if isinstance(sampling, cls):
            return name
    known = ", ".join(name for _, name in FAMILIES)
    raise ValueError(f"model: expected a model whose sampling is one of ComfyUI's prediction types ({known}), got "
                     f"{[base.__name__ for base in type(sampling).__mro__[1:-1]]}; Seedfinder cannot tell how it "
                     f"adds noise")


def noising_prior(model):
    """The Gaussian prior of one noising step in this model family's σ space (RNRI's regulariser)."""
    return flow_transition_prior if model_family(model) == "CONST" else ve_transition_prior


def step_rule(model, sampler: str) -> StepRule:
    """How ComfyUI's sampler `sampler` steps for this model's family (flow models have their own ancestral step)."""
    return sampler_rule(sampler, model_family(model) == "CONST")


def fixed_noises(shape: tuple, steps: int, seed: int) -> list:
    """One Gaussian noise per step, from a CPU generator seeded with `seed` (same seed, same noises)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for _ in range(steps)]


class FixedNoiseSampler:
    """k-diffusion noise_sampler(σ, σ_next) that returns the noise fixed for that step of the inverted schedule."""

    def __init__(self, noises: list, sigmas: torch.Tensor):
        self.noises, self.sigmas = noises, [float(s) for s in sigmas]
        self.device = comfy.model_management.get_torch_device()

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        sigma = float(sigma)
        for index, known in enumerate(self.sigmas[:-1]):
            if math.isclose(known, sigma, rel_tol=1e-5, abs_tol=1e-7):
                return self.noises[index].to(self.device)
        raise ValueError(f"sampler: this sampler carries the noises of the inverted schedule {self.sigmas}, but it "
                         f"was asked for σ={sigma:.6g}; sample with the invert node's sigmas output")


def regenerating_sampler(name: str, noises: Optional[list], sigmas: torch.Tensor):
    """The SAMPLER that regenerates the image: ComfyUI's own `name`, with the inversion's fixed noises if it has any."""
    if noises is None:
        return comfy.samplers.sampler_object(name)
    return comfy.samplers.ksampler(name, extra_options={"noise_sampler": FixedNoiseSampler(noises, sigmas)})


def noising(model):
    """add_noise(x0, n, σ): the model family's forward noising, as its samplers add noise (noise_scaling)."""
    sampling = model.get_model_object("model_sampling")

    def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
        return sampling.noise_scaling(torch.tensor(sigma), noise, x0, False)

    return add_noise


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


@dataclass
class Schedule:
    """The σ's to invert, and where KSamplerAdvanced starts on them (None for a user's SIGMAS)."""
    sigmas: torch.Tensor
    start_at_step: Optional[int]


def build_schedule(model, steps: int, scheduler: str, strength: float, sigmas: Optional[torch.Tensor]) -> Schedule:
    """The user's SIGMAS, or what KSamplerAdvanced samples with the same widgets: `scheduler`'s real schedule at
    `steps` (some schedulers return more or fewer steps, e.g. ddim_uniform at 6 gives 7) from
    start_at_step = steps − round(steps·strength) on."""
    if sigmas is not None:
        sigmas = sigmas.detach().float().cpu()
        validate_schedule(sigmas)
        return Schedule(sigmas, None)
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength: expected a value in (0, 1] (1 = invert all the way to noise), got {strength}")
    if steps < 1:
        raise ValueError(f"steps: expected at least 1, got {steps}")
    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise ValueError(f"scheduler: expected one of {', '.join(comfy.samplers.SCHEDULER_NAMES)}, got {scheduler!r}")
    full = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).float().cpu()
    if not torch.isfinite(full).all():
        raise ValueError(f"scheduler: {scheduler} at {steps} steps gives non-finite σ's {describe_sigmas(full)}; "
                         f"use more steps or another scheduler")
    start_at_step = steps - max(1, round(steps * strength))
    if start_at_step >= len(full) - 1:
        raise ValueError(f"strength: {scheduler} at {steps} steps gives a schedule of {len(full) - 1} steps, and "
                         f"start_at_step = steps − round(steps·strength) = {start_at_step} leaves none of it to invert "
                         f"(KSamplerAdvanced would return the latent unchanged); raise strength")
    schedule = full[start_at_step:]
    validate_schedule(schedule)
    return Schedule(schedule, start_at_step)


def validate_inputs(model, positive, negative, cfg: float, latent: dict) -> None:
    """Refuse inputs that cannot be inverted, naming the input, what was expected and what came."""
    family = model_family(model)
    if not math.isfinite(cfg):
        raise ValueError(f"cfg: expected a finite number, got {cfg}")
    samples = latent["samples"]
    if samples.is_nested or samples.ndim != 4:
        raise ValueError(f"latent: expected an image latent of shape (batch, channels, height, width), got shape "
                         f"{tuple(samples.shape)}; video (5-D), audio (3-D) and nested latents are not supported")
    if samples.numel() == 0:
        raise ValueError(f"latent: expected at least one latent of non-zero size, got shape {tuple(samples.shape)}")
    channels = model.get_model_object("latent_format").latent_channels
    if samples.shape[1] != channels:
        raise ValueError(f"latent: this model ({family}) expects {channels} latent channels, got "
                         f"{samples.shape[1]} (shape {tuple(samples.shape)}); encode the image with this model's VAE")
    if not torch.isfinite(samples).all():
        bad = int((~torch.isfinite(samples)).sum())
        raise ValueError(f"latent: expected finite values, got {bad} NaN/inf of {samples.numel()}")
    for name, conditioning in (("positive", positive), ("negative", negative)):
        if conditioning is None:
            continue
        for cond, _ in conditioning:
            if cond.shape[0] not in (1, samples.shape[0]):
                raise ValueError(f"{name}: expected a conditioning batch of 1 or {samples.shape[0]} (the latent's "
                                 f"batch), got {cond.shape[0]}")
    if negative is None and not math.isclose(cfg, 1.0):
        raise ValueError(f"negative: required when cfg ≠ 1 (got cfg={cfg}); connect a negative prompt or set cfg to 1")


class Seed:
    """An inverted seed as a NOISE for SamplerCustomAdvanced, carrying what downstream nodes need (§3).

    `noise` is x_N divided by what ComfyUI's noise_scaling multiplies a NOISE by at sigmas[0] (√(1+σ²) or σ
    for EPS/V, σ for flow), so it is a unit-variance seed; the rest says how to hand it back to a sampler.
    """

    def __init__(self, noise: torch.Tensor, sigmas: torch.Tensor, noise_factor: float, latent_factor: float,
                 family: str, latent_format, method: str, extras: Optional[dict] = None, sampler: str = "euler",
                 step_noises: Optional[list] = None):
        self.noise, self.sigmas = noise, sigmas
        self.noise_factor, self.latent_factor = noise_factor, latent_factor
        self.family, self.latent_format, self.method = family, latent_format, method
        self.extras = extras or {}
        self.sampler, self.step_noises = sampler, step_noises  # a stochastic sampler's fixed per-step noises
        self.seed = 0

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
            log.warning("seedfinder: a flow model keeps nothing of a LATENT at σ=%.3g; use the noise output "
                        "with SamplerCustomAdvanced and an empty latent", float(self.sigmas[0]))
            return self.latent_format.process_out(self.model_latent())
        return self.latent_format.process_out(self.model_latent() / self.latent_factor)

    def with_noise(self, noise: torch.Tensor, method: str, step_noises: Optional[list] = None) -> "Seed":
        """The same hand-off for another seed tensor (e.g. an interpolated batch) and its per-step noises."""
        return Seed(noise, self.sigmas, self.noise_factor, self.latent_factor, self.family, self.latent_format,
                    method, sampler=self.sampler, step_noises=step_noises)

    def regenerating_sampler(self):
        """The SAMPLER that turns this seed back into its image(s)."""
        return regenerating_sampler(self.sampler, self.step_noises, self.sigmas)


@dataclass
class Inversion:
    """An inversion's hand-off to ComfyUI's samplers, with what it cost."""
    latent: dict
    noise: Seed
    sigmas: torch.Tensor
    result: InversionResult
    family: str
    latent_rms: float
    """RMS of the image latent in the model's space (the scale the residuals are measured in)."""


class SolverSampler(comfy.samplers.Sampler):
    """Runs a solver where ComfyUI runs a sampler, with the guider as the denoiser D(x, σ)."""

    def __init__(self, method: InversionMethod, on_event: Callable[[dict], None]):
        self.method, self.on_event = method, on_event
        self.nonfinite_at: Optional[float] = None
        """The first σ at which the guided model returned NaN/inf, if it did."""

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        ones = latent_image.new_ones(latent_image.shape[0])

        def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
            denoised = model_wrap(x, sigma * ones, **extra_args)
            if self.nonfinite_at is None and not torch.isfinite(denoised).all():
                self.nonfinite_at = sigma
            return denoised

        def input_scale(sigma: float) -> float:
            return float(sampling.calculate_input(torch.tensor(sigma), torch.ones(())))

        self.result = self.method(denoise, latent_image, sigmas, input_scale=input_scale, callback=self.on_event)
        max_denoise = self.max_denoise(model_wrap, sigmas)
        unit = torch.ones(())
        # noise_scaling is linear in (noise, latent): its two coefficients are what the samplers multiply by.
        self.noise_factor = float(sampling.noise_scaling(sigmas[0], unit, torch.zeros(()), max_denoise))
        self.latent_factor = float(sampling.noise_scaling(sigmas[0], torch.zeros(()), unit, max_denoise))
        return self.result.latent


def progress_reporter(steps: int) -> Callable[[dict], None]:
    """ProgressBar per step; checks for interruption after every model evaluation."""
    bar = comfy.utils.ProgressBar(steps)

    def on_event(event: dict) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(event["step"], steps)

    return on_event


def iteration_reporter(total: int) -> Callable[[int], None]:
    """ProgressBar over an optimisation's iterations (it stops early), checking for interruption each one."""
    bar = comfy.utils.ProgressBar(total)

    def on_iteration(iteration: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(iteration + 1, total)

    return on_iteration


def run_guided(method: InversionMethod, model, positive, negative, cfg: float, latent: dict, sigmas: torch.Tensor,
               needs_gradient: bool = False) -> SolverSampler:
    """Run `method` on `latent` with D = CFGGuider(model, positive, negative, cfg) over `sigmas`.

    Returns the sampler: `.result` (the method's InversionResult, latent in model space), `.output` (that latent
    in the LATENT format, as a sampler's output), `.noise_factor` and `.latent_factor` (what a stock sampler
    multiplies a NOISE and a LATENT by at sigmas[0]).
    """
    validate_inputs(model, positive, negative, cfg, latent)
    guider = comfy.samplers.CFGGuider(differentiable(model) if needs_gradient else model)
    conds = {"positive": positive} if negative is None else {"positive": positive, "negative": negative}
    guider.inner_set_conds(conds)
    guider.set_cfg(cfg)
    steps = len(sigmas) - 1
    sampler = SolverSampler(method, progress_reporter(steps))
    samples = latent["samples"]
    zeros = torch.zeros(samples.shape, dtype=samples.dtype, device="cpu")
    sampler.output = guider.sample(zeros, samples, sampler, sigmas, disable_pbar=True, seed=0)
    comfy.utils.ProgressBar(steps).update_absolute(steps, steps)
    finals = [min(trace) for trace in sampler.result.residuals if trace]
    if not (torch.isfinite(sampler.result.latent).all() and torch.isfinite(sampler.output).all()
            and all(math.isfinite(r) for r in finals)):
        raise ValueError(nonfinite_cause(model, samples, cfg, sampler.nonfinite_at))
    return sampler


LATENT_RANGE = 1e3
"""No VAE encodes an image to model-space values beyond this (SD-class latents stay within about ±10)."""


def nonfinite_cause(model, samples: torch.Tensor, cfg: float, nonfinite_at: Optional[float]) -> str:
    """Why a run produced NaN/inf, naming the input most likely at fault (never let it pass as a result)."""
    peak = float(model.get_model_object("latent_format").process_in(samples.float()).abs().max())
    if peak > LATENT_RANGE:
        return (f"latent: values up to {peak:.3g} (in the model's latent space) made the result NaN/inf; an image "
                f"latent from a VAE stays within about ±{LATENT_RANGE:g}. Check what feeds the latent")
    if nonfinite_at is not None:
        return (f"model: returned NaN/inf at σ={nonfinite_at:.4g} (cfg={cfg:g}); a half-precision overflow is the "
                f"usual cause: load the model with weight_dtype default, or lower cfg")
    return (f"cfg: the solver diverged to NaN/inf at cfg={cfg:g} though every model output was finite; lower cfg "
            f"or use more steps")


def run_inversion(method: InversionMethod, model, positive, negative, cfg: float, latent: dict,
                  sigmas: torch.Tensor, needs_gradient: bool = False, method_name: str = "",
                  sampler_name: str = "euler", step_noises: Optional[list] = None) -> Inversion:
    """Invert `latent` with `method` through CFGGuider(model, positive, negative, cfg) over `sigmas`."""
    if latent.get("noise_mask") is not None:
        raise ValueError("latent: carries a noise_mask (Set Latent Noise Mask, VAE Encode for Inpainting), which a "
                         "seed cannot carry: a masked sampler would keep the seed, not the image, outside the mask. "
                         "Invert the unmasked latent; for a masked edit give SamplerCustomAdvanced this node's noise "
                         "output and the masked source latent as latent_image")
    sampler = run_guided(method, model, positive, negative, cfg, latent, sigmas, needs_gradient)
    result = sampler.result
    seed = Seed((result.latent / sampler.noise_factor).float().cpu(), sigmas, sampler.noise_factor,
                sampler.latent_factor, model_family(model), model.get_model_object("latent_format"), method_name,
                {key: value.cpu() if torch.is_tensor(value) else value for key, value in result.extras.items()},
                sampler_name, step_noises)
    out = dict(latent)
    out["samples"] = seed.as_latent().to(comfy.model_management.intermediate_device())
    latent_rms = float(rms(seed.latent_format.process_in(latent["samples"].float())).max())
    return Inversion(latent=out, noise=seed, sigmas=sigmas, result=result, family=seed.family, latent_rms=latent_rms)


POOR_ROUND_TRIP = 0.05
"""A round-trip estimate above this (5 % of the latent's RMS) is said on the node: the seed will not give the image
back faithfully (FixedPoint at its defaults estimates 0.005-0.03 on the test models; DDIM 0.5-5)."""


def summary(inversion: Inversion, method: str, started_at_step: Optional[int], sampler: str = "euler",
            exact: bool = False) -> dict:
    """The node's `ui` data: residual trace, evaluations, how to wire the hand-off and a warning when the seed will
    not give the image back (JSON-safe numbers). Exact methods' residuals are their pair's gaps, not step errors."""
    result = inversion.result
    final = [min(trace) if trace else 0.0 for trace in result.residuals]
    # first order: each step's leftover residual shifts the regenerated latent by about that much; how the
    # sampler's later steps amplify it is not counted
    estimate = 0.0 if exact else sum(final) / max(inversion.latent_rms, 1e-12)
    report = {
        "method": method,
        "family": inversion.family,
        "sampler": sampler,
        "steps": len(inversion.sigmas) - 1,
        "start_at_step": started_at_step,
        "evaluations": result.evaluations,
        # an iterate can overshoot to inf before the step converges; JSON has no inf
        "residuals": [[r if math.isfinite(r) else None for r in trace] for trace in result.residuals],
        "final_residual": final,
        "round_trip_estimate": estimate,
        "sigmas": [float(s) for s in inversion.sigmas],
    }
    if estimate > POOR_ROUND_TRIP:
        report["warning"] = (f"round trip ≈ {estimate:.2g} of the latent: this seed will not give the image back "
                             f"faithfully. Use FixedPoint Invert with more max_iterations, more steps, or a lower cfg")
        log.warning("seedfinder: %s inversion: %s", method, report["warning"])
    return report
