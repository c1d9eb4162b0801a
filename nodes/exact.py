"""EDICT Invert and BDIA Invert: exact inversion, with the coupled samplers that undo it."""
from functools import partial

from comfy_api.latest import io

from ..solvers.exact import (
    PRECISIONS,
    BDIAOptions,
    EDICTOptions,
    bdia_generate,
    bdia_invert,
    edict_generate,
    edict_invert,
)
from . import host
from .common import CATEGORY, InvertInputs, invert_inputs, invert_node, invert_outputs


def edict_pair(denoise, state, partner, sigmas, options: EDICTOptions, **kwargs):
    """EDICT generation returning the first latent of the pair."""
    return edict_generate(denoise, state, partner, sigmas, options, **kwargs)[0]


def exact_inputs(weight: io.Input, precision: str) -> list:
    return invert_inputs() + [weight, io.Combo.Input(
        "precision", options=list(PRECISIONS), default=precision,
        tooltip="Solver state precision. float64 (the authors' choice) keeps the round trip exact to ~1e-7 "
        "whatever the steps; float32 is as fast but lets round-off grow by 1/mix (1/gamma) per step.")]


def exact_outputs() -> list:
    return invert_outputs() + [io.Sampler.Output(display_name="sampler", tooltip="The coupled sampler that "
                                                 "regenerates this seed exactly (SamplerCustom/SamplerCustomAdvanced"
                                                 " with the sigmas output); with other prompts it edits.")]


def edict_sampler(inversion: "host.Inversion", options: EDICTOptions, run: "host.MethodRun") -> "host.CoupledSampler":
    """The coupled EDICT sampler that regenerates this seed."""
    return host.CoupledSampler(inversion.noise, partial(edict_pair, options=options))


def bdia_sampler(inversion: "host.Inversion", options: BDIAOptions, run: "host.MethodRun") -> "host.CoupledSampler":
    """The coupled BDIA sampler that regenerates this seed."""
    return host.CoupledSampler(inversion.noise, partial(bdia_generate, options=options))


EDICT_METHOD = host.MethodSpec(name="edict", kind=host.Kind.EXACT_PAIR, trace=host.Trace.PAIR_GAP,
                               bind=lambda options, run: partial(edict_invert, options=options),
                               sampler=edict_sampler)
BDIA_METHOD = host.MethodSpec(name="bdia", kind=host.Kind.EXACT_PAIR, trace=host.Trace.PAIR_GAP,
                              bind=lambda options, run: partial(bdia_invert, options=options), sampler=bdia_sampler)


EDICT, BDIA = EDICTOptions(), BDIAOptions()


class EDICTInvert(io.ComfyNode):
    OPTIONS = EDICTOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderEDICTInvert",
            display_name="EDICT Invert",
            category=CATEGORY,
            description="EDICT (Wallace et al. 2023): two coupled latents make the sampler exactly invertible, at 2 "
                        "model evaluations per step. Regenerate with its sampler output: the round trip is exact to "
                        "floating point.",
            inputs=exact_inputs(io.Float.Input("mix", default=EDICT.mix, min=0.01, max=1.0, step=0.01,
                                               tooltip="Mixing weight p of the two latents, in (0, 1]; the authors "
                                               "use 0.93. Lower keeps the pair closer but amplifies round-off."),
                                EDICT.precision),
            outputs=exact_outputs(),
        )

    @classmethod
    def execute(cls, mix, precision, **inputs) -> io.NodeOutput:
        return invert_node(EDICT_METHOD, InvertInputs(**inputs), EDICTOptions(mix, precision))


class BDIAInvert(io.ComfyNode):
    OPTIONS = BDIAOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderBDIAInvert",
            display_name="BDIA Invert",
            category=CATEGORY,
            description="BDIA (Zhang, Lewis, Kleijn 2024): a bi-directional sampler whose inverse is explicit, at 1 "
                        "model evaluation per step. Regenerate with its sampler output: the round trip is exact to "
                        "floating point.",
            inputs=exact_inputs(io.Float.Input("gamma", default=BDIA.gamma, min=0.01, max=1.0, step=0.01,
                                               tooltip="Weight γ of the backward correction, > 0; the authors "
                                               "recommend 0.92-1.0 for round-trip editing."), BDIA.precision),
            outputs=exact_outputs(),
        )

    @classmethod
    def execute(cls, gamma, precision, **inputs) -> io.NodeOutput:
        return invert_node(BDIA_METHOD, InvertInputs(**inputs), BDIAOptions(gamma, precision))


NODES = [EDICTInvert, BDIAInvert]
