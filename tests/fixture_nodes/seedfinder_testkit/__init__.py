"""Test-only ComfyUI nodes: tiny in-memory models of families whose file detection needs full-size configs, and
random prompt embeddings for text encoders that cannot be tiny.

Linked into the test host's custom_nodes/ by tests/comfy_host.py; never part of the pack.
"""
import os
import sys
import zlib

import torch
from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))
from support import tinymodels  # noqa: E402  (tests/ on sys.path above)
from support.inprocess import random_conditioning  # noqa: E402

# SDXL's structure (linear transformers, 2048-d context, 2816-d ADM vector) at a few channels.
TINY_SDXL_UNET = dict(
    use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False, adm_in_channels=2816,
    num_classes="sequential",
    in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
    transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1,
    use_linear_in_transformer=True, context_dim=2048, use_temporal_resblock=False, use_temporal_attention=False,
    num_head_channels=16, num_heads=-1,
)


# SD3's MMDiT (16-channel SD3 latent format, rectified flow, shift 3) at depth 2 (hidden size 128).
TINY_SD3_MMDIT = dict(
    in_channels=16, out_channels=16, patch_size=2, depth=2, input_size=None, adm_in_channels=2048,
    context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
    num_patches=256, pos_embed_max_size=16, pos_embed_scaling_factor=None, x_block_self_attn_layers=[],
)

# Flux's double- and single-stream transformer (16-channel Flux latent format, guidance embedding, flow sampling
# with Flux's resolution-dependent shift) at one block of each (hidden size 128, 4 heads).
TINY_FLUX = dict(
    image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=128,
    mlp_ratio=4.0, num_heads=4, depth=1, depth_single_blocks=1, axes_dim=[8, 12, 12], theta=10000, patch_size=2,
    qkv_bias=True, guidance_embed=True,
)


def tiny_model(config_class, unet_config: dict, seed: int):
    """MODEL: a ComfyUI model class (its latent format, sampling and conditioning) around tiny random weights."""
    import comfy.model_management as mm
    import comfy.model_patcher

    class Tiny(config_class):
        unet_extra_config = {}

    config = Tiny(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    shapes = tinymodels.meta_shapes(model.diffusion_model)
    model.load_model_weights(tinymodels.random_state_dict(shapes, seed, tinymodels.WEIGHT_SCALE), "")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def sdxl_conditioning(seed: int) -> list:
    """SDXL's CLIP-L+G: 77×2048 tokens, a 1280-d pooled vector and the size conditioning."""
    return random_conditioning(seed, tokens=2048, pooled=1280, width=64, height=64, target_width=64,
                               target_height=64)


def tiny_schema(family: str, description: str) -> io.Schema:
    """The schema every tiny-model node shares: a seed in; the model and two random prompts out."""
    return io.Schema(
        node_id=f"SeedfinderTestTiny{family}", display_name=f"Tiny {family} (test)", category="seedfinder_test",
        description=f"Test-only: {description}",
        inputs=[io.Int.Input("seed", default=0, min=0, max=2 ** 31, tooltip="Weight and prompt seed.")],
        outputs=[io.Model.Output(), io.Conditioning.Output(display_name="positive"),
                 io.Conditioning.Output(display_name="negative")],
    )


class TinySDXL(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return tiny_schema("SDXL", "a tiny random SDXL-class model with random prompt embeddings.")

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        import comfy.supported_models
        return io.NodeOutput(tiny_model(comfy.supported_models.SDXL, TINY_SDXL_UNET, seed),
                             sdxl_conditioning(seed + 1), sdxl_conditioning(seed + 2))


class TinySD3(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return tiny_schema("SD3", "a tiny random SD3-class model (MMDiT, flow) with random prompt embeddings.")

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        import comfy.supported_models
        return io.NodeOutput(tiny_model(comfy.supported_models.SD3, TINY_SD3_MMDIT, seed),
                             random_conditioning(seed + 1, tokens=4096, pooled=2048),
                             random_conditioning(seed + 2, tokens=4096, pooled=2048))


class TinyFlux(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return tiny_schema("Flux", "a tiny random Flux-dev-class model (guidance-distilled flow transformer) with "
                           "random T5 + CLIP-L prompt embeddings; set guidance with the core FluxGuidance node.")

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        import comfy.supported_models
        return io.NodeOutput(tiny_model(comfy.supported_models.Flux, TINY_FLUX, seed),
                             random_conditioning(seed + 1, tokens=4096, pooled=768),
                             random_conditioning(seed + 2, tokens=4096, pooled=768))


class TextEmbedding(io.ComfyNode):
    """A prompt's stand-in where the real text encoder cannot run on the test host: UMT5-XXL (Wan) and HunyuanVideo's
    LLaMA are built at full size whatever the file holds, and their tokenizers need sentencepiece."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderTestTextEmbedding", display_name="Text embedding (test)", category="seedfinder_test",
            description="Test-only: random prompt embeddings seeded by the text (same text, same embedding), of a "
                        "text encoder's width.",
            inputs=[io.String.Input("text", tooltip="The prompt; only its hash is used."),
                    io.Int.Input("width", default=4096, min=1, max=8192, tooltip="Token width (UMT5-XXL: 4096)."),
                    io.Int.Input("pooled", default=0, min=0, max=4096, tooltip="Pooled vector width, 0 for none "
                                 "(HunyuanVideo: CLIP-L's 768).")],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, text, width, pooled) -> io.NodeOutput:
        return io.NodeOutput(random_conditioning(zlib.crc32(text.encode()), tokens=width, pooled=pooled))


SPOILS = {
    "nan_pixel": lambda image: image.clone().index_put_((torch.tensor([0]), torch.tensor([1]), torch.tensor([2])),
                                                         torch.tensor(float("nan"))),
    "empty": lambda image: image[:, :0, :0],
    "one_pixel": lambda image: image[:, :1, :1],
    "greyscale": lambda image: image.mean(-1, keepdim=True),
    "doubled": lambda image: image * 2.0,
}
"""Images no core node makes, as a careless graph or an API client can still hand them over."""


class SpoiledImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderTestSpoiledImage", display_name="Spoiled image (test)", category="seedfinder_test",
            description="Test-only: the image with one NaN pixel, cut to 0×0 or 1×1, made one-channel, or doubled "
                        "(values up to 2).",
            inputs=[io.Image.Input("image", tooltip="The image to spoil."),
                    io.Combo.Input("spoil", options=list(SPOILS), tooltip="How to spoil it.")],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, image, spoil) -> io.NodeOutput:
        return io.NodeOutput(SPOILS[spoil](image))


class TestkitExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [TinySDXL, TinySD3, TinyFlux, TextEmbedding, SpoiledImage]


async def comfy_entrypoint() -> TestkitExtension:
    return TestkitExtension()
