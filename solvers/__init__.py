"""Pure-torch inversion solvers. No ComfyUI import: every method is a function of a Denoiser D(x, σ)."""
from .core import (
                   Denoiser,
                   InversionResult,
                   StepProblem,
                   StepRule,
                   describe_sigmas,
                   euler_rule,
                   euler_step,
                   inverse_step_map,
                   invert_by_steps,
                   level_scale,
                   rms,
                   sample,
                   to_d,
                   validate_schedule,
                   vp_input_scale,
)
from .fixed_point import ddim_invert, fixed_point_invert, fixed_point_solve

__all__ = [
    "Denoiser", "InversionResult", "StepProblem", "StepRule", "describe_sigmas", "euler_rule", "euler_step",
    "inverse_step_map", "invert_by_steps", "level_scale", "rms", "sample", "to_d", "validate_schedule",
    "vp_input_scale", "ddim_invert", "fixed_point_invert", "fixed_point_solve",
]
