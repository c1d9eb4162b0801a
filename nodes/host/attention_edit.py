"""An attention-control edit as a GUIDER for SamplerCustomAdvanced (docs/architecture.md §4, docs/methods.md §15).

The guider samples the source and the target branch side by side from the same NOISE as one batch of two, through one
clone of the model. On a UNet its attention runs `branch_attention` (ComfyUI's attention replace patches, patches.py):
for the first τ_c of the steps the target branch's cross-attention maps are the source branch's (Prompt-to-Prompt's
word swap), for the first τ_s its self-attention maps (Plug-and-Play). On Flux, SD3 and Wan each double block runs
through `dit_block` ("dit" block replace) and its attention through `shared_kv` (the attention override): the target's
image tokens take the source's keys and values for the first τ_s of the steps, and outside the mask at every step
(KV-Edit); a Wan video's mask goes frame by frame (`latent_mask`). Before a run `check_memory` refuses an edit whose
copy in one block (`edit_memory`) would not fit. With the invert node's NOISE connected, the source branch follows
the inverted trajectory exactly (DirectInversion's correction), and with no MASK given a short pass over the
trajectory finds one (`automatic_mask`); with a mask, outside it the target branch is the source branch. The stock
sampler sees a batch of two; the guider returns the target branch.
"""
import math
from dataclasses import dataclass
from typing import Optional

import comfy.k_diffusion.sampling
import comfy.model_management
import comfy.samplers
import comfy.utils
import torch
import torch.nn.functional as F

from ...solvers import (
    AttentionEditOptions,
    EditMemory,
    blend_outside,
    describe_sigmas,
    edit_memory,
    edited_token,
    image_tokens,
    injects,
    landing_denoised,
    threshold_mask,
    token_attention,
)
from . import patches
from .checks import nonfinite_cause
from .guided import Prompt
from .handoff import Seed

EDIT_STEP = "seedfinder_edit_step"
"""The key in an evaluation's transformer_options under which the guider hands the attention callbacks its EditStep."""
EDIT_BLOCK = "seedfinder_edit_block"
"""The key in a DiT block's transformer_options under which the block replace hands the attention override its
DitBlock."""


class WordAttention:
    """The automatic mask's running sum: each branch's attention to its edited word (`tokens`, one per row of the
    batch [source × B, target × B]), over the cross-attention layers and the evaluations of the mask pass, at the
    latent's size (B, h, w). The one state the mask pass keeps: a latent-sized map per image."""

    def __init__(self, tokens: torch.Tensor, size: tuple):
        self.tokens, self.size = tokens, size
        self.total = torch.zeros(len(tokens) // 2, *size)

    def add(self, q: torch.Tensor, k: torch.Tensor, extra_options: dict) -> None:
        """Add one cross-attention layer's maps of the conditional rows (its `activations_shape` gives the grid)."""
        height, width = extra_options["activations_shape"][-2:]
        rows = len(self.tokens)
        for chunk, kind in enumerate(extra_options["cond_or_uncond"]):
            if kind != 0:  # 0 is the conditional part: the prompt's words, as CFG's uncond has none
                continue
            part = slice(chunk * rows, (chunk + 1) * rows)
            maps = token_attention(q[part], k[part], extra_options["n_heads"], self.tokens)
            grid = F.interpolate(maps.reshape(rows, 1, height, width), size=self.size, mode="bilinear",
                                 align_corners=False)[:, 0].cpu()
            self.total += grid[:rows // 2] + grid[rows // 2:]


@dataclass(frozen=True)
class EditStep:
    """All the edit keeps for one evaluation: which attentions (attn1, attn2) of the target branch take the source
    branch's maps at this step, and in the mask pass the word attention it adds to. It lives in that evaluation's
    transformer_options only; since both branches run in one batch, no attention map or K/V is stored between blocks
    or steps."""
    injected: frozenset
    words: Optional[WordAttention] = None
    source_tokens: Optional[torch.Tensor] = None
    """DiT: (B, image tokens), 1 where the target's image token takes the source's key and value at this step."""


@dataclass
class EditRun:
    """One sampling run's bookkeeping: the schedule, the latent batch B (the model sees 2B), the mask at the latent's
    size, the trajectory the source branch follows, the first σ at which the model returned NaN/inf."""
    sigmas: list
    batch: int
    mask: Optional[torch.Tensor]
    trajectory: Optional[list]
    nonfinite_at: Optional[float] = None

    def step_of(self, sigma: float) -> int:
        """The step whose interval [σ_{i+1}, σ_i] holds `sigma` (0 at σ_max)."""
        return sum(1 for level in self.sigmas[1:-1] if level >= sigma * (1 - 1e-5))


def mib(size: int) -> str:
    """A byte count as the messages write it (a decimal below 10 MiB)."""
    size /= 2 ** 20
    return f"{size:,.{1 if size < 10 else 0}f} MiB"


def with_source_maps(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunks: int) -> tuple:
    """(q, k, v) in which the target rows' queries and keys are the source rows': the target then computes
    softmax(q_s·k_sᵀ/√d)·v_t, the source's attention maps over its own values (Prompt-to-Prompt's word swap by token
    position in cross-attention, Plug-and-Play's map injection in self-attention). Each of the `chunks` cond/uncond
    parts of the batch is [source × B, target × B]."""
    def from_source(tensor: torch.Tensor) -> torch.Tensor:
        parts = tensor.reshape(chunks, 2, -1, *tensor.shape[1:])
        return parts[:, :1].expand_as(parts).reshape(tensor.shape)

    return from_source(q), from_source(k), v


def branch_attention(attention: str) -> patches.AttentionReplace:
    """The replace callback of `attention` (attn1 or attn2): the source's maps in the target branch at the steps whose
    EditStep injects it, ordinary attention otherwise."""
    def replace(q, k, v, extra_options):
        step = extra_options.get(EDIT_STEP)
        if step is not None and step.words is not None and attention == "attn2":
            step.words.add(q, k, extra_options)
        if step is not None and attention in step.injected:
            q, k, v = with_source_maps(q, k, v, len(extra_options["cond_or_uncond"]))
        return patches.ordinary_attention(q, k, v, extra_options)

    return replace


@dataclass
class DitBlock:
    """What a DiT block's attention override needs to know: how many of the sequence's last tokens are the image's,
    and how many attention calls the block has made (its first is the self or joint attention; Wan's second is
    cross-attention to the prompt)."""
    image_tokens: int
    calls: int = 0


def dit_block(args: dict, extra: dict) -> dict:
    """The "dit" double-block replace: the block itself, its transformer_options naming it a DitBlock."""
    options = {**args["transformer_options"], EDIT_BLOCK: DitBlock(args["img"].shape[1])}
    return extra["original_block"]({**args, "transformer_options": options})


def with_source_kv(k: torch.Tensor, v: torch.Tensor, chunks: int, axis: int, image_tokens: int,
                   take: torch.Tensor) -> tuple:
    """(k, v) in which the target rows' image tokens are the source rows' where `take` (B, image tokens) is 1: the
    target attends to the source's keys and values there (FireFlow / RF-Solver-Edit's injection, KV-Edit's kept
    background). The tokens lie along `axis`, the image's last; each cond/uncond chunk of the batch is
    [source × B, target × B]. Each result is one new tensor the size of its input (what `edit_memory` counts): a
    lerp toward a broadcast view of the source rows, exact where `take` is 0 or 1."""
    batch = take.shape[0]

    def mixed(tensor: torch.Tensor) -> torch.Tensor:
        parts = tensor.reshape(chunks, 2, batch, *tensor.shape[1:])  # the rows are the first axis
        length = tensor.shape[axis]
        weight = tensor.new_zeros(1, 2, batch, length)
        weight[:, 1, :, length - image_tokens:] = take.to(tensor)
        weight = weight.reshape(1, 2, batch, *[1] * (axis - 1), length, *[1] * (tensor.ndim - axis - 1))
        return torch.lerp(parts, parts[:, :1].expand_as(parts), weight).reshape(tensor.shape)

    return mixed(k), mixed(v)


def shared_kv(attention, q, k, v, *args, **kwargs):
    """The attention override of a DiT: in a block's first attention (self or joint), the target's image tokens take
    the source's keys and values where the EditStep says; every other attention runs unchanged."""
    options = kwargs.get("transformer_options") or {}
    block, step = options.get(EDIT_BLOCK), options.get(EDIT_STEP)
    if block is not None and step is not None and step.source_tokens is not None and block.calls == 0:
        if block.image_tokens != step.source_tokens.shape[1]:
            raise ValueError(f"model: the attention edit shares the keys and values of the latent's "
                             f"{step.source_tokens.shape[1]} image tokens, but the blocks see {block.image_tokens}; "
                             f"reference latents joined to the image's tokens (Flux Kontext, Wan's reference image) "
                             f"are not supported")
        k, v = with_source_kv(k, v, len(options["cond_or_uncond"]), 2 if kwargs.get("skip_reshape") else 1,
                              block.image_tokens, step.source_tokens)
    if block is not None:
        block.calls += 1
    return attention(q, k, v, *args, **kwargs)


def token_mask(mask: torch.Tensor, patch: tuple) -> torch.Tensor:
    """A latent-size mask (B, 1, h, w), or a video's (B, 1, frames, h, w), at a DiT's image tokens (B, tokens), in
    the order the DiT patchifies (frame by frame, row by row): each token takes the largest value of the cells its
    patch covers."""
    if mask.ndim == 5:
        return F.max_pool3d(mask.float(), patch, ceil_mode=True).flatten(1)
    return F.max_pool2d(mask.float(), patch[-2:], ceil_mode=True).flatten(1)


def paired_conditioning(source: list, target: list, batch: int, names: tuple) -> list:
    """One CONDITIONING for the batch [source × B, target × B]: each prompt's embedding (and its other tensors, such as
    a pooled vector) repeated to B, the source's first. The maps go by token position, so both prompts need the same
    token count."""
    for name, conditioning in zip(names, (source, target)):
        if len(conditioning) != 1:
            raise ValueError(f"{name}: expected the conditioning of one prompt (as CLIP Text Encode gives), got "
                             f"{len(conditioning)} combined conditionings")
    (source_cond, source_options), (target_cond, target_options) = source[0], target[0]
    if source_cond.shape[1:] != target_cond.shape[1:]:
        raise ValueError(f"{names[1]}: the attention edit maps the source's cross-attention onto the target by token "
                         f"position, so both prompts need the same token count; {names[0]} has "
                         f"{source_cond.shape[1]} tokens of width {source_cond.shape[2]}, {names[1]} "
                         f"{target_cond.shape[1]} of width {target_cond.shape[2]}")

    def pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([comfy.utils.repeat_to_batch_size(a, batch), comfy.utils.repeat_to_batch_size(b, batch)])

    options = dict(source_options)
    for key, value in source_options.items():
        other = target_options.get(key)
        if torch.is_tensor(value) and torch.is_tensor(other) and value.shape == other.shape:
            options[key] = pair(value, other)
    return [[pair(source_cond, target_cond), options]]


VIDEO_FRAMES_PER_LATENT = 4
"""A causal video VAE's (Wan 2.1/2.2, HunyuanVideo) frames per latent frame: latent frame 0 is the clip's first frame,
latent frame t > 0 its frames 4t − 3 … 4t, so a clip of T latent frames has 1 + 4(T − 1) frames."""


def clip_frames(latent_frames: int) -> int:
    """The frames of a clip whose latent has `latent_frames` frames (1 + 4(T − 1))."""
    return 1 + VIDEO_FRAMES_PER_LATENT * (latent_frames - 1)


WHOLE_CELL_COVERAGE = 0.5
"""`cell_coverage`: the fraction of a latent cell a mask must cover for the cell to be edited whole."""


def cell_coverage(planes: torch.Tensor, size: tuple) -> torch.Tensor:
    """Masks (N, 1, H, W) at a latent's cells `size` (h, w): a cell the mask covers at least half of is edited whole
    (1), one it covers less, in proportion (twice the fraction covered). A cell over an object's rim holds object and
    background in one latent; blending it in part keeps the background around the edit (regenerating every touched
    cell whole redraws it), while blending a half-covered rim cell in part leaves the old colour at a tight mask's rim.
    Measured by `python -m bench.edits` with the true mask at the node's defaults on the scenes UNet and its DiT twin
    (docs/methods.md §15, bench/results/README.md), against every touched cell edited whole and against plain
    coverage."""
    return (F.adaptive_avg_pool2d(planes, size) / WHOLE_CELL_COVERAGE).clamp(0, 1)


def latent_mask(mask: torch.Tensor, shape: tuple) -> torch.Tensor:
    """A MASK (H, W) or (B, H, W), 1 = edit, at the size of a latent of `shape` (B, C, h, w) by `cell_coverage`. For a
    video latent (B, C, T, h, w) the MASK's planes are frames, the same for every video of the batch: one for all, one
    per latent frame, or one per frame of the clip (a latent frame takes the largest value of its frames: the video
    VAE mixes them into each of its cells); the result is (1, 1, T, h, w)."""
    planes = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    if len(shape) == 5:
        return video_latent_mask(planes[:, 0], shape)
    if planes.shape[0] not in (1, shape[0]):
        raise ValueError(f"mask: expected 1 mask or one per latent ({shape[0]}), got {planes.shape[0]}")
    return cell_coverage(planes, tuple(shape[-2:]))


def video_latent_mask(frames: torch.Tensor, shape: tuple) -> torch.Tensor:
    """latent_mask of a video: `frames` (F, H, W) at the cells of a latent of `shape` (B, C, T, h, w)."""
    latent_frames = shape[2]
    if frames.shape[0] == clip_frames(latent_frames) and latent_frames > 1:
        first = frames[:1].expand(VIDEO_FRAMES_PER_LATENT - 1, -1, -1)  # frame 0 stands alone in latent frame 0
        frames = torch.cat([first, frames]).reshape(latent_frames, VIDEO_FRAMES_PER_LATENT,
                                                    *frames.shape[-2:]).amax(dim=1)
    elif frames.shape[0] not in (1, latent_frames):
        raise ValueError(f"mask: expected 1 mask, one per latent frame ({latent_frames}) or one per frame of the clip "
                         f"({clip_frames(latent_frames)}), got {frames.shape[0]}")
    cells = cell_coverage(frames[:, None], tuple(shape[-2:]))[:, 0]
    return cells.expand(latent_frames, -1, -1)[None, None]


class TrajectoryEvaluations(comfy.samplers.Sampler):
    """The mask pass as a comfy Sampler: the guided model evaluated at the trajectory's latents of `steps` (both
    branches at the source's latent), summing |D_target − D_source| over the channels and steps into `difference`
    (B, h, w), a video's (B, T, h, w) (DiffEdit's noise-estimate difference); returns the latent it was given."""

    def __init__(self, trajectory: list, steps: list):
        self.trajectory, self.steps = trajectory, steps
        self.difference = torch.zeros(trajectory[0].shape[0], *trajectory[0].shape[2:])

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        for step in self.steps:
            x = self.trajectory[step].to(noise)
            source, target = model_wrap(torch.cat([x, x]), sigmas[step] * x.new_ones(2 * x.shape[0]),
                                        **extra_args).split(x.shape[0])
            self.difference += (target - source).abs().mean(dim=1).float().cpu()
        return latent_image


def mask_pass_steps(steps: int, count: int) -> list:
    """The last `count` steps before the image (of a schedule of `steps`): the latents the mask pass evaluates."""
    return list(range(max(steps - count, 0), steps))


VAE_FACTOR = 8
"""Pixels per latent cell of the VAE of every family the guider takes (SD1.x, SD2, SDXL, SD3, Flux, Wan 2.1 and the
Wan 2.2 14B models): the scale at which the node shows a mask it found."""


class AttentionEditGuider(comfy.samplers.CFGGuider):
    """CFGGuider that samples the source and the target branch of an attention edit as one batch of two and returns
    the target branch (`sample_both` returns both: [source × B, target × B])."""

    def __init__(self, model, source: Prompt, target: Prompt, options: AttentionEditOptions,
                 seed: Optional[Seed] = None, mask: Optional[torch.Tensor] = None):
        patches.require_unet_or_dit(model, "the attention edit")
        dit_blocks = patches.dit_double_blocks(model)
        if dit_blocks:
            if options.mask_source == "cross-attention" and options.auto_mask and mask is None and seed is not None:
                raise ValueError(f"mask_source: cross-attention is read from a UNet's cross-attention layers; a DiT "
                                 f"(Flux, SD3, Wan) takes 'noise difference', got "
                                 f"{type(model.get_model_object('diffusion_model')).__name__}")
            patched = patches.attention_overridden(patches.blocks_replaced(model, dit_blocks, dit_block), shared_kv)
            self.patch = patches.patch_size(model)
        else:
            blocks = patches.unet_attention_blocks(model)
            patched = model
            for attention in patches.ATTENTIONS:
                patched = patches.attention_replaced(patched, attention, blocks, branch_attention(attention))
            self.patch = None
        super().__init__(patched)
        self.set_cfg(options.cfg)
        self.source, self.target, self.options, self.seed, self.mask = source, target, options, seed, mask
        self.run: Optional[EditRun] = None
        self.in_mask_pass = False
        self.words: Optional[WordAttention] = None
        """The cross-attention sum the mask pass adds to, when it reads the mask from cross-attention."""

    def automatic_mask(self) -> torch.Tensor:
        """The automatic mask (B, h, w) at the latent's size (a video's: (B, T, h, w)), 1 = edit, from a short pass
        over the seed's trajectory: both branches evaluated at the source's last `mask_steps` latents before the image,
        with no injection; the map (the denoised estimates' difference |D_target − D_source| averaged over channels,
        or each branch's cross-attention to its edited word, the first token at which the prompts differ) summed over
        those evaluations (and layers) and thresholded (`threshold_mask`)."""
        trajectory = self.seed.trajectory
        shape = tuple(trajectory[0].shape)
        token = edited_token(self.source.positive[0][0][0], self.target.positive[0][0][0])
        if token < 0:
            return torch.zeros(shape[0], *shape[2:])  # the same prompt: nothing to edit
        evaluations = TrajectoryEvaluations(trajectory, mask_pass_steps(len(self.seed.sigmas) - 1,
                                                                         self.options.mask_steps))
        words = WordAttention(torch.full((2 * shape[0],), token), tuple(shape[-2:]))
        self.words = words if self.options.mask_source == "cross-attention" else None
        self.in_mask_pass = True
        zeros = torch.zeros(shape)
        try:
            with torch.no_grad():
                self.sample_pair(zeros, zeros, evaluations, self.seed.sigmas, None, disable_pbar=True, seed=0)
        finally:
            self.words, self.in_mask_pass = None, False
        score = words.total if self.options.mask_source == "cross-attention" else evaluations.difference
        return threshold_mask(score, self.options.mask_threshold)

    def trajectory(self, sampler, sigmas: torch.Tensor, shape: tuple) -> Optional[list]:
        """The seed's inverted trajectory, checked against the sampler, schedule and latent it will correct."""
        if self.seed is None:
            return None
        if getattr(sampler, "sampler_function", None) is not comfy.k_diffusion.sampling.sample_euler:
            raise ValueError("sampler: the exact source branch (noise connected to the guider) corrects euler "
                             "steps; use KSamplerSelect euler (or ddim), or the invert node's sampler output with "
                             "sampler euler")
        inverted = self.seed.sigmas
        if sigmas.shape != inverted.shape or not torch.allclose(sigmas.float().cpu(), inverted, rtol=1e-5, atol=1e-7):
            raise ValueError(f"sigmas: the guider's noise was inverted over {len(inverted) - 1} steps "
                             f"({describe_sigmas(inverted)}), got {len(sigmas) - 1} steps "
                             f"({describe_sigmas(sigmas.float().cpu())}); connect the invert node's sigmas output")
        if tuple(self.seed.trajectory[0].shape) != tuple(shape):
            raise ValueError(f"latent_image: the guider's noise is a seed of shape "
                             f"{tuple(self.seed.trajectory[0].shape)}, got a latent of shape {tuple(shape)}")
        return self.seed.trajectory

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        both = self.sample_both(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
        return both[both.shape[0] // 2:]

    def sample_both(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
                    seed=None) -> torch.Tensor:
        dimensions = self.model_patcher.get_model_object("latent_format").latent_dimensions + 2
        if latent_image.is_nested or latent_image.ndim != dimensions:
            kind = ("a video latent (batch, channels, frames, height, width)" if dimensions == 5 else
                    "an image latent (batch, channels, height, width)")
            raise ValueError(f"latent_image: this model takes {kind}, got shape {tuple(latent_image.shape)}")
        trajectory = self.trajectory(sampler, sigmas, tuple(latent_image.shape))
        return self.sample_pair(noise, latent_image, sampler, sigmas, trajectory, denoise_mask, callback,
                                disable_pbar, seed)

    def sample_pair(self, noise, latent_image, sampler, sigmas, trajectory: Optional[list], denoise_mask=None,
                    callback=None, disable_pbar=False, seed=None) -> torch.Tensor:
        """Both branches as one batch [source × B, target × B], the source corrected onto `trajectory` if given."""
        batch = latent_image.shape[0]
        conds = {"positive": paired_conditioning(self.source.positive, self.target.positive, batch,
                                                 ("source_positive", "target_positive"))}
        if self.source.negative is not None and self.target.negative is not None:
            conds["negative"] = paired_conditioning(self.source.negative, self.target.negative, batch,
                                                    ("source_negative", "target_negative"))
        self.inner_set_conds(conds)
        mask = None if self.mask is None else latent_mask(self.mask, tuple(latent_image.shape))
        self.check_memory(self.memory(tuple(latent_image.shape), len(sigmas) - 1, trajectory is not None,
                                      mask is not None))
        self.run = EditRun(sigmas=sigmas.tolist(), batch=batch, mask=mask, trajectory=trajectory)
        if denoise_mask is not None and denoise_mask.shape[0] > 1:
            denoise_mask = torch.cat([denoise_mask, denoise_mask])
        try:
            output = super().sample(torch.cat([noise, noise]), torch.cat([latent_image, latent_image]), sampler,
                                    sigmas, denoise_mask, callback, disable_pbar, seed)
            nonfinite_at = self.run.nonfinite_at
        finally:
            self.run = None
        if not torch.isfinite(output).all():
            raise ValueError(nonfinite_cause(self.model_patcher, latent_image, self.cfg, nonfinite_at))
        return output

    def memory(self, shape: tuple, steps: int, exact: bool, masked: bool) -> EditMemory:
        """What this edit keeps for a latent of `shape` over `steps` steps (`edit_memory`), from the model's shapes:
        on a DiT every block attends over the image tokens (and the prompt's, in a joint attention) at its width; on
        a UNet the largest self-attention layer is counted."""
        model, net = self.model_patcher, self.model_patcher.model
        if self.patch is not None:
            kind = patches.dit_kind(model)
            tokens = image_tokens(shape[2:], self.patch) + (self.source.positive[0][0].shape[1] if kind.joint else 0)
            width = patches.dit_width(model)
        else:
            tokens, width = max(((image_tokens(shape[2:], (down, down)), width)
                                 for down, width in patches.unet_attention_layers(model)),
                                key=lambda layer: layer[0] * layer[1], default=(0, 0))
        chunks = 1 if math.isclose(self.cfg, 1.0) else 2  # cfg ≠ 1: ComfyUI batches the cond and uncond parts
        itemsize = (net.manual_cast_dtype or net.get_dtype()).itemsize
        return edit_memory(shape, steps, exact, masked, tokens, width, chunks, itemsize)

    def check_memory(self, memory: EditMemory) -> None:
        """Refuse, before any evaluation, an edit whose copy in one block would take more than `memory_fraction` of the
        device's memory: beside the model's own weights and activations such a run would fail partway. The
        trajectory is not checked here: the invert node's seed holds it whether or not an edit reads it."""
        fraction = self.options.memory_fraction
        device = comfy.model_management.get_total_memory(self.model_patcher.load_device)
        if memory.per_block > fraction * device:
            raise ValueError(f"latent_image: a block of the edit copies two attention inputs of both branches "
                             f"(a DiT's keys and values, a UNet's queries and keys: {mib(memory.per_block)}, "
                             f"{memory.tokens} tokens of width {memory.width}, twice with "
                             f"cfg ≠ 1), more than {fraction:.0%} of the device's {mib(device)}; use a smaller latent "
                             f"(resolution, frames) or cfg 1")

    def source_tokens(self, step: int, steps: int, shape: tuple) -> Optional[torch.Tensor]:
        """DiT: which of the target's image tokens (B, tokens) take the source's keys and values at `step` of a latent
        of `shape` (B, C, h, w) or (B, C, T, h, w): every one in the first τ_s of the steps, those outside the mask
        at every step; None on a UNet, in the mask pass, or when none do."""
        run = self.run
        if self.patch is None or self.in_mask_pass:
            return None
        if injects(step, steps, self.options.self_fraction):
            return token_mask(torch.ones(shape[0], 1, *shape[2:]), self.patch)
        if run.mask is None:
            return None
        return (1 - token_mask(run.mask, self.patch)).expand(shape[0], -1)

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006  (CFGGuider's signature)
        comfy.model_management.throw_exception_if_processing_interrupted()
        run = self.run
        sigma = float(timestep[0])
        step = run.step_of(sigma)
        steps = len(run.sigmas) - 1
        injected = frozenset(attention for attention, fraction in (("attn2", self.options.cross_fraction),
                                                                   ("attn1", self.options.self_fraction))
                             if injects(step, steps, fraction) and not self.in_mask_pass)
        transformer_options = {**model_options.get("transformer_options", {}),
                               EDIT_STEP: EditStep(injected, self.words,
                                                    self.source_tokens(step, steps, (run.batch, *x.shape[1:])))}
        denoised = super().predict_noise(x, timestep, {**model_options, "transformer_options": transformer_options},
                                         seed)
        if run.nonfinite_at is None and not torch.isfinite(denoised).all():
            run.nonfinite_at = sigma
        source, target = denoised.split(run.batch)
        if run.trajectory is not None:
            landing = run.trajectory[step + 1].to(x)
            offset = landing_denoised(x[:run.batch], landing, sigma, run.sigmas[step + 1]) - source
            source, target = source + offset, target + offset
        if run.mask is not None:
            target = blend_outside(run.mask.to(target), target, source)
        return torch.cat([source, target])


def attention_edit_guider(model, source: Prompt, target: Prompt, options: AttentionEditOptions, noise=None,
                          mask: Optional[torch.Tensor] = None) -> AttentionEditGuider:
    """The attention edit's GUIDER; `noise` (an invert node's Seed with its trajectory) makes the source exact."""
    for prompt, prefix in ((source, "source_"), (target, "target_")):
        if prompt.negative is None and not math.isclose(options.cfg, 1.0):
            raise ValueError(f"{prefix}negative: required when cfg ≠ 1 (got cfg={options.cfg}); connect a negative "
                             f"prompt or set cfg to 1")
    if noise is not None and getattr(noise, "trajectory", None) is None:
        got = (f"a {noise.method} seed, which keeps none" if isinstance(noise, Seed)
               else f"{type(noise).__name__}, which is not an inverted seed")
        raise ValueError(f"noise: expected the noise output of a DDIM, FixedPoint or RNRI Invert node with sampler "
                         f"euler, which carries its inverted trajectory; got {got}. Leave noise unconnected to sample "
                         f"both branches freely from the seed")
    guider = AttentionEditGuider(model, source, target, options, noise, mask)
    if mask is None and noise is not None and options.auto_mask:
        guider.mask = at_pixels(guider.automatic_mask())
    return guider


def at_pixels(found: torch.Tensor) -> torch.Tensor:
    """A mask found at the latent's cells, (B, h, w), as the MASK of the pixels they cover; a video's (B, T, h, w) as
    one plane per frame of the clip (F, H, W), the same for every video of the batch (edited where any is)."""
    if found.ndim == 4:
        frames = torch.arange(clip_frames(found.shape[1]))
        found = found.amax(dim=0)[(frames + VIDEO_FRAMES_PER_LATENT - 1) // VIDEO_FRAMES_PER_LATENT]
    return found.repeat_interleave(VAE_FACTOR, -2).repeat_interleave(VAE_FACTOR, -1)


def shown_mask(guider: AttentionEditGuider) -> torch.Tensor:
    """The MASK the node shows (B, H, W), a video's (frames, H, W): the one the guider blends with (drawn, or found at
    the latent's cells and shown at the pixels they cover), or, with none, all ones (the edit may change everything)
    at the seed's size if known, else one pixel."""
    if guider.mask is not None:
        return guider.mask.reshape(-1, *guider.mask.shape[-2:]).float()
    if guider.seed is None:
        return torch.ones(1, 1, 1)
    shape = guider.seed.trajectory[0].shape
    planes = clip_frames(shape[2]) if len(shape) == 5 else shape[0]
    return torch.ones(planes, shape[-2] * VAE_FACTOR, shape[-1] * VAE_FACTOR)
