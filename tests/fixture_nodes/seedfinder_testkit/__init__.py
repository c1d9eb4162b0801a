"""Test-only ComfyUI nodes: tiny in-memory models of families whose file detection needs full-size configs.

Linked into the test host's custom_nodes/ by tests/comfy_host.py; never part of the pack.
"""
import os
import sys

import torch
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))
import tinymodels  # noqa: E402  (tests/ on sys.path above)

# SDXL's structure (linear transformers, 2048-d context, 2816-d ADM vector) at a few channels.
TINY_SDXL_UNET = dict(
    use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False, adm_in_channels=2816,
    num_classes="sequential",
    in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
    transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1,
    use_linear_in_transformer=True, context_dim=2048, use_temporal_resblock=False, use_temporal_attention=False,
    num_head_channels=16, num_heads=-1,
)


def tiny_sdxl(seed: int):
    """MODEL: ComfyUI's SDXL model class (SDXL latent format, ADM conditioning) around a tiny random UNet."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    class TinySDXL(comfy.supported_models.SDXL):
        unet_extra_config = {}

    config = TinySDXL(dict(TINY_SDXL_UNET))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    model.load_model_weights(tinymodels.unet_state_dict(TINY_SDXL_UNET, seed=seed), "")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def sdxl_conditioning(seed: int) -> list:
    """CONDITIONING shaped as SDXL's CLIP-L+G gives it: 77×2048 tokens and a 1280-d pooled vector."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 77, 2048, generator=generator),
             {"pooled_output": torch.randn(1, 1280, generator=generator), "width": 64, "height": 64,
              "target_width": 64, "target_height": 64}]]


class TinySDXL(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderTestTinySDXL", display_name="Tiny SDXL (test)", category="seedfinder_test",
            description="Test-only: a tiny random SDXL-class model with random prompt embeddings.",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2 ** 31, tooltip="Weight and prompt seed.")],
            outputs=[io.Model.Output(), io.Conditioning.Output(display_name="positive"),
                     io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        return io.NodeOutput(tiny_sdxl(seed), sdxl_conditioning(seed + 1), sdxl_conditioning(seed + 2))


class TestkitExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [TinySDXL]


async def comfy_entrypoint() -> TestkitExtension:
    return TestkitExtension()
