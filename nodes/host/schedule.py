"""The σ schedule an invert node inverts: the user's SIGMAS, or exactly what KSamplerAdvanced walks with the same
widgets."""
from dataclasses import dataclass
from typing import Optional

import comfy.samplers
import torch

from ...solvers import describe_sigmas, validate_schedule

SCHEDULER_NAMES = comfy.samplers.SCHEDULER_NAMES
"""ComfyUI's schedulers, the options of every scheduler widget."""


@dataclass
class Schedule:
    """The σ's to invert, and where KSamplerAdvanced starts on them (None for a user's SIGMAS)."""
    sigmas: torch.Tensor
    start_at_step: Optional[int]


def build_schedule(model, steps: int, scheduler: str, strength: float, sigmas: Optional[torch.Tensor],
                   sampler: str = "euler") -> Schedule:
    """The user's SIGMAS, or what KSamplerAdvanced samples with the same widgets: `scheduler`'s real schedule at
    `steps` (some schedulers return more or fewer steps, e.g. ddim_uniform at 6 gives 7; for dpm_2 and uni_pc
    KSampler computes steps + 1 and drops the penultimate σ) from start_at_step = steps − round(steps·strength) on."""
    if sigmas is not None:
        sigmas = sigmas.detach().float().cpu()
        validate_schedule(sigmas)
        return Schedule(sigmas, None)
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength: expected a value in (0, 1] (1 = invert all the way to noise), got {strength}")
    if steps < 1:
        raise ValueError(f"steps: expected at least 1, got {steps}")
    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise ValueError(f"scheduler: expected one of {', '.join(comfy.samplers.SCHEDULER_NAMES)}, got {scheduler!r}")
    discard = sampler in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    full = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler,
                                           steps + 1 if discard else steps).float().cpu()
    if discard:
        full = torch.cat([full[:-2], full[-1:]])
    if not torch.isfinite(full).all():
        raise ValueError(f"scheduler: {scheduler} at {steps} steps gives non-finite σ's {describe_sigmas(full)}; "
                         f"use more steps or another scheduler")
    start_at_step = steps - max(1, round(steps * strength))
    if start_at_step >= len(full) - 1:
        raise ValueError(f"strength: {scheduler} at {steps} steps gives a schedule of {len(full) - 1} steps, and "
                         f"start_at_step = steps − round(steps·strength) = {start_at_step} leaves none of it to invert "
                         f"(KSamplerAdvanced would return the latent unchanged); raise strength")
    schedule = full[start_at_step:]
    try:
        validate_schedule(schedule)
    except ValueError as error:  # the σ's come from these widgets, not from the unconnected sigmas input
        computed = f" (KSampler computes steps + 1 for {sampler})" if discard else ""
        raise ValueError(f"scheduler: {scheduler} at {steps} steps{computed} gives σ's that cannot be sampled: "
                         f"{str(error).removeprefix('sigmas: ')}; use fewer steps or another scheduler") from None
    return Schedule(schedule, start_at_step)
