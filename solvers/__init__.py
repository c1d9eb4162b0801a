"""Pure-torch inversion solvers. No ComfyUI import: every method is a function of a Denoiser D(x, σ).

Every inverter has the form method(denoiser, x0, sigmas, *, input_scale, callback, **options) -> InversionResult
(`InversionMethod`); the host adapter binds a node's options and calls it with ComfyUI's guided denoiser.
"""
from .core import (
                   Callback,
                   CountingDenoiser,
                   Denoiser,
                   InputScale,
                   InversionMethod,
                   InversionResult,
                   Stage,
                   Stepper,
                   StepProblem,
                   StepRule,
                   describe_sigmas,
                   euler_rule,
                   euler_step,
                   inverse_step_map,
                   invert_by_stages,
                   invert_by_steps,
                   level_scale,
                   rms,
                   sample,
                   to_d,
                   validate_schedule,
                   vp_input_scale,
)
from .exact import PRECISIONS, bdia_generate, bdia_invert, edict_generate, edict_invert
from .fixed_point import ACCELERATIONS, ddim_invert, fixed_point_invert, fixed_point_solve
from .flow import (
                   FLOW_SOLVERS,
                   check_eta,
                   eta_schedule,
                   flow_edit,
                   flow_solver_invert,
                   flow_solver_sample,
                   rf_inversion_invert,
                   rf_inversion_sample,
)
from .interpolation import CENTROIDS, PATHS, centroid, interpolate
from .metrics import PSNR_CAP, psnr, ssim
from .prompt_aware import MODES, cycle_schedule, prompt_aware_adjust
from .rnri import FOLD_RATIO, GRADIENTS, UPDATES, flow_transition_prior, fold_ratio, rnri_invert, ve_transition_prior
from .samplers import SAMPLERS, STAGE_SAMPLERS, STOCHASTIC_SAMPLERS, sampler_rule, sampler_stepper

__all__ = [
    "Callback", "CountingDenoiser", "Denoiser", "InputScale", "InversionMethod", "InversionResult", "Stage", "Stepper",
    "StepProblem", "StepRule", "describe_sigmas", "euler_rule", "euler_step", "inverse_step_map", "invert_by_stages",
    "invert_by_steps", "level_scale",
    "rms", "sample", "to_d", "validate_schedule", "vp_input_scale",
    "PRECISIONS", "bdia_generate", "bdia_invert", "edict_generate", "edict_invert",
    "FLOW_SOLVERS", "check_eta", "eta_schedule", "flow_edit", "flow_solver_invert", "flow_solver_sample",
    "rf_inversion_invert", "rf_inversion_sample",
    "ACCELERATIONS", "ddim_invert", "fixed_point_invert", "fixed_point_solve",
    "CENTROIDS", "PATHS", "centroid", "interpolate",
    "PSNR_CAP", "psnr", "ssim",
    "MODES", "cycle_schedule", "prompt_aware_adjust",
    "FOLD_RATIO", "GRADIENTS", "UPDATES", "flow_transition_prior", "fold_ratio", "rnri_invert",
    "ve_transition_prior",
    "SAMPLERS", "STAGE_SAMPLERS", "STOCHASTIC_SAMPLERS", "sampler_rule", "sampler_stepper",
]
