"""BDIA Sampler: BDIA's bi-directional correction as a generation sampler from a random seed (Zhang, Lewis, Kleijn,
ECCV 2024), over DDIM (euler) or EDM's second-order sampler (heun)."""
from functools import partial

from comfy_api.latest import io

from ..solvers.exact import BDIA_BASES, BDIASamplerOptions, bdia_sample
from . import host
from .common import CATEGORY

BDIA_SAMPLER = BDIASamplerOptions()


class BDIASampler(io.ComfyNode):
    OPTIONS = BDIASamplerOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderBDIASampler",
            display_name="BDIA Sampler",
            category=CATEGORY,
            description="BDIA (Zhang, Lewis, Kleijn 2024) as a sampler for SamplerCustom / SamplerCustomAdvanced: "
                        "each step also corrects the step before it, x_{i−1} = Φ(x_i → σ_{i−1}) + γ·(x_{i+1} − "
                        "Φ(x_i → σ_{i+1})), at the base sampler's evaluations. Random noise in, a picture out, on "
                        "every model family. gamma 0 is the base sampler itself.",
            inputs=[
                io.Combo.Input("base", options=list(BDIA_BASES), default=BDIA_SAMPLER.base,
                               tooltip="The sampler BDIA corrects: euler (= DDIM, 1 evaluation per step) or heun "
                               "(EDM's second-order sampler, 2 per step, 1 onto σ = 0)."),
                io.Float.Input("gamma", default=BDIA_SAMPLER.gamma, min=0.0, max=1.0, step=0.01,
                               tooltip="Weight γ of the backward correction in [0, 1]; 0 is the base sampler. The "
                               "authors generate with 0.5 at 10 steps and 1.0 at 40 (docs/methods.md §7)."),
            ],
            outputs=[io.Sampler.Output(display_name="sampler", tooltip="The BDIA sampler, for SamplerCustom or "
                                       "SamplerCustomAdvanced with any SIGMAS (a scheduler's, or BasicScheduler's).")],
        )

    @classmethod
    def execute(cls, base, gamma) -> io.NodeOutput:
        options = BDIASamplerOptions(base, gamma)
        return io.NodeOutput(host.FunctionSampler(f"bdia_{base}", partial(bdia_sample, options=options),
                                                  scaled=True))


NODES = [BDIASampler]
