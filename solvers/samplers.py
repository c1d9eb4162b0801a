"""ComfyUI's stochastic samplers as step rules x_lo = a·Euler(x_hi; σ_hi → s) + b·n_i (docs/methods.md §5).

With the per-step noises n_i fixed, each step's deterministic part is an Euler step to s, so every inverter
inverts them unchanged; the sampler that regenerates the image must reuse the same n_i.
"""
import math

from .core import StepRule, euler_rule

SAMPLERS = ("euler", "euler_ancestral", "lcm")


def ancestral_rule(eta: float = 1.0, s_noise: float = 1.0) -> StepRule:
    """Euler-ancestral (k-diffusion get_ancestral_step): step to σ_down, add σ_up·n_i."""
    def rule(sigma_hi: float, sigma_lo: float) -> tuple:
        if not eta:
            return 1.0, 0.0, sigma_lo
        sigma_up = min(sigma_lo, eta * math.sqrt(sigma_lo ** 2 * (sigma_hi ** 2 - sigma_lo ** 2) / sigma_hi ** 2))
        return 1.0, s_noise * sigma_up, math.sqrt(sigma_lo ** 2 - sigma_up ** 2)
    return rule


def flow_ancestral_rule(eta: float = 1.0, s_noise: float = 1.0) -> StepRule:
    """Euler-ancestral for rectified flow (ComfyUI's sample_euler_ancestral_RF): Euler to σ_down, rescale, renoise."""
    def rule(sigma_hi: float, sigma_lo: float) -> tuple:
        if sigma_lo == 0:
            return 1.0, 0.0, 0.0
        sigma_down = sigma_lo * (1 + (sigma_lo / sigma_hi - 1) * eta)
        alpha_lo, alpha_down = 1 - sigma_lo, 1 - sigma_down
        renoise = math.sqrt(max(sigma_lo ** 2 - sigma_down ** 2 * alpha_lo ** 2 / alpha_down ** 2, 0.0))
        return alpha_lo / alpha_down, (s_noise * renoise if eta > 0 else 0.0), sigma_down
    return rule


def lcm_rule(flow: bool) -> StepRule:
    """LCM (ComfyUI's sample_lcm): x_lo = noise_scaling(σ_lo, n_i, D), i.e. D + σ_lo·n (EPS/V) or
    (1−σ_lo)·D + σ_lo·n (flow)."""
    def rule(sigma_hi: float, sigma_lo: float) -> tuple:
        return (1.0 - sigma_lo if flow else 1.0), sigma_lo, 0.0
    return rule


def sampler_rule(name: str, flow: bool) -> StepRule:
    """The step rule of ComfyUI sampler `name` for a flow (CONST) or an EPS/V model."""
    if name == "euler":
        return euler_rule
    if name == "euler_ancestral":
        return flow_ancestral_rule() if flow else ancestral_rule()
    if name == "lcm":
        return lcm_rule(flow)
    raise ValueError(f"sampler: expected one of {SAMPLERS}, got {name!r}")
