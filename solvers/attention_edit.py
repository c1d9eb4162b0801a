"""Attention-control editing (Prompt-to-Prompt, Plug-and-Play) with an exact source branch (DirectInversion): the pure
parts (docs/methods.md §15). The source and the target branch sample side by side from one seed; for the first
fraction of the steps the target branch attends with the source branch's attention maps; the source branch is kept on
the inverted trajectory by a per-step correction of its denoised estimate; outside a mask the target is the source."""
import math
from dataclasses import dataclass, field

import torch

from .core import NOT_ON_NODE

MASK_SOURCES = ("noise difference", "cross-attention")
"""What an automatic mask is read from: the prompts' prediction difference, or the edited word's attention."""


@dataclass(frozen=True)
class AttentionEditOptions:
    """The attention edit's options. These defaults are the node's: its schema, bench/ and the tests read them here.
    The fractions are measured by `python -m bench.edits` (bench/results/edits.md): on the scenes UNet these and
    Prompt-to-Prompt's own 0.8 / 0.4 edit every colour and shape edit of six each with the automatic mask, and keep
    the background within 0.1 dB of each other on both."""
    cross_fraction: float = 0.4
    """τ_c: the first fraction of the steps in which the target branch's cross-attention maps are the source's
    (Prompt-to-Prompt's word swap)."""
    self_fraction: float = 0.6
    """τ_s: the first fraction of the steps in which the target branch's self-attention maps are the source's
    (Plug-and-Play's map injection)."""
    cfg: float = 1.0
    """Guidance of both branches (the scale the seed was inverted at keeps the correction small)."""
    auto_mask: bool = True
    """With the seed's trajectory and no mask given: edit only where the prompts' predictions differ (or where the
    edited word attends), found by a short pass over the trajectory; elsewhere the target is the source (local
    blend). Measured on the scenes UNet and its DiT twin by `python -m bench.edits`."""
    mask_source: str = "noise difference"
    """What the automatic mask is read from (MASK_SOURCES): the difference of the two prompts' denoised estimates at
    the source's latents (DiffEdit, Couairon et al. 2023), or each prompt's cross-attention to its edited word
    (Prompt-to-Prompt's local blend). On the demo ε model the cross-attention maps do not locate the words."""
    mask_threshold: float = 0.3
    """The automatic mask: latent cells whose map reaches this fraction of its largest value. On the scenes UNet
    (`python -m bench.edits`) 0.4 with 4 steps keeps 0.9 dB more background on colour edits and 2 dB more on shape
    edits at the same success (6 of 6), but edits no background (0 of 6; 0.3 with 8 steps: 1 of 6)."""
    mask_steps: int = 8
    """The automatic mask: how many of the trajectory's last latents before the image the map is summed over (each a
    batch of two evaluations; near the image the prediction differs where the edit is)."""
    memory_fraction: float = field(default=0.5, metadata=NOT_ON_NODE)
    """The memory guard's budget (`edit_memory`): the edit is refused before it runs when the copy one block makes
    (keys and values of both branches) would take more than this fraction of the device's memory, beside which the
    model's own weights and activations could not fit."""

    def __post_init__(self):
        for name in ("cross_fraction", "self_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a fraction of the steps in [0, 1], got {value}")
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source: expected one of {MASK_SOURCES}, got {self.mask_source!r}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold: expected a fraction in (0, 1), got {self.mask_threshold}")
        if self.mask_steps < 1:
            raise ValueError(f"mask_steps: expected at least 1 step, got {self.mask_steps}")
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction: expected a fraction in (0, 1], got {self.memory_fraction}")
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


def edited_token(source: torch.Tensor, target: torch.Tensor) -> int:
    """The first token position at which two prompt embeddings (tokens, width) differ: the edited word. A causal text
    encoder (CLIP) changes every later token too, so the first difference is the one that names the edit; -1 if the
    prompts are the same."""
    changed = (source - target).abs().amax(dim=-1) > 1e-6 * source.abs().amax()
    return int(changed.nonzero()[0]) if changed.any() else -1


def token_attention(q: torch.Tensor, k: torch.Tensor, heads: int, tokens: torch.Tensor) -> torch.Tensor:
    """Each query's attention to its row's token `tokens[b]`, averaged over the heads: softmax(q·kᵀ/√d)[..., token]
    (q: (B, N, heads·d), k: (B, T, heads·d); a (B, N) map, Prompt-to-Prompt's cross-attention map of a word)."""
    batch, queries, width = q.shape
    dim = width // heads
    q = q.reshape(batch, queries, heads, dim).transpose(1, 2).float()
    k = k.reshape(batch, -1, heads, dim).transpose(1, 2).float()
    probabilities = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim), dim=-1)
    picked = probabilities.gather(-1, tokens.to(q.device).reshape(batch, 1, 1, 1).expand(-1, heads, queries, 1))
    return picked.mean(dim=1)[..., 0]


def threshold_mask(score: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where a (B, h, w) score map (a video's: (B, frames, h, w)) reaches `threshold` of its largest value, per
    image (Prompt-to-Prompt's local blend and DiffEdit: normalised by the maximum, thresholded)."""
    peak = score.flatten(1).amax(dim=1).clamp_min(1e-12).reshape(-1, *[1] * (score.ndim - 1))
    return (score >= threshold * peak).to(score.dtype)


FP32_BYTES = 4
"""The trajectory and the mask's sum are kept in float32."""


@dataclass(frozen=True)
class EditMemory:
    """What the attention edit holds beyond a plain sample of its batch of two (for which ComfyUI sizes its memory
    itself), in bytes, from the shapes (docs/methods.md §15)."""
    per_step: int
    """One σ's latent of the seed's trajectory (float32, on the CPU), read by the exact source branch: one per σ."""
    steps: int
    mask_map: int
    """The mask at the latent's cells, drawn or found (the automatic mask's running sum is the same size)."""
    per_block: int
    """The largest copy one block makes and frees on the device: on a DiT, the target's keys and values with the
    source's image tokens; on a UNet, the source's queries and keys given to the target rows."""
    tokens: int
    width: int

    @property
    def trajectory(self) -> int:
        """The trajectory the source branch reads: steps + 1 latents."""
        return (self.steps + 1) * self.per_step


def edit_memory(latent_shape: tuple, steps: int, exact: bool, masked: bool, tokens: int, width: int, chunks: int,
                itemsize: int) -> EditMemory:
    """The state the edit keeps for a latent of `latent_shape` (B, C, h, w) or (B, C, frames, h, w) over `steps`
    steps: the trajectory if `exact`, the latent-sized mask if `masked`; and per block two tensors (keys and values,
    or queries and keys) of `tokens` × `width` for each of the 2B rows of the `chunks` cond/uncond parts batched
    together, `itemsize` bytes each."""
    latent = math.prod(latent_shape) * FP32_BYTES
    cells = latent_shape[0] * math.prod(latent_shape[2:]) * FP32_BYTES
    per_block = 2 * chunks * 2 * latent_shape[0] * tokens * width * itemsize
    return EditMemory(latent if exact else 0, steps, cells if masked else 0, per_block, tokens, width)


def image_tokens(extent: tuple, patch: tuple) -> int:
    """The tokens of a latent of spatial `extent` ((h, w) or (T, h, w)) cut into patches of `patch` cells (padded up to
    whole patches, as ComfyUI's DiTs pad): a DiT's image tokens, or a UNet attention layer's queries at a
    downsampling d with patch (d, d)."""
    return math.prod(math.ceil(size / cut) for size, cut in zip(extent, patch[-len(extent):]))
