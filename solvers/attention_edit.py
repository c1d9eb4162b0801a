"""Attention-control editing (Prompt-to-Prompt, Plug-and-Play) with an exact source branch (DirectInversion): the pure
parts (docs/methods.md §15). The source and the target branch sample side by side from one seed; for the first
fraction of the steps the target branch attends with the source branch's attention maps; the source branch is kept on
the inverted trajectory by a per-step correction of its denoised estimate; outside a mask the target is the source."""
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionEditOptions:
    """The attention edit's options. These defaults are the node's: its schema, bench/ and the tests read them here.
    The fractions are measured on the demo ε model by `python -m bench.edits` (bench/results/edits.md): Prompt-to-
    Prompt's own 0.8 / 0.4 held a colour word's old look in one of six colour edits there; 0.4 / 0.6 lost none
    against re-prompting and kept the background best of the settings that lost none."""
    cross_fraction: float = 0.4
    """τ_c: the first fraction of the steps in which the target branch's cross-attention maps are the source's
    (Prompt-to-Prompt's word swap)."""
    self_fraction: float = 0.6
    """τ_s: the first fraction of the steps in which the target branch's self-attention maps are the source's
    (Plug-and-Play's map injection)."""
    cfg: float = 1.0
    """Guidance of both branches (the scale the seed was inverted at keeps the correction small)."""

    def __post_init__(self):
        for name in ("cross_fraction", "self_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a fraction of the steps in [0, 1], got {value}")
        if not math.isfinite(self.cfg) or self.cfg < 0:
            raise ValueError(f"cfg: expected a finite number ≥ 0, got {self.cfg}")


P2P_PAPER = AttentionEditOptions(cross_fraction=0.8, self_fraction=0.4)
"""Prompt-to-Prompt's word-swap settings (cross_replace_steps 0.8, self_replace_steps 0.4)."""


def injects(step: int, steps: int, fraction: float) -> bool:
    """Whether `step` (0 at σ_max) is among the first round(fraction·steps) steps: Prompt-to-Prompt's t > (1 − τ)·T."""
    return step < round(fraction * steps)


def landing_denoised(x: torch.Tensor, x_next: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """The denoised estimate whose Euler step from (x, σ) lands on x_next: x + (σ' − σ)(x − D)/σ = x_next gives
    D = x − σ·(x_next − x)/(σ' − σ) (at σ' = 0, D = x_next). DirectInversion's correction written for the euler step:
    the source branch's D plus (this − D) lands on the inverted trajectory's next latent."""
    return x - sigma * (x_next - x) / (sigma_next - sigma)


def blend_outside(mask: torch.Tensor, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """mask·target + (1 − mask)·source: Prompt-to-Prompt's local blend (1 = edit, 0 = keep the source)."""
    return mask * target + (1 - mask) * source
