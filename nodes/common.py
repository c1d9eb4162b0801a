"""Inputs and outputs shared by every invert node (docs/architecture.md §5: the hand-off) and `invert_node`, the one
entry point of every invert node (§4)."""
from dataclasses import dataclass
from typing import Any, Optional

import torch
from comfy_api.latest import io

from ..solvers import EULER
from ..solvers.samplers import SAMPLERS, STOCHASTIC_SAMPLERS
from . import host

CATEGORY = "sampling/seedfinder"


def invert_inputs() -> list:
    """model, positive, optional negative, latent, steps, scheduler, cfg, strength, optional sigmas."""
    return [
        io.Model.Input("model", tooltip="The model that will regenerate the image. Inversion runs through the same "
                       "guider, so LoRAs, patches and ControlNets apply exactly as in the sampler."),
        io.Conditioning.Input("positive", tooltip="The prompt to invert with. Reconstruct with the same prompt; "
                              "edit by sampling the seed with another prompt."),
        io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt; needed when cfg ≠ 1. Use the "
                              "same one in the sampler that regenerates the image."),
        io.Latent.Input("latent", tooltip="The image latent to invert (e.g. from VAE Encode), without a noise mask: "
                        "for a masked edit put the mask on the latent given to the sampler."),
        io.Int.Input("steps", default=20, min=1, max=1000, tooltip="Steps of the schedule. The sampler that "
                     "regenerates the image must use the same steps and scheduler (or the sigmas output)."),
        io.Combo.Input("scheduler", options=host.SCHEDULER_NAMES, default="simple",
                       tooltip="ComfyUI scheduler of the schedule. Use the same one in the sampler."),
        io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance during inversion. The sampler must use the same cfg for a "
                       "faithful reconstruction; 1.0 is the fastest (one model pass per evaluation)."),
        io.Float.Input("strength", default=1.0, min=0.001, max=1.0, step=0.01, round=0.001,
                       tooltip="How far to invert: 1.0 goes all the way to noise; less inverts only the last "
                       "round(steps·strength) steps (partial inversion for editing; in KSamplerAdvanced set "
                       "start_at_step = steps − those)."),
        io.Sigmas.Input("sigmas", optional=True, tooltip="Optional schedule (σ_max … 0) that overrides steps, "
                        "scheduler and strength. Sample with the same sigmas."),
    ]


def invert_outputs() -> list:
    """latent (LATENT route), noise (NOISE route), sigmas."""
    return [
        io.Latent.Output(display_name="latent", tooltip="The seed as a latent, for KSamplerAdvanced with add_noise "
                         "disabled, the invert node's sampler (euler = ddim, heun, dpmpp_2m, …), the same "
                         "steps/scheduler/cfg (EPS and v-prediction models)."),
        io.Noise.Output(display_name="noise", tooltip="The seed as NOISE, for SamplerCustomAdvanced with an empty "
                        "latent of the same size (or the source latent; with a noise mask on it, a masked edit), a "
                        "CFGGuider with the same cfg and prompts, the sampler output, and the sigmas output. Works "
                        "for every model family."),
        io.Sigmas.Output(display_name="sigmas", tooltip="Exactly the schedule that was inverted; sample with it."),
    ]


def sampler_inputs() -> list:
    """sampler (the one that will regenerate the image), noise_seed (its fixed per-step noises) and round_trip
    (whether that sampler regenerates the seed to measure the round trip; optional, so workflows saved before it load
    with its default)."""
    return [
        io.Combo.Input("sampler", options=list(SAMPLERS), default="euler",
                       tooltip="The sampler that will regenerate the image. euler (= ddim), heun, dpm_2, dpmpp_2m, "
                       "res_multistep, uni_pc and uni_pc_bh2 are deterministic: a stock sampler node with the same "
                       "sampler reproduces the seed (the multistep ones cost several sweeps over the whole schedule). "
                       "euler_ancestral (Turbo/Lightning) and lcm (LCM) inject noise at every step: the inversion "
                       "fixes those noises, so regenerate with the sampler output."),
        io.Int.Input("noise_seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=False,
                     tooltip="Seed of the fixed per-step noises of euler_ancestral and lcm; unused by the "
                     "deterministic samplers."),
        io.Combo.Input("round_trip", options=list(host.ROUND_TRIPS), default=host.ROUND_TRIP, optional=True,
                       tooltip="measure: after the inversion the sampler regenerates the seed once (one sampling "
                       "pass: steps × its evaluations per step more) and the node reports the measured round trip "
                       "‖regenerated − latent‖/‖latent‖, which its quality warning then judges. estimate: no "
                       "regeneration; the node shows only the residuals' first-order estimate, which can be tens of "
                       "times off."),
    ]


def sampler_output() -> io.Sampler.Output:
    return io.Sampler.Output(display_name="sampler", tooltip="The sampler to regenerate with in "
                             "SamplerCustom(Advanced): ComfyUI's own deterministic sampler of that name, or "
                             "euler_ancestral/lcm carrying the fixed noises of this inversion.")


@dataclass(frozen=True)
class InvertInputs:
    """The inputs every invert node shares (invert_inputs()), read once from the node's inputs."""
    model: Any
    positive: list
    latent: dict
    steps: int
    scheduler: str
    cfg: float
    strength: float
    negative: Optional[list] = None
    sigmas: Optional[torch.Tensor] = None

    @property
    def prompt(self) -> "host.Prompt":
        return host.Prompt(self.positive, self.negative, self.cfg)


def invert_node(spec: "host.MethodSpec", inputs: InvertInputs, options=None, sampler: str = "euler",
                noise_seed: int = 0, round_trip: str = "estimate") -> io.NodeOutput:
    """The one entry point of every invert node: invert `inputs.latent` with the method `spec` describes and its
    `options`, over the schedule the node's widgets (or its sigmas input) give as KSamplerAdvanced walks it with
    `sampler`, whose per-step noises (euler_ancestral, lcm) `noise_seed` fixes; with `round_trip` "measure" (a step
    solver's seed only: an exact pair's is exact by construction, an own sampler's is steered) that stock sampler
    regenerates the seed and the round trip is measured; outputs the four hand-offs and the node's summary."""
    if round_trip not in host.ROUND_TRIPS:
        raise ValueError(f"round_trip: expected one of {', '.join(host.ROUND_TRIPS)}, got {round_trip!r}")
    model = inputs.model
    if spec.flow_only:
        host.require_flow(model, spec.flow_only)
    schedule = host.build_schedule(model, inputs.steps, inputs.scheduler, inputs.strength, inputs.sigmas, sampler)
    noises = None
    if sampler in STOCHASTIC_SAMPLERS:
        noises = host.fixed_noises(tuple(inputs.latent["samples"].shape), len(schedule.sigmas) - 1, noise_seed)
    stepping = host.sampler_steps(model, sampler, noises) if spec.kind is host.Kind.STEP_SOLVER else EULER
    run = host.MethodRun(model=model, latent=inputs.latent, schedule=schedule, stepping=stepping,
                         noise_seed=noise_seed)
    name = spec.title(options)
    measure = round_trip == "measure" and spec.kind is host.Kind.STEP_SOLVER
    inversion = host.run_inversion(spec.bind(options, run), model, inputs.prompt, inputs.latent, schedule.sigmas,
                                   host.HandOff(name, sampler, noises, measure=measure), spec.gradient(options))
    report = host.summary(inversion, name, schedule.start_at_step, sampler, spec.trace, spec.notes(options, run))
    return io.NodeOutput(inversion.latent, inversion.noise, inversion.sigmas, spec.sampler(inversion, options, run),
                         ui={"seedfinder": [report]})
