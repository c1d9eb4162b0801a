"""Input and output checks: a bad input is refused naming the input, what was expected and what came; a non-finite
result names the input most likely at fault."""
import math
from typing import Optional

import torch

from .family import model_family

LATENT_SHAPES = {4: "(batch, channels, height, width)", 5: "(batch, channels, frames, height, width)"}
"""The latents every inverter takes: an image model's, and a video model's (Wan, HunyuanVideo, LTXV, Mochi, Cosmos)."""


def validate_inputs(model, positive, negative, cfg: float, latent: dict, prefix: str = "") -> None:
    """Refuse inputs that cannot be inverted, naming the input (the prompt inputs' names start with `prefix`), what
    was expected and what came."""
    family = model_family(model)
    if not math.isfinite(cfg):
        raise ValueError(f"{prefix}cfg: expected a finite number, got {cfg}")
    samples = latent["samples"]
    if samples.is_nested or samples.ndim not in LATENT_SHAPES:
        got = (f"a nested latent of parts {[tuple(part.shape) for part in samples.unbind()]}" if samples.is_nested
               else f"shape {tuple(samples.shape)}")
        raise ValueError(f"latent: expected an image latent of shape {LATENT_SHAPES[4]} or a video latent of shape "
                         f"{LATENT_SHAPES[5]}, got {got}; audio (3-D) and nested latents are not supported")
    expected = model.get_model_object("latent_format").latent_dimensions + 2
    if samples.ndim != expected:
        kind = {4: "image", 5: "video"}.get(expected, f"{expected}-D")
        raise ValueError(f"latent: this model ({family}) takes {kind} latents of shape "
                         f"{LATENT_SHAPES.get(expected, f'({expected} dimensions)')}, got shape "
                         f"{tuple(samples.shape)}; encode the {kind} with this model's VAE")
    if samples.numel() == 0:
        raise ValueError(f"latent: expected at least one latent of non-zero size, got shape {tuple(samples.shape)}")
    channels = model.get_model_object("latent_format").latent_channels
    if samples.shape[1] != channels:
        raise ValueError(f"latent: this model ({family}) expects {channels} latent channels, got "
                         f"{samples.shape[1]} (shape {tuple(samples.shape)}); encode the image with this model's VAE")
    if not torch.isfinite(samples).all():
        bad = int((~torch.isfinite(samples)).sum())
        raise ValueError(f"latent: expected finite values, got {bad} NaN/inf of {samples.numel()}")
    for name, conditioning in ((f"{prefix}positive", positive), (f"{prefix}negative", negative)):
        if conditioning is None:
            continue
        for cond, _ in conditioning:
            if cond.shape[0] not in (1, samples.shape[0]):
                raise ValueError(f"{name}: expected a conditioning batch of 1 or {samples.shape[0]} (the latent's "
                                 f"batch), got {cond.shape[0]}")
    if negative is None and not math.isclose(cfg, 1.0):
        raise ValueError(f"{prefix}negative: required when {prefix}cfg ≠ 1 (got {prefix}cfg={cfg}); connect a "
                         f"negative prompt or set {prefix}cfg to 1")


LATENT_RANGE = 1e3
"""No VAE encodes an image to model-space values beyond this (SD-class latents stay within about ±10)."""


def nonfinite_cause(model, samples: torch.Tensor, cfg: float, nonfinite_at: Optional[float]) -> str:
    """Why a run produced NaN/inf, naming the input most likely at fault (never let it pass as a result)."""
    peak = float(model.get_model_object("latent_format").process_in(samples.float()).abs().max())
    if peak > LATENT_RANGE:
        return (f"latent: values up to {peak:.3g} (in the model's latent space) made the result NaN/inf; an image "
                f"latent from a VAE stays within about ±{LATENT_RANGE:g}. Check what feeds the latent")
    if nonfinite_at is not None:
        return (f"model: returned NaN/inf at σ={nonfinite_at:.4g} (cfg={cfg:g}); a half-precision overflow is the "
                f"usual cause: load the model with weight_dtype default, or lower cfg")
    return (f"cfg: the solver diverged to NaN/inf at cfg={cfg:g} though every model output was finite; lower cfg "
            f"or use more steps")
