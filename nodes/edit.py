"""Attention Edit Guider: Prompt-to-Prompt and Plug-and-Play attention control on UNet models, K/V injection and
KV-Edit on Flux, SD3 and Wan, as a GUIDER that the stock SamplerCustomAdvanced drives with an invert node's noise,
sigmas and sampler; its MASK output shows where the edit acts."""
from comfy_api.latest import io

from ..solvers import MASK_SOURCES, AttentionEditOptions
from . import host
from .common import CATEGORY

ATTENTION_EDIT = AttentionEditOptions()


class AttentionEditGuider(io.ComfyNode):
    OPTIONS = AttentionEditOptions

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderAttentionEditGuider",
            display_name="Attention Edit Guider",
            category=CATEGORY,
            description="Edits an inverted image with a target prompt while keeping its layout (Prompt-to-Prompt, "
                        "Hertz et al. 2022; Plug-and-Play, Tumanyan et al. 2023) on UNet models (SD1.x, SD2, SDXL), "
                        "and on Flux, SD3 and Wan (video) by sharing the source's keys and values (FireFlow, KV-Edit). "
                        "The source and the target prompt sample side by side from the seed; for the first steps "
                        "the target takes the source's attention maps (UNet) or image keys and values (DiT). "
                        "Connect the guider to SamplerCustomAdvanced "
                        "with the invert node's noise, sigmas and sampler (euler). With the invert node's noise also "
                        "connected here, the source branch follows the inverted trajectory exactly (DirectInversion's "
                        "correction), so an unedited prompt gives the image back, and the edit keeps to a mask: the "
                        "one drawn, or one found where the prompts differ (shown on the mask output).",
            inputs=[
                io.Model.Input("model", tooltip="The model the image was inverted with: a UNet (SD1.x, SD2, SDXL; "
                               "attention replace patches) or Flux / SD3 / Wan (\"dit\" block patches and the "
                               "attention override)."),
                io.Conditioning.Input("source_positive", tooltip="The prompt the image was inverted with."),
                io.Conditioning.Input("source_negative", optional=True,
                                      tooltip="Negative prompt of the source branch; needed when cfg ≠ 1."),
                io.Conditioning.Input("target_positive", tooltip="The edited prompt: the source's words with the "
                                      "edited ones in their place (the maps go by token position)."),
                io.Conditioning.Input("target_negative", optional=True,
                                      tooltip="Negative prompt of the target branch; needed when cfg ≠ 1."),
                io.Float.Input("cfg", default=ATTENTION_EDIT.cfg, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of both branches; the cfg the image was inverted at keeps the "
                               "source's correction small."),
                io.Float.Input("cross_fraction", default=ATTENTION_EDIT.cross_fraction, min=0.0, max=1.0, step=0.05,
                               tooltip="τ_c: the first fraction of the steps in which the target's cross-attention "
                               "maps are the source's (word swap). Higher keeps more of the layout, lower lets the "
                               "edited words reshape more; 0 is off. UNets only (a DiT's joint attention has no "
                               "separate cross-attention maps)."),
                io.Float.Input("self_fraction", default=ATTENTION_EDIT.self_fraction, min=0.0, max=1.0, step=0.05,
                               tooltip="τ_s: the first fraction of the steps in which the target's self-attention "
                               "maps are the source's (structure); on Flux, SD3 and Wan, in which its image tokens "
                               "attend to the source's keys and values. Higher keeps the shapes, lower allows shape "
                               "edits; 0 is off."),
                io.Noise.Input("noise", optional=True, tooltip="The invert node's noise output (the one "
                               "SamplerCustomAdvanced gets; DDIM, FixedPoint or RNRI Invert with sampler euler): its "
                               "inverted trajectory keeps the source branch exact. Unconnected: both branches sample "
                               "freely from the seed."),
                io.Mask.Input("mask", optional=True, tooltip="Where to edit (1 = edit, e.g. from the mask editor); "
                              "outside it the target stays the source branch at every step (local blend); a latent "
                              "cell (8×8 pixels) it covers less than half of is edited in part. Drawn, it replaces "
                              "the automatic mask. On Wan: one mask for every frame, or one per frame."),
                io.Boolean.Input("auto_mask", optional=True, default=ATTENTION_EDIT.auto_mask,
                                 tooltip="With the noise connected and no mask drawn: find where the prompts differ "
                                 "in a short pass over the inverted trajectory and edit only there (the mask output "
                                 "shows it)."),
                io.Combo.Input("mask_source", optional=True, options=list(MASK_SOURCES),
                               default=ATTENTION_EDIT.mask_source,
                               tooltip="What the automatic mask is read from: where the two prompts' predictions "
                               "differ (DiffEdit), or where the edited word attends (Prompt-to-Prompt's local "
                               "blend; the first token at which the prompts differ)."),
                io.Float.Input("mask_threshold", optional=True, default=ATTENTION_EDIT.mask_threshold, min=0.01,
                               max=0.99, step=0.05, round=0.01, tooltip="The automatic mask keeps the latent "
                               "cells whose map reaches this fraction of its largest value: lower grows the edited "
                               "region."),
                io.Int.Input("mask_steps", optional=True, default=ATTENTION_EDIT.mask_steps, min=1, max=1000,
                             tooltip="The automatic mask's pass: how many of the trajectory's last latents before "
                             "the image it evaluates (each a batch of two evaluations)."),
            ],
            outputs=[io.Guider.Output(display_name="guider", tooltip="For SamplerCustomAdvanced, with the invert "
                                      "node's noise, sigmas and sampler; its output is the edited latent."),
                     io.Mask.Output(display_name="mask", tooltip="The mask the edit keeps to (1 = edited): the one "
                                    "drawn, the automatic one at the pixels its latent cells cover, or all ones when "
                                    "the edit may change everything.")],
        )

    @classmethod
    def execute(cls, model, source_positive, target_positive, cfg, cross_fraction, self_fraction,
                source_negative=None, target_negative=None, noise=None, mask=None,
                auto_mask=ATTENTION_EDIT.auto_mask, mask_source=ATTENTION_EDIT.mask_source,
                mask_threshold=ATTENTION_EDIT.mask_threshold, mask_steps=ATTENTION_EDIT.mask_steps) -> io.NodeOutput:
        options = AttentionEditOptions(cross_fraction, self_fraction, cfg, auto_mask, mask_source, mask_threshold,
                                       mask_steps)
        guider = host.attention_edit_guider(model, host.Prompt(source_positive, source_negative, cfg),
                                            host.Prompt(target_positive, target_negative, cfg), options, noise, mask)
        return io.NodeOutput(guider, host.shown_mask(guider))


NODES = [AttentionEditGuider]
