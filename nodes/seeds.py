"""Seed Interpolate and Seed Centroid: move between inverted seeds (NAO, Samuel et al. NeurIPS 2023); SeedSelect:
refine a seed toward a few reference images (Samuel et al. AAAI 2024)."""
import torch
from comfy_api.latest import io

from ..solvers.interpolation import (
    CENTROIDS,
    NAO_CENTROID_ITERATIONS,
    NAO_PATH_ITERATIONS,
    PATHS,
    CentroidOptions,
    PathOptions,
    centroid,
    interpolate,
)
from ..solvers.seed_select import SeedSelectOptions
from . import host
from .common import CATEGORY


def checked_seed(name: str, seed) -> "host.Seed":
    """An invert node's seed, refused with a clear message if it is any other NOISE or an exact method's pair."""
    if not isinstance(seed, host.Seed):
        raise ValueError(f"{name}: expected the noise output of a Seedfinder invert node, got {type(seed).__name__}")
    if seed.pair is not None:
        raise ValueError(f"{name}: a {seed.method} seed is a pair tied to its own sampler and cannot be "
                         f"interpolated; use a seed from DDIM, FixedPoint or RNRI Invert")
    return seed


def check_compatible(first: "host.Seed", second: "host.Seed", name: str) -> None:
    """Seeds from different shapes, model families or schedules cannot share one hand-off."""
    if first.noise.shape[1:] != second.noise.shape[1:]:
        raise ValueError(f"{name}: expected a seed of shape {tuple(first.noise.shape[1:])} like the first, got "
                         f"{tuple(second.noise.shape[1:])}")
    if first.family != second.family or type(first.latent_format) is not type(second.latent_format):
        raise ValueError(f"{name}: expected a seed of the same model ({first.family}, "
                         f"{type(first.latent_format).__name__}), got {second.family}, "
                         f"{type(second.latent_format).__name__}")
    if first.sampler != second.sampler:
        raise ValueError(f"{name}: expected a seed inverted for the same sampler ({first.sampler}), got "
                         f"{second.sampler}")
    if first.sigmas.shape != second.sigmas.shape or not torch.allclose(first.sigmas, second.sigmas):
        raise ValueError(f"{name}: expected a seed inverted over the same schedule {first.sigmas.tolist()}, got "
                         f"{second.sigmas.tolist()}")


# A stochastic sampler's per-step noises follow the seeds: NAO's optimisation is for the seed itself; the noises,
# Gaussian too, take the norm-keeping closed forms (slerp, normalized mean); lerp and mean apply as asked.
STEP_NOISE_PATH = {"lerp": "lerp", "slerp": "slerp", "nao": "slerp"}
STEP_NOISE_CENTROID = {"mean": "mean", "normalized_mean": "normalized_mean", "nao": "normalized_mean"}


def outputs(seed: "host.Seed") -> io.NodeOutput:
    """The same hand-offs as an invert node: LATENT, NOISE, SIGMAS and the SAMPLER (with its per-step noises)."""
    if not torch.isfinite(seed.noise).all():
        raise ValueError(f"method: {seed.method} produced NaN/inf from finite seeds; use slerp")
    return io.NodeOutput({"samples": seed.as_latent()}, seed, seed.sigmas, seed.regenerating_sampler())


def seed_outputs() -> list:
    return [io.Latent.Output(display_name="latent", tooltip="The seeds as a latent batch, for KSamplerAdvanced "
                             "(add_noise disabled, the invert node's steps, scheduler and cfg)."),
            io.Noise.Output(display_name="noise", tooltip="The seeds as NOISE, for SamplerCustomAdvanced with an "
                            "empty latent of this batch size and the sigmas output."),
            io.Sigmas.Output(display_name="sigmas", tooltip="The schedule the seeds were inverted over."),
            io.Sampler.Output(display_name="sampler", tooltip="The sampler the seeds were inverted for; with "
                              "euler_ancestral or lcm it carries per-frame per-step noises that follow the seeds.")]


PATH, CENTROID = PathOptions(), CentroidOptions()


class SeedInterpolate(io.ComfyNode):
    OPTIONS = PathOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderSeedInterpolate",
            display_name="Seed Interpolate",
            category=CATEGORY,
            description="Frames between two inverted seeds, first and last exactly the inputs: lerp, slerp, or the "
                        "norm-aware path (NAO, Samuel et al. 2023) that stays where Gaussian seeds live. Sample the "
                        "batch with the stock sampler to morph between the two images.",
            inputs=[
                io.Noise.Input("seed_a", tooltip="The noise output of an invert node (first frame)."),
                io.Noise.Input("seed_b", tooltip="The noise output of an invert node on the same model, size and "
                               "schedule (last frame)."),
                io.Int.Input("frames", default=PATH.frames, min=2, max=256,
                             tooltip="Frames in the batch, endpoints included."),
                io.Combo.Input("method", options=list(PATHS), default=PATH.method,
                               tooltip="lerp: straight line (its middle has too small a norm, so images wash out); "
                               "slerp: great circle; nao: the most likely path under the seeds' Gaussian prior."),
            ],
            outputs=seed_outputs(),
        )

    @classmethod
    def execute(cls, seed_a, seed_b, frames, method) -> io.NodeOutput:
        first, second = checked_seed("seed_a", seed_a), checked_seed("seed_b", seed_b)
        check_compatible(first, second, "seed_b")
        for name, seed in (("seed_a", first), ("seed_b", second)):
            if seed.noise.shape[0] != 1:
                raise ValueError(f"{name}: expected a single seed (batch 1), got a batch of {seed.noise.shape[0]}")
        progress = host.iteration_reporter(NAO_PATH_ITERATIONS)
        path = interpolate(first.noise, second.noise, frames, method, callback=progress)
        step_noises = None if first.step_noises is None else [
            interpolate(a, b, frames, STEP_NOISE_PATH[method]) for a, b in zip(first.step_noises,
                                                                                  second.step_noises)]
        return outputs(first.with_noise(path, f"interpolate_{method}", step_noises))


class SeedCentroid(io.ComfyNode):
    OPTIONS = CentroidOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderSeedCentroid",
            display_name="Seed Centroid",
            category=CATEGORY,
            description="One seed at the centre of a batch of inverted seeds (e.g. several images inverted "
                        "together): their mean, the mean pulled back to the seeds' norm, or NAO's centroid.",
            inputs=[
                io.Noise.Input("seeds", tooltip="The noise output of an invert node run on a batch of images."),
                io.Combo.Input("method", options=list(CENTROIDS), default=CENTROID.method,
                               tooltip="mean: the average (too small a norm for a Gaussian seed); normalized_mean: "
                               "the average rescaled to the seeds' mean norm; nao: the most likely centroid and "
                               "paths to it under the seeds' Gaussian prior."),
            ],
            outputs=seed_outputs(),
        )

    @classmethod
    def execute(cls, seeds, method) -> io.NodeOutput:
        batch = checked_seed("seeds", seeds)
        center = centroid(batch.noise, method, callback=host.iteration_reporter(NAO_CENTROID_ITERATIONS))
        step_noises = None if batch.step_noises is None else [
            centroid(noise, STEP_NOISE_CENTROID[method]) for noise in batch.step_noises]
        return outputs(batch.with_noise(center, f"centroid_{method}", step_noises))


SEED_SELECT = SeedSelectOptions()


class SeedSelect(io.ComfyNode):
    OPTIONS = SeedSelectOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderSeedSelect",
            display_name="SeedSelect",
            category=CATEGORY,
            description="Refine a seed (e.g. Seed Centroid's) by gradient steps so that the image euler generates "
                        "from it matches a few reference images: a semantic term (where-independent statistics of the "
                        "latent, standing in for CLIP) and an appearance term (distance to the references' mean "
                        "latent), as SeedSelect (Samuel et al. 2024) does for rare concepts. The gradient runs "
                        "through the whole sampler, each step checkpointed.",
            inputs=[
                io.Model.Input("model", tooltip="The model the seed was inverted with."),
                io.Conditioning.Input("positive", tooltip="The prompt to generate with (the concept's)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The negative prompt; required when cfg ≠ 1."),
                io.Float.Input("cfg", default=SEED_SELECT.cfg, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance the images are generated with here and afterwards (the authors: 1 "
                                       "from a NAO centroid)."),
                io.Noise.Input("seed", tooltip="The noise output of Seed Centroid (or of DDIM, FixedPoint or RNRI "
                               "Invert): one seed for euler."),
                io.Latent.Input("references", tooltip="The reference images encoded by this model's VAE, a batch at "
                                "the seed's size."),
                io.Int.Input("iterations", default=SEED_SELECT.iterations, min=1, max=200,
                             tooltip="Gradient steps; each costs about 3× the sampler's evaluations (forward, "
                             "recomputation, backward). The authors: 5 from a NAO centroid, 30 from a random seed."),
                io.Float.Input("learning_rate", default=SEED_SELECT.learning_rate, min=0.0, max=1.0, step=0.005,
                               tooltip="AdamW's step on the unit-variance seed; a tenth of it from the 4th step "
                               "(the authors' schedule)."),
                io.Float.Input("semantic_weight", default=SEED_SELECT.semantic_weight, min=0.0, max=1000.0, step=0.5,
                               tooltip="Weight of the semantic term against the appearance term's "
                               f"{SEED_SELECT.appearance_weight:g} (the authors: 10)."),
            ],
            outputs=seed_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, cfg, seed, references, iterations, learning_rate, semantic_weight,
                negative=None) -> io.NodeOutput:
        options = SeedSelectOptions(iterations, learning_rate, semantic_weight, cfg)
        refined, result = host.run_seed_select(model, host.Prompt(positive, negative, options.cfg),
                                               checked_seed("seed", seed), references, options)
        out = outputs(refined)
        losses = result.extras["losses"]
        return io.NodeOutput(*out.args, ui={"seedfinder": [{"method": "seed_select", "losses": losses,
                                                            "evaluations": result.evaluations}]})


NODES = [SeedInterpolate, SeedCentroid, SeedSelect]
