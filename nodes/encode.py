"""Prompt-Aware Encode: the FPI paper's prompt-aware adjustment of a real image's latent (docs/methods.md §8)."""
from functools import partial

from comfy_api.latest import io

from ..solvers.prompt_aware import MODES, PromptAwareOptions, cycle_schedule, prompt_aware_adjust
from . import host
from .common import CATEGORY

PROMPT_AWARE = PromptAwareOptions()


class PromptAwareEncode(io.ComfyNode):
    OPTIONS = PromptAwareOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderPromptAwareEncode",
            display_name="Prompt-Aware Encode",
            category=CATEGORY,
            description="Encodes an image (or takes a latent) and runs a short noising/denoising cycle at the smallest "
                        "noise levels with the inversion prompt and cfg (Meiri, Samuel et al. 2023 §3.3), so the "
                        "latent is one the sampler can reach. Feed its latent to any invert node with the same "
                        "prompt, cfg and schedule.",
            inputs=[
                io.Model.Input("model", tooltip="The model the inversion will use."),
                io.Conditioning.Input("positive", tooltip="The prompt the inversion will use."),
                io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt; needed when cfg ≠ 1."),
                io.Image.Input("image", optional=True, tooltip="The image to encode (connect vae too); or connect "
                               "`latent` instead."),
                io.Vae.Input("vae", optional=True, tooltip="The VAE that encodes `image`."),
                io.Latent.Input("latent", optional=True, tooltip="An already encoded latent, instead of image+vae."),
                io.Int.Input("steps", default=20, min=1, max=1000, tooltip="Steps of the inversion's schedule."),
                io.Combo.Input("scheduler", options=host.SCHEDULER_NAMES, default="simple",
                               tooltip="Scheduler of the inversion's schedule."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the cycle: use the inversion's cfg."),
                io.Int.Input("depth", default=PROMPT_AWARE.depth, min=1, max=1000,
                             tooltip="How many of the schedule's smallest-σ steps the cycle spans (the authors: 2)."),
                io.Int.Input("cycles", default=PROMPT_AWARE.cycles, min=1, max=20,
                             tooltip="How many noising/denoising cycles."),
                io.Combo.Input("mode", options=list(MODES), default=PROMPT_AWARE.mode,
                               tooltip="seeded: one Gaussian jump to the top of the cycle, as the authors' code; "
                               "inverted: deterministic DDIM-inversion steps up, as the paper describes."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=False,
                             tooltip="Seed of the Gaussian noise in seeded mode (same seed, same latent)."),
                io.Sigmas.Input("sigmas", optional=True, tooltip="The inversion's schedule, if it uses a SIGMAS input; "
                                "overrides steps and scheduler."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The adjusted latent, for any invert node.")],
        )

    @classmethod
    def execute(cls, model, positive, steps, scheduler, cfg, depth, cycles, mode, seed, negative=None, image=None,
                vae=None, latent=None, sigmas=None) -> io.NodeOutput:
        if (image is None) == (latent is None):
            got = "both" if image is not None else "neither"
            raise ValueError(f"image/latent: connect either an image (with its vae) or an encoded latent, got {got}")
        if image is not None:
            if vae is None:
                raise ValueError("vae: required to encode `image`, got nothing connected")
            latent = {"samples": vae.encode(image[:, :, :, :3])}
        options = PromptAwareOptions(depth, cycles, mode)
        schedule = cycle_schedule(host.build_schedule(model, steps, scheduler, 1.0, sigmas).sigmas, depth)
        shape = latent["samples"].shape
        noises = host.fixed_noises(tuple(shape), cycles, seed) if mode == "seeded" else None
        method = partial(prompt_aware_adjust, options=options, noises=noises, add_noise=host.noising(model))
        run = host.run_guided(method, model, host.Prompt(positive, negative, cfg), latent, schedule)
        raw, adjusted = latent["samples"].float().cpu(), run.output.float().cpu()
        distance = (adjusted - raw).flatten(1).norm(dim=1)
        ui = {"seedfinder": [{
            "method": "prompt_aware", "mode": mode, "evaluations": run.result.evaluations,
            "sigmas": [float(s) for s in schedule], "l2_distance": distance.tolist(),
            "relative_distance": (distance / raw.flatten(1).norm(dim=1)).tolist(),
        }]}
        out = dict(latent)  # a noise_mask stays: the adjusted latent is still the image, for a masked sampler too
        out["samples"] = adjusted
        return io.NodeOutput(out, ui=ui)


NODES = [PromptAwareEncode]
