"""The invert nodes: DDIM (the baseline), FixedPoint (FPI) and RNRI."""
from comfy_api.latest import io

from ..solvers import ddim_invert, fixed_point_invert
from ..solvers.fixed_point import ACCELERATIONS
from ..solvers.rnri import GRADIENTS as RNRI_GRADIENTS
from ..solvers.rnri import rnri_invert
from .common import (
    CATEGORY,
    bind,
    invert_inputs,
    invert_outputs,
    run_sampler_invert_node,
    sampler_inputs,
    sampler_output,
)
from .host import noising_prior


class DDIMInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderDDIMInvert",
            display_name="DDIM Invert",
            category=CATEGORY,
            description="Classic DDIM inversion: one model evaluation per step, the model seeing each latent at the "
                        "next noise level. Fast but approximate; the baseline the other inverters are measured "
                        "against.",
            inputs=invert_inputs() + sampler_inputs(),
            outputs=invert_outputs() + [sampler_output()],
        )

    @classmethod
    def execute(cls, sampler, noise_seed, **inputs) -> io.NodeOutput:
        return run_sampler_invert_node("ddim", ddim_invert, sampler, noise_seed, **inputs)


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
            inputs=invert_inputs() + sampler_inputs() + [
                io.Int.Input("max_iterations", default=20, min=1, max=200,
                             tooltip="Most model evaluations per step. 1 equals DDIM inversion."),
                io.Float.Input("tolerance", default=1e-4, min=0.0, max=1.0, step=1e-5, round=False,
                               tooltip="Stop a step once the RMS residual ‖T(y) − y‖/√numel of every latent in the "
                               "batch is at or under this (in model latent units); 0 always runs max_iterations."),
                io.Combo.Input("acceleration", options=list(ACCELERATIONS), default="anderson",
                               tooltip="anderson: Anderson acceleration over the last 5 iterates, fewer evaluations "
                               "to the tolerance and convergence where plain iteration stalls; none: plain "
                               "y ← T(y), as the paper."),
                io.Boolean.Input("warm_start", default=True,
                                 tooltip="Start each step from the previous step's solved direction instead of the "
                                 "DDIM guess: fewer evaluations to the tolerance (see the README's benchmark)."),
            ],
            outputs=invert_outputs() + [sampler_output()],
        )

    @classmethod
    def execute(cls, sampler, noise_seed, max_iterations, tolerance, acceleration, warm_start,
                **inputs) -> io.NodeOutput:
        method = bind(fixed_point_invert, max_iterations=max_iterations, tolerance=tolerance,
                      acceleration=acceleration, warm_start=warm_start)
        return run_sampler_invert_node("fixed_point", method, sampler, noise_seed, **inputs)


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
            inputs=invert_inputs() + sampler_inputs() + [
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
            outputs=invert_outputs() + [sampler_output()],
        )

    @classmethod
    def execute(cls, sampler, noise_seed, iterations, regularization, gradient, **inputs) -> io.NodeOutput:
        method = bind(rnri_invert, iterations=iterations, regularization=regularization, gradient=gradient,
                      prior=noising_prior(inputs["model"]))
        return run_sampler_invert_node("rnri", method, sampler, noise_seed, needs_gradient=gradient == "autograd",
                                       **inputs)


NODES = [DDIMInvert, FixedPointInvert, RNRIInvert]
