"""The invert nodes: DDIM (the baseline), FixedPoint (FPI) and RNRI."""
from comfy_api.latest import io

from ..solvers import ddim_invert, fixed_point_invert
from ..solvers.fixed_point import ACCELERATIONS
from ..solvers.rnri import FOLD_RATIO, REGULARIZATION, fold_ratio, rnri_invert
from ..solvers.rnri import GRADIENTS as RNRI_GRADIENTS
from ..solvers.rnri import UPDATES as RNRI_UPDATES
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


def fold_notes(sigmas, rule) -> list:
    """The node's warning when the first inversion step above σ = 0 is likely a fold (docs/methods.md §4)."""
    c = fold_ratio(sigmas, rule)
    if c is None or c < FOLD_RATIO:
        return []
    return [f"the first inversion step above σ = 0 has Δσ/σ_hi = {c:.2f} ≥ {FOLD_RATIO}: its step equation is likely "
            f"a fold (nearly singular, often no exact root), where the inversion settles at the smallest residual it "
            f"finds (regularization λ > 0 damps the Newton steps there). More steps (smaller Δσ at the low end) make "
            f"it well posed"]


class RNRIInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderRNRIInvert",
            display_name="RNRI Invert",
            category=CATEGORY,
            description="Newton-Raphson inversion. newton (default): FixedPoint's Anderson iteration at its "
                        "defaults (tolerance 1e-4, at most 20 evaluations, warm start), then Newton-Krylov "
                        "iterations (finite-difference Jacobian-vector products, GMRES, line search) at the steps "
                        "it leaves above the tolerance, keeping at each step the iterate with the smallest "
                        "residual (never worse than the Anderson phase), with optional Levenberg-Marquardt damping "
                        "λ where a step is ill-posed. paper: the published RNRI update (Samuel, Meiri "
                        "et al.), minimising ‖y − T(y)‖₁ + λ·(Gaussian prior of the noising step) by a "
                        "per-coordinate Newton step, a fixed number of model evaluations per step.",
            inputs=invert_inputs() + sampler_inputs() + [
                io.Int.Input("iterations", default=2, min=1, max=100,
                             tooltip="newton: Newton-Krylov iterations at each step the Anderson phase leaves above "
                             "its tolerance (each: up to 5 Jacobian-vector products and up to 3 line-search "
                             "evaluations). paper: Newton iterations (model evaluations) per step; 1 equals DDIM."),
                io.Float.Input("regularization", default=REGULARIZATION, min=0.0, max=100.0, step=0.01,
                               round=False,
                               tooltip="λ. newton: Levenberg-Marquardt damping of the Newton correction (λ/s²·‖δ‖², "
                               "s² the noising step's variance), applied only where a step is ill-posed (its "
                               "residual stops falling or the Krylov solve is near-singular): shorter steps near a "
                               "fold, the same solution; 0 (default) measured no worse on any latent. paper: weight "
                               "of the Gaussian prior of the noising step at every step (the authors use 0.1); 0 "
                               "solves the step equation alone, more keeps the seed closer to the step's mean."),
                io.Combo.Input("gradient", options=list(RNRI_GRADIENTS), default="jacobian-free",
                               tooltip="paper only. jacobian-free: treat ∂T/∂y as 0 (the authors' code; no backward "
                               "pass). autograd: the exact gradient by one vector-Jacobian product through the model "
                               "per iteration (about 3× the time of an evaluation). newton needs no gradient."),
                io.Combo.Input("update", options=list(RNRI_UPDATES), default="newton",
                               tooltip="newton: Anderson fixed-point iteration (FixedPoint's defaults: tolerance "
                               "1e-4, at most 20 evaluations per step, warm start), then Newton-Krylov on the step "
                               "equation where it stalls above the tolerance (about 6 evaluations per Newton "
                               "iteration). paper: the published per-coordinate update, `iterations` evaluations "
                               "per step (moves every coordinate by the same amount; 1.2-4× better than DDIM)."),
            ],
            outputs=invert_outputs() + [sampler_output()],
        )

    @classmethod
    def execute(cls, sampler, noise_seed, iterations, regularization, gradient, update="newton",
                **inputs) -> io.NodeOutput:
        method = bind(rnri_invert, update=update, iterations=iterations, regularization=regularization,
                      gradient=gradient, prior=noising_prior(inputs["model"]))
        return run_sampler_invert_node("rnri", method, sampler, noise_seed,
                                       needs_gradient=update == "paper" and gradient == "autograd",
                                       notes=fold_notes, **inputs)


NODES = [DDIMInvert, FixedPointInvert, RNRIInvert]
