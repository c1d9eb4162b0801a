"""EDICT Invert and BDIA Invert: exact inversion, with the coupled samplers that undo it."""
from functools import partial

import comfy.samplers
import torch
from comfy_api.latest import io

from ..solvers import describe_sigmas
from ..solvers.exact import PRECISIONS, bdia_generate, bdia_invert, edict_generate, edict_invert
from .common import CATEGORY, invert, invert_inputs, invert_outputs, schedule_of


class CoupledSampler(comfy.samplers.Sampler):
    """Regenerates an EDICT or BDIA seed with the matching coupled rule (SamplerCustom / SamplerCustomAdvanced).

    The partner latent and the full-precision state travel inside; the start the sampler receives (from the LATENT
    or the NOISE route) must be this seed. Other prompts or cfg edit; the same ones reconstruct exactly.
    """

    def __init__(self, seed, generate):
        self.seed, self.generate = seed, generate

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        inverted = self.seed.sigmas
        if sigmas.shape != inverted.shape or not torch.allclose(sigmas.float().cpu(), inverted, rtol=1e-5, atol=1e-7):
            raise ValueError(f"sigmas: this {self.seed.method} sampler regenerates its seed over the schedule it was "
                             f"inverted on ({len(inverted) - 1} steps, {describe_sigmas(inverted)}), got "
                             f"{len(sigmas) - 1} steps, {describe_sigmas(sigmas.float().cpu())}; connect the invert "
                             f"node's sigmas output to the sampler's sigmas")
        start = sampling.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
        state, partner = self.seed.extras["state"], self.seed.extras["partner"]
        if tuple(start.shape) != tuple(state.shape):
            raise ValueError(f"sampler: this {self.seed.method} sampler regenerates a seed of shape "
                             f"{tuple(state.shape)}, got a start of shape {tuple(start.shape)}")
        if not torch.allclose(start.float().cpu(), state.float(), rtol=1e-4, atol=1e-4 * float(state.abs().max())):
            raise ValueError(f"noise: this {self.seed.method} sampler only regenerates the seed its invert node "
                             f"made, from that node's latent output (add_noise off) or its noise output with an "
                             f"empty latent; it got another start latent")
        ones = latent_image.new_ones(latent_image.shape[0])

        def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
            return model_wrap(x, sigma * ones, **extra_args)

        def input_scale(sigma: float) -> float:
            return float(sampling.calculate_input(torch.tensor(sigma), torch.ones(())))

        def progress(event: dict) -> None:
            if callback is not None:
                callback(event["step"], start, start, event["steps"])

        device = latent_image.device
        x = self.generate(denoise, state.to(device), partner.to(device), sigmas, input_scale=input_scale,
                          callback=progress, model_dtype=latent_image.dtype)
        if not torch.isfinite(x).all():
            raise ValueError(f"sampler: the {self.seed.method} regeneration diverged to NaN/inf. With other prompts or "
                             f"cfg than the inversion's, a small mix/gamma amplifies the difference at every step: "
                             f"raise it, or lower cfg")
        return sampling.inverse_noise_scaling(sigmas[-1], x.to(latent_image.dtype))


def edict_pair(denoise, state, partner, sigmas, mix, **kwargs):
    """EDICT generation returning the first latent of the pair."""
    return edict_generate(denoise, state, partner, sigmas, mix=mix, **kwargs)[0]


def exact_inputs(weight: io.Input) -> list:
    return invert_inputs() + [weight, io.Combo.Input(
        "precision", options=list(PRECISIONS), default="float64",
        tooltip="Solver state precision. float64 (the authors' choice) keeps the round trip exact to ~1e-7 "
        "whatever the steps; float32 is as fast but lets round-off grow by 1/mix (1/gamma) per step.")]


def exact_outputs() -> list:
    return invert_outputs() + [io.Sampler.Output(display_name="sampler", tooltip="The coupled sampler that "
                                                 "regenerates this seed exactly (SamplerCustom/SamplerCustomAdvanced"
                                                 " with the sigmas output); with other prompts it edits.")]


def run_exact(name: str, method, generate, **inputs) -> io.NodeOutput:
    inversion, ui = invert(name, method, schedule_of(inputs), inputs, exact=True)
    return io.NodeOutput(inversion.latent, inversion.noise, inversion.sigmas,
                         CoupledSampler(inversion.noise, generate), ui=ui)


class EDICTInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderEDICTInvert",
            display_name="EDICT Invert",
            category=CATEGORY,
            description="EDICT (Wallace et al. 2023): two coupled latents make the sampler exactly invertible, at 2 "
                        "model evaluations per step. Regenerate with its sampler output: the round trip is exact to "
                        "floating point.",
            inputs=exact_inputs(io.Float.Input("mix", default=0.93, min=0.01, max=1.0, step=0.01,
                                               tooltip="Mixing weight p of the two latents, in (0, 1]; the authors "
                                               "use 0.93. Lower keeps the pair closer but amplifies round-off.")),
            outputs=exact_outputs(),
        )

    @classmethod
    def execute(cls, mix, precision, **inputs) -> io.NodeOutput:
        method = partial(edict_invert, mix=mix, precision=precision)
        return run_exact("edict", method, partial(edict_pair, mix=mix), **inputs)


class BDIAInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderBDIAInvert",
            display_name="BDIA Invert",
            category=CATEGORY,
            description="BDIA (Zhang, Lewis, Kleijn 2024): a bi-directional sampler whose inverse is explicit, at 1 "
                        "model evaluation per step. Regenerate with its sampler output: the round trip is exact to "
                        "floating point.",
            inputs=exact_inputs(io.Float.Input("gamma", default=0.96, min=0.01, max=1.0, step=0.01,
                                               tooltip="Weight γ of the backward correction, > 0; the authors "
                                               "recommend 0.92-1.0 for round-trip editing.")),
            outputs=exact_outputs(),
        )

    @classmethod
    def execute(cls, gamma, precision, **inputs) -> io.NodeOutput:
        method = partial(bdia_invert, gamma=gamma, precision=precision)
        return run_exact("bdia", method, partial(bdia_generate, gamma=gamma), **inputs)


NODES = [EDICTInvert, BDIAInvert]
