"""Exact inversion by invertible samplers: EDICT (Wallace, Gokul, Naik 2023) and BDIA (Zhang, Lewis, Kleijn, ECCV
2024), in ComfyUI's σ space (docs/methods.md §6, §7). Each is one pair of functions, a denoising
step and its exact inverse, evaluating the model on the same inputs in both directions. BDIA also generates from a
random seed (`bdia_sample`, docs/methods.md §7): its backward correction applied to DDIM (euler) or EDM's heun.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from .core import (
    Callback,
    CountingDenoiser,
    Denoiser,
    InputScale,
    InversionResult,
    level_scale,
    notify,
    rms,
    to_d,
    validate_schedule,
    vp_input_scale,
)
from .samplers import heun_step

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def direction(denoiser: Denoiser, w: torch.Tensor, sigma: float, model_dtype: torch.dtype) -> torch.Tensor:
    """d(w, σ) = (w − D(w, σ))/σ, the model run in its own dtype and the result kept in the state's precision."""
    seen = w.to(model_dtype)
    return to_d(seen, sigma, denoiser(seen, sigma)).to(w.dtype)


def edict_step(denoiser, x, y, sigma_hi, sigma_lo, mix, leapfrog, rescale, model_dtype):
    """EDICT denoising step σ_hi → σ_lo: two cross-coupled Euler updates (the second sees the partner already moved,
    rescaled to σ_lo as the authors' VP code does), then mixing with weight p (Wallace et al. eq. 12-15)."""
    first, second = (y, x) if leapfrog else (x, y)
    first = first + (sigma_lo - sigma_hi) * direction(denoiser, second, sigma_hi, model_dtype)
    second = second + (sigma_lo - sigma_hi) * direction(denoiser, first * rescale, sigma_hi, model_dtype)
    x, y = (second, first) if leapfrog else (first, second)
    x = mix * x + (1 - mix) * y
    y = (1 - mix) * x + mix * y
    return x, y


def edict_inverse_step(denoiser, x, y, sigma_hi, sigma_lo, mix, leapfrog, rescale, model_dtype):
    """The exact inverse of edict_step: un-mix, then undo the two Euler updates in reverse order."""
    y = (y - (1 - mix) * x) / mix
    x = (x - (1 - mix) * y) / mix
    first, second = (y, x) if leapfrog else (x, y)
    second = second - (sigma_lo - sigma_hi) * direction(denoiser, first * rescale, sigma_hi, model_dtype)
    first = first - (sigma_lo - sigma_hi) * direction(denoiser, second, sigma_hi, model_dtype)
    return (second, first) if leapfrog else (first, second)


def bdia_correction(above: torch.Tensor, backward: torch.Tensor, gamma: float, scale: float) -> torch.Tensor:
    """BDIA's refinement γ·c_i·(x_{i+1} − Φ_{i→i+1}(x_i)) of the step that reached x_i (Zhang et al. eq. 16)."""
    return gamma * scale * (above - backward)


def bdia_step(denoiser, above, current, sigma_above, sigma, sigma_below, gamma, scale, model_dtype):
    """BDIA step x_{i−1} = Φ_{i→i−1}(x_i) + γ·c_i·(x_{i+1} − Φ_{i→i+1}(x_i)), one evaluation at (x_i, σ_i) (eq. 16)."""
    d = direction(denoiser, current, sigma, model_dtype)
    return current + (sigma_below - sigma) * d + bdia_correction(above, current + (sigma_above - sigma) * d, gamma,
                                                                 scale)


def bdia_inverse_step(denoiser, below, current, sigma_above, sigma, sigma_below, gamma, scale, model_dtype):
    """The exact inverse of bdia_step: x_{i+1} = Φ_{i→i+1}(x_i) + (x_{i−1} − Φ_{i→i−1}(x_i))/(γ·c_i)."""
    d = direction(denoiser, current, sigma, model_dtype)
    return current + (sigma_above - sigma) * d + (below - (current + (sigma_below - sigma) * d)) / (gamma * scale)


def state_dtype(precision: str) -> torch.dtype:
    """The solver state's dtype for a `precision` name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def check_weight(name: str, value: float, upper: Optional[float]) -> None:
    """mix ∈ (0, 1], gamma > 0 (both are divided by in the inverse)."""
    if value <= 0 or (upper is not None and value > upper):
        expected = f"a value in (0, {upper:g}]" if upper is not None else "a value > 0"
        raise ValueError(f"{name}: expected {expected}, got {value}")


@dataclass(frozen=True)
class EDICTOptions:
    """EDICT Invert's options. These defaults are the node's (and the authors'): its schema, bench/ and the tests
    read them here."""
    mix: float = 0.93
    """The mixing weight p of the two latents, in (0, 1]."""
    precision: str = "float64"
    """The solver state's precision (a key of PRECISIONS)."""

    def __post_init__(self):
        check_weight("mix", self.mix, 1.0)
        state_dtype(self.precision)


@dataclass(frozen=True)
class BDIAOptions:
    """BDIA Invert's options. These defaults are the node's: its schema, bench/ and the tests read them here."""
    gamma: float = 0.96
    """The weight γ > 0 of the backward correction (the authors: 0.92-1.0 for round-trip editing)."""
    precision: str = "float64"
    """The solver state's precision (a key of PRECISIONS)."""

    def __post_init__(self):
        check_weight("gamma", self.gamma, None)
        state_dtype(self.precision)


def edict_generate(denoiser: Denoiser, x: torch.Tensor, y: torch.Tensor, sigmas: torch.Tensor,
                   options: EDICTOptions = EDICTOptions(), *, input_scale: InputScale = vp_input_scale,
                   callback: Optional[Callback] = None, model_dtype: Optional[torch.dtype] = None) -> tuple:
    """EDICT sampling of the pair (x, y) over a descending schedule; leapfrog alternates the update order.
    The model runs in `model_dtype` (default: the state's), as the inversion ran it."""
    mix = options.mix
    values, steps = sigmas.tolist(), len(sigmas) - 1
    model_dtype = model_dtype or x.dtype
    for i in range(steps):
        rescale = level_scale(input_scale, values[i + 1], values[i])
        x, y = edict_step(denoiser, x, y, values[i], values[i + 1], mix, i % 2 == 1, rescale, model_dtype)
        notify(callback, step=i, steps=steps, iteration=0, residual=float(rms(x - y).max()))
    return x, y


def edict_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, options: EDICTOptions = EDICTOptions(),
                 *, input_scale: InputScale = vp_input_scale, callback: Optional[Callback] = None) -> InversionResult:
    """EDICT inversion from x = y = x0 up the schedule; the pair (x_N, y_N) regenerates x0 exactly by edict_generate.
    Residuals: per step, the RMS gap between the two latents."""
    validate_schedule(sigmas)
    mix = options.mix
    values, steps = sigmas.tolist(), len(sigmas) - 1
    x = y = x0.to(state_dtype(options.precision))
    residuals, progress = [], {"step": 0, "steps": steps, "iteration": 0, "residual": 0.0}
    counter = CountingDenoiser(denoiser, lambda: notify(callback, **progress))
    for count, i in enumerate(reversed(range(steps))):
        progress["step"] = count
        rescale = level_scale(input_scale, values[i + 1], values[i])
        x, y = edict_inverse_step(counter, x, y, values[i], values[i + 1], mix, i % 2 == 1, rescale, x0.dtype)
        residuals.append([float(rms(x - y).max())])
        progress["residual"] = residuals[-1][0]
    return InversionResult(latent=x, residuals=residuals, evaluations=counter.evaluations, extras={"partner": y})


def bdia_scales(sigmas: list, input_scale: InputScale) -> list:
    """c_i = s_{i+1}/s_{i−1} with s = c_in(σ): matches the authors' VP formulation (1 for flow models)."""
    return [level_scale(input_scale, sigmas[i + 1], sigmas[i - 1]) if 0 < i < len(sigmas) - 1 else 1.0
            for i in range(len(sigmas))]


def bdia_generate(denoiser: Denoiser, above: torch.Tensor, current: torch.Tensor, sigmas: torch.Tensor,
                  options: BDIAOptions = BDIAOptions(), *, input_scale: InputScale = vp_input_scale,
                  callback: Optional[Callback] = None, model_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """BDIA sampling from the pair (x_N, x_{N−1}) down to x_0 (N − 1 evaluations), the model in `model_dtype`."""
    gamma = options.gamma
    model_dtype = model_dtype or current.dtype
    ascending = sigmas.flip(0).tolist()  # σ_0 = 0 < σ_1 < … < σ_N
    scales = bdia_scales(ascending, input_scale)
    steps = len(ascending) - 1
    for i in range(steps - 1, 0, -1):
        above, current = current, bdia_step(denoiser, above, current, ascending[i + 1], ascending[i],
                                            ascending[i - 1], gamma, scales[i], model_dtype)
        notify(callback, step=steps - 1 - i, steps=steps - 1, iteration=0, residual=0.0)
    return current


def bdia_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, options: BDIAOptions = BDIAOptions(), *,
                input_scale: InputScale = vp_input_scale, callback: Optional[Callback] = None) -> InversionResult:
    """BDIA inversion: one DDIM-inversion step to σ_1 (any first step stays exact), then the exact BDIA inverse up to
    σ_N; returns the pair (x_N, x_{N−1}). Residuals: per step, the RMS size of the step."""
    validate_schedule(sigmas)
    gamma = options.gamma
    ascending = sigmas.flip(0).tolist()
    scales = bdia_scales(ascending, input_scale)
    steps = len(ascending) - 1
    progress = {"step": 0, "steps": steps, "iteration": 0, "residual": 0.0}
    counter = CountingDenoiser(denoiser, lambda: notify(callback, **progress))
    below = x0.to(state_dtype(options.precision))
    current = below + ascending[1] * direction(counter, below, ascending[1], x0.dtype)
    residuals = [[float(rms(current - below).max())]]
    for i in range(1, steps):
        progress.update(step=i, residual=residuals[-1][0])
        below, current = current, bdia_inverse_step(counter, below, current, ascending[i + 1], ascending[i],
                                                    ascending[i - 1], gamma, scales[i], x0.dtype)
        residuals.append([float(rms(current - below).max())])
    return InversionResult(latent=current, residuals=residuals, evaluations=counter.evaluations,
                           extras={"partner": below})


class FirstOutput:
    """A denoiser that remembers its first output, D(x_i, σ_i) of a step: BDIA's backward step reuses it."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser, self.first = denoiser, None

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        denoised = self.denoiser(x, sigma)
        if self.first is None:
            self.first = denoised
        return denoised


def euler_forward(denoiser: Denoiser, x: torch.Tensor, sigma_hi: float, sigma_lo: float) -> torch.Tensor:
    """DDIM's step in σ space, Φ_{i→i−1}(x_i) = x_i + (σ_{i−1} − σ_i)·d(x_i, σ_i)."""
    return x + (sigma_lo - sigma_hi) * to_d(x, sigma_hi, denoiser(x, sigma_hi))


def euler_backward(x: torch.Tensor, d: torch.Tensor, d_above: torch.Tensor, sigma: float,
                   sigma_above: float) -> torch.Tensor:
    """BDIA-DDIM's backward map Φ_{i→i+1}(x_i) = x_i + (σ_{i+1} − σ_i)·d(x_i, σ_i) (Zhang et al. eq. 16)."""
    return x + (sigma_above - sigma) * d


def trapezoid_backward(x: torch.Tensor, d: torch.Tensor, d_above: torch.Tensor, sigma: float,
                       sigma_above: float) -> torch.Tensor:
    """BDIA-EDM's backward map, second order like heun at no evaluation: the trapezoid rule between d(x_i, σ_i) and
    the d(x_{i+1}, σ_{i+1}) the step above already evaluated."""
    return x + (sigma_above - sigma) * (d + d_above) / 2


BDIA_BASES = {"euler": (euler_forward, euler_backward), "heun": (heun_step, trapezoid_backward)}
"""The sampler BDIA refines: its forward step Φ_{i→i−1} and the backward map Φ_{i→i+1} (docs/methods.md §7)."""


@dataclass(frozen=True)
class BDIASamplerOptions:
    """BDIA Sampler's options. These defaults are the node's: its schema, bench/ and the tests read them here."""
    base: str = "euler"
    """The sampler BDIA refines (a key of BDIA_BASES): euler (= DDIM) or heun (EDM's second-order sampler)."""
    gamma: float = 0.5
    """The weight γ ∈ [0, 1] of the backward correction; 0 is the base sampler (the authors' text-to-image code:
    0.5)."""

    def __post_init__(self):
        if self.base not in BDIA_BASES:
            raise ValueError(f"base: expected one of {', '.join(BDIA_BASES)}, got {self.base!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected a value in [0, 1], got {self.gamma}")


def bdia_sample(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                options: BDIASamplerOptions = BDIASamplerOptions(), *, input_scale: InputScale = vp_input_scale,
                callback: Optional[Callback] = None) -> torch.Tensor:
    """BDIA generation from x at sigmas[0] (Zhang et al. eq. 16, their text-to-image code): the base sampler's first
    step, then x_{i−1} = Φ_{i→i−1}(x_i) + γ·c_i·(x_{i+1} − Φ_{i→i+1}(x_i)) down to sigmas[-1], at the base's
    evaluations."""
    forward, backward = BDIA_BASES[options.base]
    values, steps = sigmas.tolist(), len(sigmas) - 1
    above = d_above = None
    for i in range(steps):
        sigma, sigma_below = values[i], values[i + 1]
        seen = FirstOutput(denoiser)
        below = forward(seen, x, sigma, sigma_below)
        d = to_d(x, sigma, seen.first)
        if above is not None and options.gamma:
            scale = level_scale(input_scale, values[i - 1], sigma_below)
            below = below + bdia_correction(above, backward(x, d, d_above, sigma, values[i - 1]), options.gamma,
                                            scale)
        above, d_above, x = x, d, below
        notify(callback, step=i, steps=steps, iteration=0, residual=0.0)
    return x
