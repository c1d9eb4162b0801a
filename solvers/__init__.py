"""Pure-torch inversion solvers. No ComfyUI import: every method is a function of a Denoiser D(x, σ).

Every inverter has the form method(denoiser, x0, sigmas, options, *, input_scale, callback, ...) -> InversionResult;
its options are one frozen dataclass per method (`FixedPointOptions`, `RNRIOptions`, …) whose defaults are the node's.
A node's method spec binds them once into an `InversionMethod`, which the host adapter calls with ComfyUI's guided
denoiser.
"""
from .attention_edit import (
    MASK_SOURCES,
    P2P_PAPER,
    AttentionEditOptions,
    EditMemory,
    blend_outside,
    edit_memory,
    edited_token,
    image_tokens,
    injects,
    landing_denoised,
    threshold_mask,
    token_attention,
)
from .core import (
                   EULER,
                   Callback,
                   CountingDenoiser,
                   Denoiser,
                   InputScale,
                   InversionMethod,
                   InversionResult,
                   ModelGradient,
                   Noising,
                   Stage,
                   Stepper,
                   Stepping,
                   StepProblem,
                   StepRule,
                   Sweeps,
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
                   widgets,
)
from .exact import (
                   BDIA_BASES,
                   PRECISIONS,
                   BDIAOptions,
                   BDIASamplerOptions,
                   EDICTOptions,
                   bdia_generate,
                   bdia_invert,
                   bdia_sample,
                   edict_generate,
                   edict_invert,
)
from .fixed_point import ACCELERATIONS, FPI_PAPER, FixedPointOptions, ddim_invert, fixed_point_invert, fixed_point_solve
from .flow import (
                   FLOW_SOLVERS,
                   FlowEditOptions,
                   FlowSolverOptions,
                   RFInversionOptions,
                   check_eta,
                   eta_schedule,
                   flow_edit,
                   flow_solver_invert,
                   flow_solver_sample,
                   rf_inversion_invert,
                   rf_inversion_sample,
)
from .interpolation import CENTROIDS, PATHS, CentroidOptions, PathOptions, centroid, interpolate
from .metrics import PSNR_CAP, psnr, ssim
from .prompt_aware import MODES, PromptAwareOptions, cycle_schedule, prompt_aware_adjust
from .rnri import (
                   FOLD_RATIO,
                   GRADIENTS,
                   TRANSITION_PRIORS,
                   UPDATES,
                   RNRIOptions,
                   flow_transition_prior,
                   fold_ratio,
                   rnri_invert,
                   ve_transition_prior,
)
from .samplers import SAMPLERS, STAGE_SAMPLERS, STOCHASTIC_SAMPLERS, sampler_rule, sampler_stepper, sampler_stepping
from .seed_select import SeedSelectOptions, seed_select

__all__ = [
    "MASK_SOURCES", "P2P_PAPER", "AttentionEditOptions", "EditMemory", "blend_outside", "edit_memory", "edited_token",
    "image_tokens", "injects", "landing_denoised", "threshold_mask", "token_attention",
    "EULER", "Callback", "CountingDenoiser", "Denoiser", "InputScale", "InversionMethod", "InversionResult",
    "ModelGradient", "Noising", "Stage", "Stepper", "Stepping", "StepProblem", "StepRule", "Sweeps",
    "describe_sigmas", "euler_rule", "euler_step", "inverse_step_map", "invert_by_stages", "invert_by_steps",
    "level_scale", "rms", "sample", "to_d", "validate_schedule", "vp_input_scale", "widgets", "PRECISIONS",
    "BDIA_BASES", "BDIAOptions", "BDIASamplerOptions", "EDICTOptions", "bdia_generate", "bdia_invert", "bdia_sample",
    "edict_generate", "edict_invert", "FLOW_SOLVERS",
    "FlowEditOptions", "FlowSolverOptions", "RFInversionOptions", "check_eta", "eta_schedule", "flow_edit",
    "flow_solver_invert",
    "flow_solver_sample", "rf_inversion_invert", "rf_inversion_sample", "ACCELERATIONS", "FPI_PAPER",
    "FixedPointOptions", "ddim_invert", "fixed_point_invert", "fixed_point_solve", "CENTROIDS", "PATHS",
    "CentroidOptions", "PathOptions", "centroid", "interpolate", "PSNR_CAP", "psnr", "ssim", "MODES",
    "PromptAwareOptions", "cycle_schedule", "prompt_aware_adjust", "FOLD_RATIO", "GRADIENTS", "UPDATES",
    "RNRIOptions", "TRANSITION_PRIORS", "flow_transition_prior", "fold_ratio", "rnri_invert", "ve_transition_prior",
    "SeedSelectOptions", "seed_select",
    "SAMPLERS", "STAGE_SAMPLERS", "STOCHASTIC_SAMPLERS", "sampler_rule", "sampler_stepper", "sampler_stepping",
]
