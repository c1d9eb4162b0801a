"""The model family: which of ComfyUI's prediction types a MODEL samples with, and what follows from it (the noising
step's prior, the stochastic samplers' step rules, the forward noising)."""
import math

import comfy.model_sampling
import torch

from ...solvers import Stepping, StepRule, flow_transition_prior, sampler_rule, sampler_stepper, ve_transition_prior

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


def sampler_steps(model, sampler: str, noises=None) -> Stepping:
    """How ComfyUI's sampler `sampler` steps on this model: its step rule with the fixed per-step `noises` (euler,
    euler_ancestral, lcm) or its stages (heun, dpm_2, the multistep samplers, which ComfyUI runs alike for every
    family)."""
    stepper = sampler_stepper(sampler)
    if stepper is not None:
        return Stepping(stepper=stepper, noises=noises)
    return Stepping(rule=step_rule(model, sampler), noises=noises)


def noising(model):
    """add_noise(x0, n, σ): the model family's forward noising, as its samplers add noise (noise_scaling)."""
    sampling = model.get_model_object("model_sampling")

    def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
        return sampling.noise_scaling(torch.tensor(sigma), noise, x0, False)

    return add_noise


def model_space(model, latent: dict) -> torch.Tensor:
    """A LATENT's samples in the model's space (its latent format's process_in), float32 on the CPU."""
    return model.get_model_object("latent_format").process_in(latent["samples"].float().cpu())


def require_flow(model, method: str) -> None:
    """Refuse a model that is not rectified flow (CONST): `method` is one of the flow models' own methods."""
    family = model_family(model)
    if family != "CONST":
        raise ValueError(f"model: {method} needs a rectified-flow model (CONST sampling: SD3, Flux, HiDream, Wan, "
                         f"or any model through ModelSamplingSD3/ModelSamplingFlux), got {family}; invert this model "
                         f"with FixedPoint Invert instead")


def sampling_shift(model) -> float:
    """The flow model's timestep shift factor s in σ = s·t/(1 + (s − 1)·t): ModelSamplingSD3's `shift`, e^μ for
    ModelSamplingFlux's μ; 1 (no shift) for other samplings."""
    sampling = model.get_model_object("model_sampling")
    shift = float(getattr(sampling, "shift", 1.0))
    return math.exp(shift) if isinstance(sampling, comfy.model_sampling.ModelSamplingFlux) else shift
