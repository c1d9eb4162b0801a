"""The one adapter between Seedfinder's solvers and ComfyUI (docs/architecture.md §4, §5), one module per job:

- family:   which of ComfyUI's prediction types a MODEL samples with; its noising prior and step rules
- schedule: the σ's to invert (the user's SIGMAS, or what KSamplerAdvanced walks with the same widgets)
- checks:   input checks with named errors; the cause of a non-finite result
- guided:   a solver run as a comfy Sampler inside CFGGuider (the denoiser the stock sampler uses); an edit's
            source and target prompts in one guider
- handoff:  the seed as NOISE, LATENT and SAMPLER (fixed noises; EDICT/BDIA's coupled sampler; a solver's own sampler)
- method:   a method's descriptor (MethodSpec): its kind, what its trace means, how it binds and regenerates
- attention_edit: an attention-control edit (Prompt-to-Prompt, Plug-and-Play) as a GUIDER, its source branch exact,
            its automatic mask
- patches:  model patches (attention replace, attention override): patched clones of a MODEL
- report:   the node's ui summary and its quality warning
- progress: ProgressBar and interruption checks
- seed_select: a seed refined toward reference latents through the differentiable guided model (SeedSelect)

Nodes import this package (`from . import host`) and call these names; nothing else in the pack talks to ComfyUI's
sampling internals.
"""
from . import patches
from .attention_edit import AttentionEditGuider, attention_edit_guider, shown_mask
from .checks import nonfinite_cause, validate_inputs
from .family import (
    FAMILIES,
    Family,
    family_of,
    model_family,
    model_space,
    noising,
    noising_prior,
    require_flow,
    sampler_steps,
    sampling_shift,
    step_rule,
    timestep_sigmas,
)
from .guided import GuidedRun, Prompt, SolverSampler, differentiable, guided_denoiser, run_edit, run_guided
from .handoff import (
    CoupledSampler,
    FixedNoiseSampler,
    FunctionSampler,
    HandOff,
    Inversion,
    Seed,
    fixed_noises,
    run_inversion,
)
from .method import Kind, MethodRun, MethodSpec, stock_sampler
from .progress import iteration_reporter, progress_reporter, sampler_progress
from .report import POOR_ROUND_TRIP, ROUND_TRIP, ROUND_TRIPS, Trace, summary
from .schedule import SCHEDULER_NAMES, Schedule, build_schedule
from .seed_select import run_seed_select

__all__ = [
    "patches", "AttentionEditGuider", "attention_edit_guider", "shown_mask",
    "nonfinite_cause", "validate_inputs", "FAMILIES", "Family", "family_of", "model_family",
    "timestep_sigmas", "model_space", "noising", "noising_prior", "require_flow", "sampler_steps", "sampling_shift",
    "step_rule", "GuidedRun", "Prompt", "SolverSampler", "differentiable", "guided_denoiser", "run_edit",
    "run_guided", "CoupledSampler", "FixedNoiseSampler", "FunctionSampler", "HandOff", "Inversion", "Seed",
    "fixed_noises", "run_inversion", "Kind", "MethodRun", "MethodSpec", "stock_sampler", "iteration_reporter",
    "progress_reporter", "sampler_progress", "POOR_ROUND_TRIP", "ROUND_TRIP", "ROUND_TRIPS", "Trace", "summary",
    "SCHEDULER_NAMES", "Schedule", "build_schedule", "run_seed_select",
]
