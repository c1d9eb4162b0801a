"""Seedfinder's ComfyUI V3 nodes. The only package of the pack that imports comfy."""
from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from . import edit, encode, exact, fidelity, flow, generate, invert, schedules, seeds

NODES = [*invert.NODES, *exact.NODES, *generate.NODES, *flow.NODES, *edit.NODES, *encode.NODES, *schedules.NODES,
         *seeds.NODES, *fidelity.NODES]


class SeedfinderExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> SeedfinderExtension:
    return SeedfinderExtension()
