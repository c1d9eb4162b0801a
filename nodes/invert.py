"""The invert nodes: DDIM (the baseline), FixedPoint (FPI) and RNRI."""
from functools import partial

from comfy_api.latest import io

from ..solvers import InversionMethod, ddim_invert, fixed_point_invert
from ..solvers.fixed_point import ACCELERATIONS, FixedPointOptions
from ..solvers.rnri import FOLD_RATIO, RNRIOptions, fold_ratio, rnri_invert
from ..solvers.rnri import GRADIENTS as RNRI_GRADIENTS
from ..solvers.rnri import UPDATES as RNRI_UPDATES
from . import host
from .common import (
    CATEGORY,
    InvertInputs,
    invert_inputs,
    invert_node,
    invert_outputs,
    sampler_inputs,
    sampler_output,
)


def bind_ddim(options: None, run: "host.MethodRun") -> InversionMethod:
    """DDIM inversion of the chosen sampler's steps."""
    return partial(ddim_invert, stepping=run.stepping)


DDIM_METHOD = host.MethodSpec(name="ddim", kind=host.Kind.STEP_SOLVER, trace=host.Trace.STEP_RESIDUAL, bind=bind_ddim)


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
    def execute(cls, sampler, noise_seed, round_trip=host.ROUND_TRIP, **inputs) -> io.NodeOutput:
        return invert_node(DDIM_METHOD, InvertInputs(**inputs), None, sampler, noise_seed, round_trip)


def bind_fixed_point(options: FixedPointOptions, run: "host.MethodRun") -> InversionMethod:
    """Fixed-point inversion of the chosen sampler's steps with the node's options."""
    return partial(fixed_point_invert, options=options, stepping=run.stepping)


FIXED_POINT_METHOD = host.MethodSpec(name="fixed_point", kind=host.Kind.STEP_SOLVER,
                                     trace=host.Trace.STEP_RESIDUAL, bind=bind_fixed_point)
FIXED_POINT, RNRI = FixedPointOptions(), RNRIOptions()


class FixedPointInvert(io.ComfyNode):
    OPTIONS = FixedPointOptions

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
                io.Int.Input("max_iterations", default=FIXED_POINT.max_iterations, min=1, max=200,
                             tooltip="Most model evaluations per step. 1 equals DDIM inversion."),
                io.Float.Input("tolerance", default=FIXED_POINT.tolerance, min=0.0, max=1.0, step=1e-5, round=False,
                               tooltip="Stop a step once the RMS residual ‖T(y) − y‖/√numel of every latent in the "
                               "batch is at or under this (in model latent units); 0 always runs max_iterations."),
                io.Combo.Input("acceleration", options=list(ACCELERATIONS), default=FIXED_POINT.acceleration,
                               tooltip="anderson: Anderson acceleration over the last 5 iterates, fewer evaluations "
                               "to the tolerance and convergence where plain iteration stalls; none: plain "
                               "y ← T(y), as the paper."),
                io.Boolean.Input("warm_start", default=FIXED_POINT.warm_start,
                                 tooltip="Start each step from the previous step's solved direction instead of the "
                                 "DDIM guess: fewer evaluations to the tolerance (bench/results/README.md)."),
            ],
            outputs=invert_outputs() + [sampler_output()],
        )

    @classmethod
    def execute(cls, sampler, noise_seed, max_iterations, tolerance, acceleration, warm_start,
                round_trip=host.ROUND_TRIP, **inputs) -> io.NodeOutput:
        options = FixedPointOptions(max_iterations, tolerance, acceleration, warm_start)
        return invert_node(FIXED_POINT_METHOD, InvertInputs(**inputs), options, sampler, noise_seed, round_trip)


def fold_notes(options: RNRIOptions, run: "host.MethodRun") -> list:
    """The node's warning when the first inversion step above σ = 0 is likely a fold (docs/methods.md §4); a stage
    sampler's step also ends at σ_lo, so its fold is judged as euler's."""
    c = fold_ratio(run.sigmas, run.stepping.rule)
    if c is None or c < FOLD_RATIO:
        return []
    return [f"the first inversion step above σ = 0 has Δσ/σ_hi = {c:.2f} ≥ {FOLD_RATIO}: its step equation is likely "
            f"a fold (nearly singular, often no exact root), where the inversion settles at the smallest residual it "
            f"finds (regularization λ > 0 damps the Newton steps there). More steps (smaller Δσ at the low end) make "
            f"it well posed"]


def bind_rnri(options: RNRIOptions, run: "host.MethodRun") -> InversionMethod:
    """RNRI inversion of the chosen sampler's steps with the node's options and the model family's noising prior."""
    return partial(rnri_invert, options=options, prior=host.noising_prior(run.model), stepping=run.stepping)


RNRI_METHOD = host.MethodSpec(name="rnri", kind=host.Kind.STEP_SOLVER, trace=host.Trace.STEP_RESIDUAL,
                              bind=bind_rnri, notes=fold_notes, gradient=lambda options: options.model_gradient)


class RNRIInvert(io.ComfyNode):
    OPTIONS = RNRIOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderRNRIInvert",
            display_name="RNRI Invert",
            category=CATEGORY,
            description="Newton-Raphson inversion. newton (default): FixedPoint's Anderson iteration at its "
                        f"defaults (tolerance {RNRI.tolerance:g}, at most {RNRI.max_iterations} evaluations, warm "
                        "start), then Newton-Krylov "
                        "iterations (finite-difference Jacobian-vector products, GMRES, line search) at the steps "
                        "it leaves above the tolerance, keeping at each step the iterate with the smallest "
                        "residual (never worse than the Anderson phase), with optional Levenberg-Marquardt damping "
                        "λ where a step is ill-posed; from the first step it changes, FixedPoint's own trajectory "
                        "is solved beside it, and each latent keeps the seed whose regeneration is closer (never "
                        "above FixedPoint's round trip, for up to about twice its evaluations). paper: the published "
                        "RNRI update (Samuel, Meiri "
                        "et al.), minimising ‖y − T(y)‖₁ + λ·(Gaussian prior of the noising step) by a "
                        "per-coordinate Newton step, a fixed number of model evaluations per step.",
            inputs=invert_inputs() + sampler_inputs() + [
                io.Int.Input("iterations", default=RNRI.iterations, min=1, max=100,
                             tooltip="newton: Newton-Krylov iterations at each step the Anderson phase leaves above "
                             f"its tolerance (each: up to {RNRI.krylov * RNRI.restarts} Jacobian-vector products and "
                             f"up to {RNRI.line_search} line-search evaluations). paper: Newton iterations (model "
                             "evaluations) per step; 1 equals DDIM."),
                io.Float.Input("regularization", default=RNRI.regularization, min=0.0, max=100.0, step=0.01,
                               round=False,
                               tooltip="λ. newton: Levenberg-Marquardt damping of the Newton correction (λ/s²·‖δ‖², "
                               "s² the noising step's variance), applied only where a step is ill-posed (its "
                               "residual stops falling or the Krylov solve is near-singular): shorter steps near a "
                               "fold, the same solution; 0 (default) measured no worse on any latent. paper: weight "
                               "of the Gaussian prior of the noising step at every step (the authors use 0.1); 0 "
                               "solves the step equation alone, more keeps the seed closer to the step's mean."),
                io.Combo.Input("gradient", options=list(RNRI_GRADIENTS), default=RNRI.gradient,
                               tooltip="paper only. jacobian-free: treat ∂T/∂y as 0 (the authors' code; no backward "
                               "pass). autograd: the exact gradient by one vector-Jacobian product through the model "
                               "per iteration (about 3× the time of an evaluation). newton needs no gradient."),
                io.Combo.Input("update", options=list(RNRI_UPDATES), default=RNRI.update,
                               tooltip="newton: Anderson fixed-point iteration (FixedPoint's defaults: tolerance "
                               f"{RNRI.tolerance:g}, at most {RNRI.max_iterations} evaluations per step, warm start), "
                               "then Newton-Krylov on the step "
                               "equation where it stalls above the tolerance (about 6 evaluations per Newton "
                               "iteration). paper: the published per-coordinate update, `iterations` evaluations "
                               "per step (moves every coordinate by the same amount; 1.2-4× better than DDIM)."),
            ],
            outputs=invert_outputs() + [sampler_output()],
        )

    @classmethod
    def execute(cls, sampler, noise_seed, iterations, regularization, gradient, update=RNRI.update,
                round_trip=host.ROUND_TRIP, **inputs) -> io.NodeOutput:
        options = RNRIOptions(update, iterations, regularization, gradient)
        return invert_node(RNRI_METHOD, InvertInputs(**inputs), options, sampler, noise_seed, round_trip)


NODES = [DDIMInvert, FixedPointInvert, RNRIInvert]
