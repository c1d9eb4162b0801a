"""DDIM Invert and FixedPoint Invert: the baseline and fixed-point inversion (FPI)."""
from comfy_api.latest import io

from ..solvers import ddim_invert, fixed_point_invert
from .common import CATEGORY, bind, invert_inputs, invert_outputs, run_invert_node


class DDIMInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderDDIMInvert",
            display_name="DDIM Invert",
            category=CATEGORY,
            description="Classic DDIM inversion: one model evaluation per step, the model seeing each latent at the "
                        "next noise level. Fast but approximate; the baseline the other inverters are measured against.",
            inputs=invert_inputs(),
            outputs=invert_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, latent, steps, scheduler, cfg, strength, negative=None,
                sigmas=None) -> io.NodeOutput:
        return run_invert_node("ddim", ddim_invert, model, positive, latent, steps, scheduler, cfg, strength,
                               negative, sigmas)


class FixedPointInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderFixedPointInvert",
            display_name="FixedPoint Invert",
            category=CATEGORY,
            description="Fixed-point inversion (Meiri, Samuel et al. 2023): solves each step's implicit equation so "
                        "that ComfyUI's euler sampler walks back to the image. Stops early once the residual is "
                        "under the tolerance.",
            inputs=invert_inputs() + [
                io.Int.Input("max_iterations", default=20, min=1, max=200,
                             tooltip="Most model evaluations per step. 1 equals DDIM inversion."),
                io.Float.Input("tolerance", default=1e-4, min=0.0, max=1.0, step=1e-5, round=False,
                               tooltip="Stop a step once the RMS residual ‖T(y) − y‖/√numel of every latent in the "
                               "batch is at or under this (in model latent units); 0 always runs max_iterations."),
            ],
            outputs=invert_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, latent, steps, scheduler, cfg, strength, max_iterations, tolerance,
                negative=None, sigmas=None) -> io.NodeOutput:
        method = bind(fixed_point_invert, max_iterations=max_iterations, tolerance=tolerance)
        return run_invert_node("fixed_point", method, model, positive, latent, steps, scheduler, cfg, strength,
                               negative, sigmas)
