"""Model patches: where a feature that acts inside the model (attention control for editing) installs itself, through
ComfyUI's own patch points only (never by replacing a model's forward method). Each function returns a patched clone
of the MODEL (ModelPatcher.clone), so the caller's model and every other node's stay as they were; the guided run
then inverts or samples with the patched clone like any other patched model.

- attention replace (UNet transformer blocks): ModelPatcher.set_model_attn1_replace / set_model_attn2_replace, as
  core's Self-Attention Guidance does; the callback gets the block's projected q, k, v and returns the attention output
- attention override (any model whose attention goes through comfy.ldm.modules.attention, DiTs included):
  transformer_options["optimized_attention_override"], called with the attention function and its arguments
- DiT block replace (Flux's double blocks, SD3's joint blocks, Wan's blocks): ModelPatcher.set_model_patch_replace
  with "dit", ("double_block", i), as core's model patches do; the callback gets the block's inputs and
  {"original_block": …}, and runs the block itself
"""
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from comfy.ldm.flux.model import Flux
from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention
from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, UNetModel
from comfy.ldm.wan.model import WanModel

ATTENTIONS = ("attn1", "attn2")
"""A UNet transformer block's self-attention (attn1) and cross-attention to the prompt (attn2)."""

Block = tuple
"""(block_name, number, transformer_index): a UNet transformer block as ComfyUI names it in transformer_options
("input"/"middle"/"output", the index in that list of blocks, the index inside its SpatialTransformer)."""

AttentionReplace = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, dict], torch.Tensor]
"""replace(q, k, v, extra_options) -> attention output (before the block's output projection); extra_options holds
n_heads, dim_head, attn_precision, block, block_index, cond_or_uncond, sigmas and the other transformer_options."""

AttentionOverride = Callable[..., torch.Tensor]
"""override(attention, *args, **kwargs) -> output: runs in place of ComfyUI's attention function `attention`, with
its arguments (q, k, v, heads, …, transformer_options=…)."""


def ordinary_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict) -> torch.Tensor:
    """What the block computes without a patch: ComfyUI's optimized attention of the projected q, k, v."""
    return optimized_attention(q, k, v, heads=extra_options["n_heads"], attn_precision=extra_options["attn_precision"])


@dataclass(frozen=True)
class DitKind:
    """A DiT class whose blocks ComfyUI 0.3.75 calls through "dit" ("double_block", i) replace patches: the list of
    those blocks, the attribute naming its token width, and whether the prompt's tokens join the image's in the
    block's first attention (Flux's and SD3's joint attention; Wan attends to the prompt in a second, cross-attention
    call)."""
    net: type
    blocks: str
    width: str
    joint: bool


DIT_BLOCKS = (DitKind(Flux, "double_blocks", "hidden_size", True), DitKind(MMDiT, "joint_blocks", "hidden_size", True),
              DitKind(WanModel, "blocks", "dim", False))
"""The DiTs the attention edit reaches. Flux's single blocks have ("single_block", i) patches too; SD3's and Wan's
have none other. Wan's subclasses (VACE, camera) call their blocks through the same patches."""

BlockReplace = Callable[[dict, dict], dict]
"""replace(args, {"original_block": block}) -> the block's outputs; args holds img, txt, vec, pe and
transformer_options as the model passes them."""


def dit_double_blocks(model) -> int:
    """How many ("double_block", i) blocks a DiT MODEL (Flux, SD3, Wan) has; 0 for any other model."""
    kind = dit_kind(model)
    return 0 if kind is None else len(getattr(model.get_model_object("diffusion_model"), kind.blocks))


def dit_kind(model) -> Optional[DitKind]:
    """The DIT_BLOCKS row of a MODEL's diffusion model, None for any other model."""
    net = model.get_model_object("diffusion_model")
    return next((kind for kind in DIT_BLOCKS if isinstance(net, kind.net)), None)


def dit_width(model) -> int:
    """A DiT MODEL's token width: the features of each key and value its blocks' attention computes."""
    return int(getattr(model.get_model_object("diffusion_model"), dit_kind(model).width))


def patch_size(model) -> tuple:
    """The DiT's patch (time, height, width) in latent cells: how its image tokens tile the latent."""
    size = model.get_model_object("diffusion_model").patch_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return size if len(size) == 3 else (1, *size)


def blocks_replaced(model, count: int, replace: BlockReplace):
    """A clone of `model` whose ("double_block", i) DiT blocks, i < count, run `replace` around themselves."""
    patched = model.clone()
    for number in range(count):
        patched.set_model_patch_replace(replace, "dit", "double_block", number)
    return patched


def require_unet_or_dit(model, feature: str) -> None:
    """Refuse, naming `model`, a MODEL that is neither a UNet nor a DiT of DIT_BLOCKS."""
    net = model.get_model_object("diffusion_model")
    if not isinstance(net, UNetModel) and not dit_double_blocks(model):
        raise ValueError(f"model: {feature} needs a UNet model (SD1.x, SD2, SDXL class), whose attention ComfyUI's "
                         f"attention replace patches reach, or a DiT whose blocks its \"dit\" patches reach (Flux, "
                         f"SD3, Wan); got {type(net).__name__}")


def require_unet(model, feature: str) -> None:
    """Refuse, naming `model`, a MODEL that is not a UNet (the attention replace patches reach UNet blocks only)."""
    unet = model.get_model_object("diffusion_model")
    if not isinstance(unet, UNetModel):
        raise ValueError(f"model: {feature} needs a UNet model (SD1.x, SD2, SDXL class), whose transformer blocks "
                         f"ComfyUI's attention replace patches reach; got {type(unet).__name__}")


def unet_attention_blocks(model) -> list:
    """Every transformer block of a UNet MODEL as (block_name, number, transformer_index), from the clean input side to
    the output side: the blocks attention_replaced can patch."""
    unet = model.get_model_object("diffusion_model")
    middle = [] if unet.middle_block is None else [unet.middle_block]  # a UNet may be built without one
    stages = [("input", list(unet.input_blocks)), ("middle", middle), ("output", list(unet.output_blocks))]
    blocks = []
    for name, modules in stages:
        for number, module in enumerate(modules):
            for layer in module:
                if isinstance(layer, SpatialTransformer):
                    blocks += [(name, number, index) for index in range(len(layer.transformer_blocks))]
    return blocks


def unet_attention_layers(model) -> list:
    """Every transformer block of a UNet MODEL's input side as (downsampling, width): the latent's cells per token along
    each side, and the features of its self-attention's queries (the output side mirrors them)."""
    unet = model.get_model_object("diffusion_model")
    layers, downsampling = [], 1
    for module in unet.input_blocks:
        for layer in module:
            if isinstance(layer, Downsample) or (isinstance(layer, ResBlock) and layer.updown):  # resblock_updown
                downsampling *= 2
            if isinstance(layer, SpatialTransformer):
                layers += [(downsampling, block.attn1.to_q.out_features) for block in layer.transformer_blocks]
    return layers


def attention_replaced(model, attention: str, blocks: Iterable[Block], replace: AttentionReplace):
    """A clone of `model` whose `attention` (attn1 or attn2) in each of `blocks` runs `replace` instead."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention: expected one of {ATTENTIONS}, got {attention!r}")
    patched = model.clone()
    install = patched.set_model_attn1_replace if attention == "attn1" else patched.set_model_attn2_replace
    for block_name, number, index in blocks:
        install(replace, block_name, number, index)
    return patched


def attention_overridden(model, override: AttentionOverride):
    """A clone of `model` whose every attention call runs `override` (optimized_attention_override)."""
    patched = model.clone()
    patched.model_options["transformer_options"]["optimized_attention_override"] = override
    return patched
