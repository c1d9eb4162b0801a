"""The flow models' own methods: RF-Inversion, FireFlow / RF-Solver inversion with their matched samplers, FlowEdit."""
from functools import partial

from comfy_api.latest import io

from ..solvers import (
    FLOW_SOLVERS,
    FlowEditOptions,
    FlowSolverOptions,
    InversionMethod,
    RFInversionOptions,
    eta_schedule,
    flow_edit,
    flow_solver_invert,
    flow_solver_sample,
    rf_inversion_invert,
    rf_inversion_sample,
)
from . import host
from .common import CATEGORY, InvertInputs, invert_inputs, invert_node, invert_outputs

ETA_SPAN_TOO_SMALL = 0.15
"""An η window covering less σ than this barely moves the image toward the reference (bench/results/flow.md,
RF-Inversion settings): the "no effect" of a shifted schedule whose first steps all sit near σ = 1."""


def eta_window_notes(model, sigmas, eta: float, start_step: int, stop_step: int) -> list:
    """The warning when RF-Inversion's η acts on too little of the schedule to matter (the shift trap)."""
    steps = len(sigmas) - 1
    start, stop = min(start_step, steps), min(stop_step, steps)
    if not eta:
        return []
    if stop <= start:
        return [f"eta acts on no step: start_step {start_step} ≥ stop_step {stop_step} (of {steps}); the sampler is "
                f"plain euler"]
    span = float(sigmas[start] - sigmas[stop])
    if span >= ETA_SPAN_TOO_SMALL:
        return []
    return [f"eta acts on σ {float(sigmas[start]):.3f} → {float(sigmas[stop]):.3f} only (Δσ = {span:.3f} < "
            f"{ETA_SPAN_TOO_SMALL}), where pulling toward the image does little; this model's shift "
            f"{host.sampling_shift(model):.3g} keeps the first steps near σ = 1. Raise stop_step, or sample with "
            f"shift 1 (ModelSamplingSD3 / ModelSamplingFlux)"]


def controlled_sampler(reference, eta: float, start_step: int, stop_step: int) -> host.FunctionSampler:
    """RF-Inversion's controlled reverse ODE pulling toward `reference` (model space) with η on its step window."""
    def generate(denoiser, x, sigmas, callback):
        if tuple(x.shape) != tuple(reference.shape):
            raise ValueError(f"latent_image: this RF-Inversion sampler pulls toward the inverted image of shape "
                             f"{tuple(reference.shape)}, got a start of shape {tuple(x.shape)}; give the sampler an "
                             f"empty latent of the inverted image's size and batch")
        etas = eta_schedule(len(sigmas) - 1, eta, start_step, stop_step)
        return rf_inversion_sample(denoiser, x, sigmas, reference=reference.to(x), etas=etas, callback=callback)

    return host.FunctionSampler("RF-Inversion", generate)


def bind_rf_inversion(options: RFInversionOptions, run: "host.MethodRun") -> InversionMethod:
    """RF-Inversion's controlled forward ODE toward the target noise the node's noise_seed gives."""
    target = host.fixed_noises(tuple(run.latent["samples"].shape), 1, run.noise_seed)[0]
    return partial(rf_inversion_invert, options=options, target_noise=target)


def rf_inversion_notes(options: RFInversionOptions, run: "host.MethodRun") -> list:
    return eta_window_notes(run.model, run.sigmas, options.eta, options.start_step, options.stop_step)


def rf_inversion_sampler(inversion: "host.Inversion", options: RFInversionOptions,
                         run: "host.MethodRun") -> host.FunctionSampler:
    """The controlled reverse ODE pulling toward the inverted image (in model space)."""
    return controlled_sampler(host.model_space(run.model, run.latent), options.eta, options.start_step,
                              options.stop_step)


def fireflow_sampler(inversion: "host.Inversion", options: FlowSolverOptions,
                     run: "host.MethodRun") -> host.FunctionSampler:
    """The same second-order solver, denoising."""
    return host.FunctionSampler(options.solver, partial(flow_solver_sample, options=options))


RF_INVERSION_METHOD = host.MethodSpec(
    name="rf_inversion", kind=host.Kind.OWN_SAMPLER, trace=host.Trace.NOT_AN_ERROR, bind=bind_rf_inversion,
    sampler=rf_inversion_sampler, notes=rf_inversion_notes, flow_only="RF-Inversion")
FIREFLOW_METHOD = host.MethodSpec(
    name="fireflow", kind=host.Kind.OWN_SAMPLER, trace=host.Trace.NOT_AN_ERROR,
    bind=lambda options, run: partial(flow_solver_invert, options=options), sampler=fireflow_sampler,
    flow_only="FireFlow / RF-Solver", named=lambda options: options.solver)
RF_INVERSION, FLOW_SOLVER, FLOW_EDIT = RFInversionOptions(), FlowSolverOptions(), FlowEditOptions()


class RFInversionInvert(io.ComfyNode):
    OPTIONS = RFInversionOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderRFInversionInvert",
            display_name="RF-Inversion Invert",
            category=CATEGORY,
            description="RF-Inversion (Rout et al., ICLR 2025) for rectified-flow models: a controlled forward ODE "
                        "steers the inversion toward a seeded noise (gamma), and its sampler output pulls the reverse "
                        "ODE toward this image (eta) over its first steps. Sample the noise output with that sampler "
                        "and a target prompt to edit. gamma = 0 and eta = 0 are plain Euler inversion and sampling.",
            inputs=invert_inputs() + [
                io.Float.Input("gamma", default=RF_INVERSION.gamma, min=0.0, max=1.0, step=0.05,
                               tooltip="Controller strength of the inversion: 0 is plain Euler (DDIM) inversion, 1 "
                               "ends exactly on the seeded noise. Higher makes the seed more Gaussian (more "
                               "editable), lower keeps more of the image in it."),
                io.Int.Input("noise_seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=False,
                             tooltip="Seed of the target noise the inversion is steered toward (gamma > 0)."),
                io.Float.Input("eta", default=RF_INVERSION.eta, min=0.0, max=1.0, step=0.05,
                               tooltip="Strength of the sampler's pull toward this image on its steps start_step … "
                               "stop_step − 1: higher keeps more of the image's layout and colours, lower follows "
                               "the target prompt more. 0 is plain euler."),
                io.Int.Input("start_step", default=RF_INVERSION.start_step, min=0, max=1000,
                             tooltip="First sampling step on which eta pulls toward the image."),
                io.Int.Input("stop_step", default=RF_INVERSION.stop_step, min=0, max=1000,
                             tooltip="Sampling step at which the pull stops (exclusive). With a shifted schedule "
                             "(shift > 1) the first steps stay near σ = 1: the node warns when the window covers "
                             "too little σ to matter."),
            ],
            outputs=invert_outputs() + [io.Sampler.Output(
                display_name="sampler", tooltip="The controlled reverse ODE (euler pulled toward this image by eta) "
                "for SamplerCustom(Advanced) with the noise output, an empty latent and the sigmas output; with a "
                "target prompt it edits.")],
        )

    @classmethod
    def execute(cls, gamma, noise_seed, eta, start_step, stop_step, **inputs) -> io.NodeOutput:
        options = RFInversionOptions(gamma, eta, start_step, stop_step)
        return invert_node(RF_INVERSION_METHOD, InvertInputs(**inputs), options, noise_seed=noise_seed)


class FireFlowInvert(io.ComfyNode):
    OPTIONS = FlowSolverOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderFireFlowInvert",
            display_name="FireFlow Invert",
            category=CATEGORY,
            description="Second-order inversion for rectified-flow models: FireFlow (Deng et al., ICML 2025; a "
                        "midpoint step reusing the previous velocity, about 1 evaluation per step) or RF-Solver (Wang "
                        "et al. 2024; 2 per step). Regenerate with its sampler output, the same solver in reverse.",
            inputs=invert_inputs() + [io.Combo.Input(
                "solver", options=list(FLOW_SOLVERS), default=FLOW_SOLVER.solver,
                tooltip="fireflow: N + 1 model evaluations for N steps; rf_solver: 2N, a little closer round trip.")],
            outputs=invert_outputs() + [io.Sampler.Output(
                display_name="sampler", tooltip="The matched sampler (the same solver, denoising) for "
                "SamplerCustom(Advanced) with the noise output, an empty latent and the sigmas output; with another "
                "prompt it edits, with fresh noise it generates.")],
        )

    @classmethod
    def execute(cls, solver, **inputs) -> io.NodeOutput:
        return invert_node(FIREFLOW_METHOD, InvertInputs(**inputs), FlowSolverOptions(solver))


class FlowEdit(io.ComfyNode):
    OPTIONS = FlowEditOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderFlowEdit",
            display_name="FlowEdit",
            category=CATEGORY,
            description="FlowEdit (Kulikov et al., ICCV 2025): edits an image with a rectified-flow model without "
                        "inverting it, by integrating the difference of the target- and source-prompted velocities on "
                        "noised copies of the image. Works with SD3, Flux (FluxGuidance on both prompts), Wan and any "
                        "model through ModelSamplingSD3.",
            inputs=[
                io.Model.Input("model", tooltip="A rectified-flow model (CONST sampling)."),
                io.Conditioning.Input("source_positive", tooltip="A prompt that describes the image as it is."),
                io.Conditioning.Input("source_negative", optional=True,
                                      tooltip="Negative prompt of the source side; needed when source_cfg ≠ 1."),
                io.Conditioning.Input("target_positive", tooltip="The prompt of the edited image."),
                io.Conditioning.Input("target_negative", optional=True,
                                      tooltip="Negative prompt of the target side; needed when target_cfg ≠ 1."),
                io.Latent.Input("latent", tooltip="The image latent to edit (VAE Encode). With a noise_mask (Set "
                                "Latent Noise Mask) only the masked part is edited; the rest stays the source."),
                io.Int.Input("steps", default=20, min=1, max=1000,
                             tooltip="Steps of the schedule; the edit runs on its last n_max of them."),
                io.Combo.Input("scheduler", options=host.SCHEDULER_NAMES, default="simple",
                               tooltip="ComfyUI scheduler of the schedule."),
                io.Int.Input("n_max", default=FLOW_EDIT.n_max, min=1, max=1000,
                             tooltip="How many of the last steps edit: more changes more (structure), fewer keeps "
                             "more of the image. Capped at steps."),
                io.Int.Input("n_min", default=FLOW_EDIT.n_min, min=0, max=1000,
                             tooltip="The last n_min steps sample plainly with the target prompt (fine detail); 0 "
                             "edits to the end."),
                io.Int.Input("n_avg", default=FLOW_EDIT.n_avg, min=1, max=32,
                             tooltip="Noises averaged per step: smoother edits, n_avg× the evaluations."),
                io.Float.Input("source_cfg", default=FLOW_EDIT.source_cfg, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the source velocity (the authors: 3.5 on SD3, 1.5 on Flux; 1 "
                               "measured best on the demo model: bench/results/flow.md)."),
                io.Float.Input("target_cfg", default=FLOW_EDIT.target_cfg, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the target velocity, above source_cfg as the authors use (13.5 "
                               "on SD3, 5.5 on Flux; 3 on the demo model). Higher edits harder and keeps less."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=False,
                             tooltip="Seed of the noised copies (same seed, same edit)."),
                io.Sigmas.Input("sigmas", optional=True, tooltip="Optional schedule (σ_max … 0) that overrides "
                                "steps and scheduler."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The edited latent (VAE Decode it).")],
        )

    @classmethod
    def execute(cls, model, source_positive, target_positive, latent, steps, scheduler, n_max, n_min, n_avg,
                source_cfg, target_cfg, seed, source_negative=None, target_negative=None,
                sigmas=None) -> io.NodeOutput:
        host.require_flow(model, "FlowEdit")
        schedule = host.build_schedule(model, steps, scheduler, 1.0, sigmas).sigmas
        options = FlowEditOptions(min(n_max, len(schedule) - 1), n_min, n_avg, source_cfg, target_cfg)
        edit = partial(flow_edit, options=options, seed=seed)
        run = host.run_edit(edit, model, host.Prompt(source_positive, source_negative, options.source_cfg),
                            host.Prompt(target_positive, target_negative, options.target_cfg), latent, schedule)
        out = dict(latent)
        out["samples"] = run.output
        return io.NodeOutput(out)


NODES = [RFInversionInvert, FireFlowInvert, FlowEdit]
