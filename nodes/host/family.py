"""The model family: which of ComfyUI's prediction types a MODEL samples with, and what follows from it (the noising
step's prior, the stochastic samplers' step rules, the forward noising)."""
import math
from dataclasses import dataclass

import comfy.model_sampling
import torch

from ...solvers import TRANSITION_PRIORS, Noising, Stepping, StepRule, sampler_rule, sampler_stepper, sampler_stepping
from ...solvers.rnri import Prior


@dataclass(frozen=True)
class Family:
    """One of ComfyUI's prediction types, and what inversion takes from it."""
    name: str
    """The name in node summaries and on seeds (ComfyUI's class name)."""
    sampling: type
    """ComfyUI's model-sampling class (model.get_model_object("model_sampling") is an instance of it)."""
    noising: Noising
    """How its samplers noise a latent: which noising prior RNRI takes and which stochastic step rules apply."""

    @property
    def prior(self) -> Prior:
        """The Gaussian prior of one noising step in this family's σ space (RNRI's regulariser)."""
        return TRANSITION_PRIORS[self.noising]

    def rule(self, sampler: str) -> StepRule:
        """How ComfyUI's sampler `sampler` (euler, euler_ancestral, lcm) steps for this family."""
        return sampler_rule(sampler, self.noising)


FAMILIES = (  # most specific first: EDM subclasses V_PREDICTION, which (like X0) subclasses EPS
    Family("EDM", comfy.model_sampling.EDM, Noising.VE),
    Family("V_PREDICTION", comfy.model_sampling.V_PREDICTION, Noising.VE),
    Family("X0", comfy.model_sampling.X0, Noising.VE),
    Family("EPS", comfy.model_sampling.EPS, Noising.VE),
    Family("CONST", comfy.model_sampling.CONST, Noising.FLOW),
    Family("COSMOS_RFLOW", comfy.model_sampling.COSMOS_RFLOW, Noising.VE),
)
"""Every family Seedfinder inverts. Both routes hand a seed back for every family; the LATENT route keeps nothing of
the seed where a flow schedule starts at σ = 1 (docs/architecture.md §5)."""


def family_of(model) -> Family:
    """The family of ComfyUI's model sampling (EPS, V_PREDICTION, EDM, X0, CONST = flow, COSMOS_RFLOW).

    Every inverter needs only D(x, σ) and the family's noise_scaling, but a sampling class outside these (another
    pack's) may noise differently; it is refused rather than inverted with a guessed prior.
    """
    sampling = model.get_model_object("model_sampling")
    for family in FAMILIES:
        if isinstance(sampling, family.sampling):
            return family
    known = ", ".join(family.name for family in FAMILIES)
    raise ValueError(f"model: expected a model whose sampling is one of ComfyUI's prediction types ({known}), got "
                     f"{[base.__name__ for base in type(sampling).__mro__[1:-1]]}; Seedfinder cannot tell how it "
                     f"adds noise")


def model_family(model) -> str:
    """The name of the model's family."""
    return family_of(model).name


def noising_prior(model) -> Prior:
    """The Gaussian prior of one noising step in this model family's σ space (RNRI's regulariser)."""
    return family_of(model).prior


def step_rule(model, sampler: str) -> StepRule:
    """How ComfyUI's sampler `sampler` steps for this model's family (flow models have their own ancestral step)."""
    return family_of(model).rule(sampler)


def sampler_steps(model, sampler: str, noises=None) -> Stepping:
    """How ComfyUI's sampler `sampler` steps on this model: its step rule with the fixed per-step `noises` (euler,
    euler_ancestral, lcm) or its stages (heun, dpm_2, the multistep samplers, which ComfyUI runs alike for every
    family)."""
    if sampler_stepper(sampler) is not None:
        return sampler_stepping(sampler, noises)
    return sampler_stepping(sampler, noises, step_rule(model, sampler))


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
    family = family_of(model)
    if family.noising is not Noising.FLOW:
        raise ValueError(f"model: {method} needs a rectified-flow model (CONST sampling: SD3, Flux, HiDream, Wan, "
                         f"or any model through ModelSamplingSD3/ModelSamplingFlux), got {family.name}; invert this "
                         f"model with FixedPoint Invert instead")


def sampling_shift(model) -> float:
    """The flow model's timestep shift factor s in σ = s·t/(1 + (s − 1)·t): ModelSamplingSD3's `shift`, e^μ for
    ModelSamplingFlux's μ; 1 (no shift) for other samplings."""
    sampling = model.get_model_object("model_sampling")
    shift = float(getattr(sampling, "shift", 1.0))
    return math.exp(shift) if isinstance(sampling, comfy.model_sampling.ModelSamplingFlux) else shift


def timestep_sigmas(model, timesteps: torch.Tensor) -> torch.Tensor:
    """σ(t) of the model's sampling at the given timesteps (float32 on the CPU)."""
    return model.get_model_object("model_sampling").sigma(timesteps.to(torch.float32)).float().cpu()
