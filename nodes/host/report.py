"""What an invert node shows: its `ui` summary (residual trace, evaluations, wiring, quality warning)."""
import logging
import math
from enum import Enum
from typing import Optional, Sequence

from .handoff import Inversion

log = logging.getLogger("seedfinder")

POOR_ROUND_TRIP = 0.05
"""A round trip above this (the measured relative error, else the estimate relative to the latent's RMS) is said on the
node: the seed will not give the image back faithfully (FixedPoint at its defaults estimates 0.005-0.03 on the test
models; DDIM 0.5-5)."""
ROUND_TRIPS = ("measure", "estimate")
"""measure: the stock sampler regenerates the seed inside the guided run (one sampling pass) and the node reports the
measured round trip; estimate: only the first-order estimate from the residuals, which is 0.03-85× off the measured
value (bench/results/calibration.md)."""
ROUND_TRIP = "measure"
"""The step-solver nodes' `round_trip` default (bench/results/README.md, "The measured round trip")."""


class Trace(Enum):
    """What a method's residual trace measures, and so what its round-trip estimate is."""
    STEP_RESIDUAL = "each step's leftover ‖T(y) − y‖: their sum over the latent's RMS estimates the round trip"
    PAIR_GAP = "the gap between an exact pair's two latents: the round trip is exact, its estimate 0"
    NOT_AN_ERROR = ("a step's size or correction, not an error (RF-Inversion's seed is steered toward a target noise; "
                    "FireFlow's midpoint corrections overstate the round trip 15-20×): no estimate, null")


def summary(inversion: Inversion, method: str, started_at_step: Optional[int], sampler: str = "euler",
            measure: Trace = Trace.STEP_RESIDUAL, notes: Sequence[str] = ()) -> dict:
    """The node's `ui` data: residual trace, evaluations, the round trip (measured where the inversion regenerated its
    seed, `round_trip_measured`; else null) and its estimate, and a warning when the seed will not give the image back,
    judged on the measured value where there is one (JSON-safe numbers); `measure` says what the method's residuals
    measure (a null estimate comes with no warning about it). `notes`: a method's own warnings about its inputs
    (RNRI's fold), logged and joined into the warning."""
    result = inversion.result
    final = [min(trace) if trace else 0.0 for trace in result.residuals]
    # first order: each step's leftover residual shifts the regenerated latent by about that much; how the
    # sampler's later steps amplify it is not counted
    estimate = 0.0 if measure is Trace.PAIR_GAP else sum(final) / max(inversion.latent_rms, 1e-12)
    if measure is Trace.NOT_AN_ERROR:
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
        "round_trip_measured": inversion.round_trip,
        "round_trip_evaluations": inversion.round_trip_evaluations,
        "sigmas": [float(s) for s in inversion.sigmas],
    }
    warnings = list(notes)
    judged, how = (inversion.round_trip, "=") if inversion.round_trip is not None else (estimate, "≈")
    if judged is not None and judged > POOR_ROUND_TRIP:
        warnings.append(f"round trip {how} {judged:.2g} of the latent: this seed will not give the image back "
                        f"faithfully. Use FixedPoint Invert with more max_iterations, more steps, or a lower cfg")
    for warning in warnings:
        log.warning("seedfinder: %s inversion: %s", method, warning)
    if notes:
        report["notes"] = list(notes)
    if warnings:
        report["warning"] = ". ".join(w.rstrip(".") for w in warnings)
    return report
