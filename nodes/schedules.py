"""Trailing Scheduler: diffusers' "trailing" timestep spacing, the schedule of SDXL-Turbo, RNRI and ReNoise."""
import torch
from comfy_api.latest import io

from . import host
from .common import CATEGORY


def trailing_timesteps(steps: int, train_steps: int = 1000) -> torch.Tensor:
    """round(T − k·T/steps) − 1 for k = 0 … steps−1: 999, 749, 499, 249 for 4 steps (diffusers `trailing`)."""
    return (train_steps - torch.arange(steps, dtype=torch.float64) * train_steps / steps).round() - 1


class TrailingScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderTrailingScheduler",
            display_name="Trailing Scheduler",
            category=CATEGORY,
            description="SIGMAS at diffusers' 'trailing' timesteps (4 steps: t = 999, 749, 499, 249), the schedule "
                        "SDXL-Turbo and the RNRI/ReNoise papers use. ComfyUI's SDTurboScheduler uses other timesteps "
                        "(999, 899, …). Feed it to an invert node's sigmas and to the sampler.",
            inputs=[
                io.Model.Input("model", tooltip="The model whose noise levels the timesteps are read from."),
                io.Int.Input("steps", default=4, min=1, max=1000, tooltip="Number of steps."),
            ],
            outputs=[io.Sigmas.Output(tooltip="σ(t) at the trailing timesteps, then 0.")],
        )

    @classmethod
    def execute(cls, model, steps) -> io.NodeOutput:
        sigmas = host.timestep_sigmas(model, trailing_timesteps(steps))
        return io.NodeOutput(torch.cat([sigmas, sigmas.new_zeros(1)]))


NODES = [TrailingScheduler]
