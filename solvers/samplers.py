"""ComfyUI's samplers in σ space, as inversion sees them.

- euler, euler_ancestral, lcm: step rules x_lo = a·Euler(x_hi; σ_hi → s) + b·n_i (docs/methods.md §5). With the
  per-step noises n_i fixed, each step's deterministic part is an Euler step to s, so every inverter inverts them
  unchanged; the sampler that regenerates the image must reuse the same n_i.
- heun, dpm_2 (several evaluations per step) and the multistep dpmpp_2m, res_multistep, uni_pc, uni_pc_bh2: stages
  (docs/methods.md §14), each one small function that steps exactly as ComfyUI's own sampler function does.
"""
import math
from typing import Optional

import torch

from .core import Denoiser, Noising, Stage, Stepping, StepRule, euler_rule, euler_step, to_d

RULE_SAMPLERS = ("euler", "euler_ancestral", "lcm")
STAGE_SAMPLERS = ("heun", "dpm_2", "dpmpp_2m", "res_multistep", "uni_pc", "uni_pc_bh2")
SAMPLERS = RULE_SAMPLERS + STAGE_SAMPLERS
STOCHASTIC_SAMPLERS = ("euler_ancestral", "lcm")
"""The samplers that inject noise at every step: their inversion fixes those noises (`noises`)."""


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


def lcm_rule(noising: Noising) -> StepRule:
    """LCM (ComfyUI's sample_lcm): x_lo = noise_scaling(σ_lo, n_i, D), i.e. D + σ_lo·n (VE) or
    (1−σ_lo)·D + σ_lo·n (flow)."""
    def rule(sigma_hi: float, sigma_lo: float) -> tuple:
        return (1.0 - sigma_lo if noising is Noising.FLOW else 1.0), sigma_lo, 0.0
    return rule


ANCESTRAL_RULES = {Noising.VE: ancestral_rule, Noising.FLOW: flow_ancestral_rule}
"""k-diffusion's euler_ancestral for each noising (ComfyUI picks the RF variant for CONST models)."""


def sampler_rule(name: str, noising: Noising) -> StepRule:
    """The step rule of ComfyUI sampler `name` for a family that noises as `noising`."""
    if name == "euler":
        return euler_rule
    if name == "euler_ancestral":
        return ANCESTRAL_RULES[noising]()
    if name == "lcm":
        return lcm_rule(noising)
    raise ValueError(f"sampler: expected one of {RULE_SAMPLERS}, got {name!r}")


def heun_step(denoiser: Denoiser, x: torch.Tensor, sigma_hi: float, sigma_lo: float) -> torch.Tensor:
    """Heun's step (Karras et al. 2022, Algorithm 2 without churn; k-diffusion sample_heun): Euler, then the mean of
    the two directions; a plain Euler step onto σ = 0. Two evaluations, one onto 0."""
    d = to_d(x, sigma_hi, denoiser(x, sigma_hi))
    if sigma_lo == 0:
        return euler_step(x, d, sigma_hi, sigma_lo)
    x_2 = euler_step(x, d, sigma_hi, sigma_lo)
    d_2 = to_d(x_2, sigma_lo, denoiser(x_2, sigma_lo))
    return euler_step(x, (d + d_2) / 2, sigma_hi, sigma_lo)


def dpm_2_step(denoiser: Denoiser, x: torch.Tensor, sigma_hi: float, sigma_lo: float) -> torch.Tensor:
    """DPM-Solver-2 as k-diffusion's sample_dpm_2 (Lu et al. 2022; Karras et al. 2022, Algorithm 2 without churn):
    the direction at the midpoint σ_mid = √(σ_hi·σ_lo) (log-space), reached by Euler; Euler onto σ = 0."""
    d = to_d(x, sigma_hi, denoiser(x, sigma_hi))
    if sigma_lo == 0:
        return euler_step(x, d, sigma_hi, sigma_lo)
    log_hi = math.log(sigma_hi)
    sigma_mid = math.exp(log_hi + 0.5 * (math.log(sigma_lo) - log_hi))
    x_2 = euler_step(x, d, sigma_hi, sigma_mid)
    d_2 = to_d(x_2, sigma_mid, denoiser(x_2, sigma_mid))
    return euler_step(x, d_2, sigma_hi, sigma_lo)


def single_step_stages(step):
    """A sampler whose steps read no history: one stage per step of the schedule."""
    def stepper(sigmas: torch.Tensor) -> list:
        values = sigmas.tolist()
        return [Stage(hi, lo, lambda denoiser, x, history, hi=hi, lo=lo: (step(denoiser, x, hi, lo), []))
                for hi, lo in zip(values[:-1], values[1:])]
    return stepper


def dpmpp_2m_step(x: torch.Tensor, denoised: torch.Tensor, old_denoised: Optional[torch.Tensor], sigma_prev: float,
                  sigma_hi: float, sigma_lo: float) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2; k-diffusion sample_dpmpp_2m) in t = −log σ: x_lo =
    (σ_lo/σ_hi)·x − expm1(−h)·D', D' = (1 + 1/2r)·D − (1/2r)·D_old, r = h_last/h; first order (D' = D, the Euler
    step) without a previous output and onto σ = 0."""
    if sigma_lo == 0:
        return denoised
    h = math.log(sigma_hi) - math.log(sigma_lo)
    if old_denoised is not None:
        r = (math.log(sigma_prev) - math.log(sigma_hi)) / h
        denoised = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
    return (sigma_lo / sigma_hi) * x - math.expm1(-h) * denoised


def res_multistep_step(x: torch.Tensor, denoised: torch.Tensor, old_denoised: Optional[torch.Tensor],
                       sigma_prev: float, sigma_hi: float, sigma_lo: float) -> torch.Tensor:
    """The second-order multistep exponential integrator of Zhang et al. (arXiv 2308.02157) as ComfyUI's
    sample_res_multistep (η = 0): x_lo = e^{−h}·x + h·(b1·D + b2·D_old) with φ-function weights, c2 = −h_last/h;
    an Euler step without a previous output and onto σ = 0."""
    if sigma_lo == 0 or old_denoised is None:
        return euler_step(x, to_d(x, sigma_hi, denoised), sigma_hi, sigma_lo)
    h = math.log(sigma_hi) - math.log(sigma_lo)
    c2 = (math.log(sigma_hi) - math.log(sigma_prev)) / h
    phi1 = math.expm1(-h) / -h
    phi2 = (phi1 - 1.0) / -h
    b1, b2 = phi1 - phi2 / c2, phi2 / c2
    return math.exp(-h) * x + h * (b1 * denoised + b2 * old_denoised)


def two_step_stages(step):
    """A multistep sampler whose step reads the previous step's denoised output (dpmpp_2m, res_multistep): stage i
    records D(x_i, σ_i); stage i + 1 reads it. One evaluation per stage."""
    def stepper(sigmas: torch.Tensor) -> list:
        values = sigmas.tolist()

        def stage(index: int) -> Stage:
            hi, lo = values[index], values[index + 1]
            prev = values[index - 1] if index else None

            def run(denoiser, x, history, implicit=False):
                denoised = denoiser(x, hi)
                old = history[index - 1] if history and index else None
                if implicit and old is not None:  # the output above as D(y) plus its stale difference to this one
                    old = denoised + (old - history[index])
                return step(x, denoised, old, prev, hi, lo), [denoised]
            return Stage(hi, lo, run, reads_history=index > 0 and lo > 0, predictable=True,
                         implicit=lambda denoiser, x, history: run(denoiser, x, history, implicit=True))

        return [stage(index) for index in range(len(values) - 1)]
    return stepper


UNIPC_VARIANTS = {"uni_pc": "bh1", "uni_pc_bh2": "bh2"}
UNIPC_LAST_LEVEL = 0.001
"""ComfyUI's uni_pc stops at this σ instead of 0 (its VP λ = −log σ is infinite at 0)."""


def vp_coefficients(sigma: torch.Tensor) -> tuple:
    """(α, std, λ) of the VP process at noise level σ, as ComfyUI's uni_pc derives them (its SigmaConvert):
    log α = ½·log(1/(σ² + 1)), std = √(1 − α²), λ = log α − log std (= −log σ), in σ's dtype, so that a float32
    schedule rounds as ComfyUI's does (noticeably at σ = 0.001)."""
    log_alpha = 0.5 * torch.log(1 / (sigma * sigma + 1))
    std = torch.sqrt(1.0 - torch.exp(2.0 * log_alpha))
    return torch.exp(log_alpha), std, log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


def unipc_update(denoiser: Denoiser, x: torch.Tensor, models: list, levels: list, level: torch.Tensor, order: int,
                 corrector: bool, variant: str) -> tuple:
    """One UniPC update (Zhao et al. 2023, UniP-p and UniC-p with B(h) = h (bh1) or e^h − 1 (bh2), data prediction;
    ComfyUI's multistep_uni_pc_bh_update) in σ space, from x at levels[-1] to `level`, with the denoised outputs
    `models` at `levels` (oldest first). Returns (x_next, D at the predicted point, the predicted point), or
    (prediction, None, prediction) without the corrector."""
    alpha_0, std_0, lambda_0 = vp_coefficients(levels[-1])
    alpha_t, std_t, lambda_t = vp_coefficients(level)
    h = lambda_t - lambda_0
    ratios, differences = [], []
    for i in range(1, order):
        ratio = (vp_coefficients(levels[-(i + 1)])[2] - lambda_0) / h
        ratios.append(ratio)
        differences.append((models[-(i + 1)] - models[-1]) / ratio)
    ratios = torch.stack(ratios + [torch.ones_like(h)])
    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, weights, factorial = [], [], 1
    for i in range(1, order + 1):
        rows.append(ratios ** (i - 1))
        weights.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    rows, weights = torch.stack(rows), torch.stack(weights)
    base = (std_t / std_0 * alpha_0 / alpha_t) * x - h_phi_1 * models[-1]
    prediction = base
    if differences:
        rhos = [0.5] if order == 2 else torch.linalg.solve(rows[:-1, :-1], weights[:-1])
        prediction = base - b_h * sum(rho * difference for rho, difference in zip(rhos, differences))
    if not corrector:
        return prediction, None, prediction
    rhos = [torch.tensor(0.5)] if order == 1 else torch.linalg.solve(rows, weights)
    denoised = denoiser(prediction, float(level))
    correction = sum((rho * difference for rho, difference in zip(rhos[:-1], differences)),
                     rhos[-1] * (denoised - models[-1]))
    return base - b_h * correction, denoised, prediction


def unipc_stages(variant: str):
    """ComfyUI's uni_pc / uni_pc_bh2 (sample_unipc: order min(3, steps − 1), lower order at the start and the end,
    the corrector on every update but the last, which lands on σ = 0.001) as stages. Update k evaluates D at its
    predicted point, which the corrector of update k and the updates after it read; the last update evaluates
    nothing, so it shares a stage with the one before (its x barely moves the image: weight 0.001/σ), and the first
    stage also evaluates D at the start. A stage without history restarts the sampler there (order 1)."""
    def stepper(sigmas: torch.Tensor) -> list:
        levels = sigmas.clone()
        if float(levels[-1]) == 0:
            levels[-1] = UNIPC_LAST_LEVEL
        steps = len(levels) - 1
        if steps < 2:
            raise ValueError(f"sigmas: uni_pc needs at least 2 steps (with 1 ComfyUI's uni_pc returns its start "
                             f"rescaled), got {steps}")
        order = min(3, steps - 1)

        def order_of(k: int) -> int:
            return k if k < order else min(order, steps + 1 - k)

        def stage(j: int) -> Stage:
            updates = [j + 1] + ([steps] if j + 1 == steps - 1 else [])

            def run(denoiser, x, history, implicit=False):
                # records per level k: D at its predicted point, and that point's offset from x_k
                if j == 0 or history is None:
                    models, at, fresh = [denoiser(x, float(levels[j]))], [j], []
                    if j == 0:
                        fresh += [models[0], torch.zeros_like(x)]
                else:
                    first = max(0, j + 1 - order)
                    models, at = [history[2 * i] for i in range(first, j + 1)], list(range(first, j + 1))
                    fresh = []
                    if implicit:
                        models[-1] = denoiser(x + history[2 * j + 1], float(levels[j]))
                for k in updates:
                    x, denoised, predicted = unipc_update(denoiser, x, models, [levels[i] for i in at], levels[k],
                                                          min(order_of(k), len(models)), k < steps, variant)
                    if denoised is not None:
                        models, at = (models + [denoised])[-order:], (at + [k])[-order:]
                        fresh += [denoised, predicted - x]
                return x, fresh
            return Stage(float(sigmas[j]), float(sigmas[updates[-1]]), run, reads_history=j > 0,
                         implicit=lambda denoiser, x, history: run(denoiser, x, history, implicit=True))

        return [stage(j) for j in range(steps - 1)]
    return stepper


SAMPLER_SWEEPS = {"dpmpp_2m": 4, "res_multistep": 4, "uni_pc": 8, "uni_pc_bh2": 8}
"""The most sweeps inversion takes over each multistep sampler's stages (docs/methods.md §14): dpmpp_2m and
res_multistep, whose first sweep starts from a predicted history, reach 100× closer than DDIM on the demo model at 4
(about 8 evaluations per step); uni_pc, whose every map costs two evaluations and whose first sweep is first order,
needs 8 (bench/results/README.md, "Multistep inversion cost")."""


def sampler_stepping(name: str, noises: Optional[list] = None, rule: StepRule = euler_rule) -> Stepping:
    """How ComfyUI sampler `name` steps: its stages with their most sweeps, or `rule` with the fixed `noises`."""
    stepper = sampler_stepper(name)
    if stepper is None:
        return Stepping(rule=rule, noises=noises)
    return Stepping(stepper=stepper, noises=noises, sweeps=SAMPLER_SWEEPS.get(name, 1))


def sampler_stepper(name: str):
    """The stages of ComfyUI sampler `name` (one of STAGE_SAMPLERS), or None for a step-rule sampler."""
    if name in RULE_SAMPLERS:
        return None
    if name == "heun":
        return single_step_stages(heun_step)
    if name == "dpm_2":
        return single_step_stages(dpm_2_step)
    if name == "dpmpp_2m":
        return two_step_stages(dpmpp_2m_step)
    if name == "res_multistep":
        return two_step_stages(res_multistep_step)
    if name in UNIPC_VARIANTS:
        return unipc_stages(UNIPC_VARIANTS[name])
    raise ValueError(f"sampler: expected one of {SAMPLERS}, got {name!r}")
