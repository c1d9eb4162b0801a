"""Inputs and outputs shared by every invert node (docs/architecture.md §5: the hand-off)."""
from functools import partial

import comfy.samplers
from comfy_api.latest import io

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
        io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="simple",
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
    """sampler (the one that will regenerate the image) and noise_seed (its fixed per-step noises)."""
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
    ]


def sampler_output() -> io.Sampler.Output:
    return io.Sampler.Output(display_name="sampler", tooltip="The sampler to regenerate with in "
                             "SamplerCustom(Advanced): ComfyUI's own deterministic sampler of that name, or "
                             "euler_ancestral/lcm carrying the fixed noises of this inversion.")


def schedule_of(inputs: dict, sampler: str = "euler") -> "host.Schedule":
    """The schedule an invert node's widgets (or its sigmas input) ask for, as KSamplerAdvanced walks it with
    `sampler`."""
    return host.build_schedule(inputs["model"], inputs["steps"], inputs["scheduler"], inputs["strength"],
                               inputs.get("sigmas"), sampler)


def invert(method_name: str, method, schedule: "host.Schedule", inputs: dict, needs_gradient: bool = False,
           sampler: str = "euler", step_noises=None, exact: bool = False, notes=(), estimated: bool = True):
    """Invert through the host adapter over `schedule`: (Inversion, ui summary with the method's `notes`)."""
    inversion = host.run_inversion(method, inputs["model"], inputs["positive"], inputs.get("negative"), inputs["cfg"],
                                   inputs["latent"], schedule.sigmas, needs_gradient, method_name, sampler,
                                   step_noises)
    return inversion, {"seedfinder": [host.summary(inversion, method_name, schedule.start_at_step, sampler, exact,
                                                   notes, estimated)]}


def run_sampler_invert_node(method_name: str, method, sampler: str, noise_seed: int, needs_gradient: bool = False,
                            notes=None, **inputs) -> io.NodeOutput:
    """Invert the steps of `sampler` (its per-step noises fixed by noise_seed); outputs the hand-off and the sampler.
    `notes(sigmas, rule)`, if given, returns the method's warnings about this schedule for the node's summary."""
    model, samples = inputs["model"], inputs["latent"]["samples"]
    schedule = schedule_of(inputs, sampler)
    steps = len(schedule.sigmas) - 1
    noises = host.fixed_noises(tuple(samples.shape), steps, noise_seed) if sampler in STOCHASTIC_SAMPLERS else None
    stepping = host.sampler_steps(model, sampler, noises)
    method = partial(method, stepping=stepping)
    # a stage sampler's step also ends at σ_lo: its fold is judged as euler's
    rule = stepping.rule
    inversion, ui = invert(method_name, method, schedule, inputs, needs_gradient=needs_gradient, sampler=sampler,
                           step_noises=noises, notes=notes(schedule.sigmas, rule) if notes else ())
    return io.NodeOutput(inversion.latent, inversion.noise, inversion.sigmas,
                         inversion.noise.regenerating_sampler(), ui=ui)


def bind(method, **options):
    """A solver with its node options fixed, in the host's method(denoiser, x0, sigmas, ...) form."""
    return partial(method, **options)
