"""The invert nodes: DDIM (the baseline), FixedPoint (FPI) and RNRI."""
from comfy_api.latest import io

from ..solvers import ddim_invert, fixed_point_invert
from ..solvers.rnri import GRADIENTS as RNRI_GRADIENTS, rnri_invert
from .common import CATEGORY, bind, invert_inputs, invert_outputs, run_invert_node
from .host import noising_prior


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


class RNRIInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderRNRIInvert",
            display_name="RNRI Invert",
            category=CATEGORY,
            description="Regularized Newton-Raphson inversion (Samuel, Meiri et al.): each step minimises "
                        "‖y − T(y)‖₁ + λ·(Gaussian prior of the noising step) by a per-coordinate Newton update, "
                        "a fixed number of model evaluations per step.",
            inputs=invert_inputs() + [
                io.Int.Input("iterations", default=2, min=1, max=100,
                             tooltip="Newton iterations (model evaluations) per step; 1 equals DDIM inversion."),
                io.Float.Input("regularization", default=0.1, min=0.0, max=100.0, step=0.01, round=False,
                               tooltip="λ: weight of the Gaussian prior of the noising step. 0 solves the step "
                               "equation alone; more keeps the seed closer to the noising step's mean."),
                io.Combo.Input("gradient", options=list(RNRI_GRADIENTS), default="jacobian-free",
                               tooltip="jacobian-free: treat ∂T/∂y as 0 (the authors' code; no backward pass). "
                               "autograd: the exact gradient by one vector-Jacobian product through the model "
                               "per iteration (about 3× the time of an evaluation)."),
            ],
            outputs=invert_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, latent, steps, scheduler, cfg, strength, iterations, regularization, gradient,
                negative=None, sigmas=None) -> io.NodeOutput:
        method = bind(rnri_invert, iterations=iterations, regularization=regularization, gradient=gradient,
                      prior=noising_prior(model))
        return run_invert_node("rnri", method, model, positive, latent, steps, scheduler, cfg, strength, negative,
                               sigmas, needs_gradient=gradient == "autograd")


NODES = [DDIMInvert, FixedPointInvert, RNRIInvert]
