"""What an invert node shows: its `ui` summary (residual trace, evaluations, wiring, quality warning)."""
import logging
import math
from typing import Optional, Sequence

from .handoff import Inversion

log = logging.getLogger("seedfinder")

POOR_ROUND_TRIP = 0.05
"""A round-trip estimate above this (5 % of the latent's RMS) is said on the node: the seed will not give the image
back faithfully (FixedPoint at its defaults estimates 0.005-0.03 on the test models; DDIM 0.5-5)."""


def summary(inversion: Inversion, method: str, started_at_step: Optional[int], sampler: str = "euler",
            exact: bool = False, notes: Sequence[str] = (), estimated: bool = True) -> dict:
    """The node's `ui` data: residual trace, evaluations, how to wire the hand-off and a warning when the seed will
    not give the image back (JSON-safe numbers). Exact methods' residuals are their pair's gaps, not step errors.
    `notes`: a method's own warnings about its inputs (RNRI's fold), logged and joined into the warning.
    `estimated=False`: the method's residuals do not estimate its round trip (RF-Inversion's seed is steered toward
    a target noise; FireFlow's midpoint corrections overstate it 15-20×), so it is null, with no warning about it."""
    result = inversion.result
    final = [min(trace) if trace else 0.0 for trace in result.residuals]
    # first order: each step's leftover residual shifts the regenerated latent by about that much; how the
    # sampler's later steps amplify it is not counted
    estimate = 0.0 if exact else sum(final) / max(inversion.latent_rms, 1e-12)
    if not estimated:
        estimate = None
    report = {
        "method": method,
        "family": inversion.noise.family,
        "sampler": sampler,
        "steps": len(inversion.sigmas) - 1,
        "start_at_step": started_at_step,
        "evaluations": result.evaluations,
        # an iterate can overshoot to inf before the step converges; JSON has no inf
        "residuals": [[r if math.isfinite(r) else None for r in trace] for trace in result.residuals],
        "final_residual": final,
        "round_trip_estimate": estimate,
        "sigmas": [float(s) for s in inversion.sigmas],
    }
    warnings = list(notes)
    if estimate is not None and estimate > POOR_ROUND_TRIP:
        warnings.append(f"round trip ≈ {estimate:.2g} of the latent: this seed will not give the image back "
                        f"faithfully. Use FixedPoint Invert with more max_iterations, more steps, or a lower cfg")
    for warning in warnings:
        log.warning("seedfinder: %s inversion: %s", method, warning)
    if notes:
        report["notes"] = list(notes)
    if warnings:
        report["warning"] = ". ".join(w.rstrip(".") for w in warnings)
    return report
