"""The demo's networks at training width, and their exact widening to the widths ComfyUI's file detection expects.

Widening replicates every hidden channel k times CONSECUTIVELY (narrow channel c → wide channels k·c … k·c+k−1), so
group norms (32 groups), layer norms, attention heads and GEGLU halves keep their layout; a layer whose input is
replicated divides its weights by k on that side. Requires `comfy` importable.
"""
import math

import torch

UNET_WIDTH = 64
TAESD_WIDTH = 16
UNET_K = 320 // UNET_WIDTH  # SD15 detection requires model_channels 320
TAESD_K = 64 // TAESD_WIDTH  # ComfyUI's TAESD class is 64 wide
LATENT_CHANNELS = 4


def unet_config(model_channels: int = UNET_WIDTH) -> dict:
    """The demo UNet's UNetModel arguments: SD15-detectable at 320 channels (context 768, conv projections); two
    levels (8×8, 4×4) of one res block and one transformer each, and a middle block."""
    return dict(
        use_checkpoint=False, image_size=8, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, model_channels=model_channels,
        num_res_blocks=[1, 1], channel_mult=[1, 1], transformer_depth=[1, 1],
        transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1, use_linear_in_transformer=False,
        context_dim=768, use_temporal_resblock=False, use_temporal_attention=False, num_heads=8,
        num_head_channels=-1,
    )


def unet(model_channels: int = UNET_WIDTH, device=None):
    """ComfyUI's UNetModel at `model_channels` (weights uninitialised: ComfyUI's ops skip initialisation)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    return UNetModel(**unet_config(model_channels), device=device, operations=comfy.ops.disable_weight_init)


def taesd_encoder(width: int = TAESD_WIDTH) -> torch.nn.Sequential:
    """comfy.taesd.taesd.Encoder's layer layout at `width` channels (state-dict keys match)."""
    from comfy.taesd.taesd import Block, conv
    stages = []
    for _ in range(3):
        stages += [conv(width, width, stride=2, bias=False), Block(width, width), Block(width, width),
                   Block(width, width)]
    return torch.nn.Sequential(conv(3, width), Block(width, width), *stages, conv(width, LATENT_CHANNELS))


def taesd_decoder(width: int = TAESD_WIDTH) -> torch.nn.Sequential:
    """comfy.taesd.taesd.Decoder's layer layout at `width` channels (state-dict keys match)."""
    from comfy.taesd.taesd import Block, Clamp, conv
    stages = []
    for _ in range(3):
        stages += [Block(width, width), Block(width, width), Block(width, width),
                   torch.nn.Upsample(scale_factor=2), conv(width, width, bias=False)]
    return torch.nn.Sequential(Clamp(), conv(LATENT_CHANNELS, width), torch.nn.ReLU(), *stages,
                               Block(width, width), conv(width, 3))


def shapes(module: torch.nn.Module) -> dict:
    """Parameter shapes of a module's state dict."""
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def replicate(tensor: torch.Tensor, wide_shape: tuple, k: int) -> torch.Tensor:
    """Repeat every dim whose wide size is k× the narrow one consecutively; ÷k where the input side (dim 1) grew."""
    out = tensor
    for dim, (narrow, wide) in enumerate(zip(tensor.shape, wide_shape)):
        if wide != narrow:
            assert wide == k * narrow, (tuple(tensor.shape), wide_shape)
            out = out.repeat_interleave(k, dim=dim)
    if tensor.ndim >= 2 and wide_shape[1] != tensor.shape[1]:
        out = out / k
    return out


def timestep_input(weight: torch.Tensor, wide_in: int, k: int) -> torch.Tensor:
    """time_embed.0 at the wide sinusoid: narrow frequency i is wide frequency k·i (cos half, then sin half)."""
    half, wide_half = weight.shape[1] // 2, wide_in // 2
    out = torch.zeros(weight.shape[0], wide_in, dtype=weight.dtype)
    index = torch.arange(half) * k
    out[:, index] = weight[:, :half]
    out[:, wide_half + index] = weight[:, half:]
    return out


def widen_unet(state_dict: dict, k: int = UNET_K) -> dict:
    """The narrow UNet's weights at k× width, computing the same function (float32 in, float32 out)."""
    wide_shapes = shapes(unet(UNET_WIDTH * k, device="meta"))
    out = {}
    for key, value in state_dict.items():
        value = value.float()
        if key == "time_embed.0.weight":
            value = timestep_input(value, wide_shapes[key][1], k)
        # to_k/to_v of attn2 read the 768-wide text context, which is not widened: no special case, as the
        # shapes say (768 → 768) by key
        wide = replicate(value, wide_shapes[key], k)
        if key.endswith(".to_q.weight"):  # the head dimension grows k-fold: q·k grows k-fold, scale only √k
            wide = wide / math.sqrt(k)
        out[key] = wide.contiguous()
    assert out.keys() == wide_shapes.keys()
    return out


def widen_taesd(encoder: dict, decoder: dict, k: int = TAESD_K) -> tuple:
    """The narrow TAESD encoder and decoder at k× width (ComfyUI's TAESD shapes), same function."""
    pairs = ((encoder, taesd_encoder(TAESD_WIDTH * k).to("meta")), (decoder, taesd_decoder(TAESD_WIDTH * k).to("meta")))
    return tuple({key: replicate(value.float(), shapes(net)[key], k).contiguous() for key, value in sd.items()}
                 for sd, net in pairs)
