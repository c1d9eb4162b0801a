"""Golden numbers per method (as diffusers' full-loop scheduler tests pin theirs): every row of the contract's METHODS
on the contract problem, and the flow methods on the flow tests' Gaussian problem, each pinned in tests/golden.json
to 1e-6 relative, so that any numeric change fails here. Both problems run in float64: float32 rounding would make
the methods that iterate to rounding depend on the CPU.

Regenerate the table after a deliberate change (and say why in the commit):
    .host/venv/bin/python tests/test_solvers_golden.py > tests/golden.json
"""
import json
import os

import conftest  # noqa: F401  (puts the repository on sys.path when this file runs as the regenerating script)
import pytest
import torch
from support.oracles import flow_sigmas
from test_solvers_contract import METHODS, problem
from test_solvers_flow import ONE, gaussian, noise

from solvers import (
    CountingDenoiser,
    FlowEditOptions,
    FlowSolverOptions,
    RFInversionOptions,
    eta_schedule,
    flow_edit,
    flow_solver_invert,
    flow_solver_sample,
    rf_inversion_invert,
    rf_inversion_sample,
)

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
ENTRIES = (0, 37, 101)
"""The seed's flat indices pinned beside its sum and norm (the smaller latent has 128 entries)."""
FLOW_STEPS = 10


def contract_run(name: str):
    """One METHODS row on the contract problem: (seed, residual traces, evaluations)."""
    method = METHODS[name][0]
    oracle, x0, sigmas = problem(torch.float64)
    counter = CountingDenoiser(oracle)
    result = method(counter, x0, sigmas, input_scale=lambda s: 1.0, callback=None)
    return result.latent, result.residuals, counter.evaluations


def flow_invert(method, *options, **keywords):
    """A flow inverter on the flow Gaussian problem."""
    def run():
        oracle, x0 = gaussian()
        counter = CountingDenoiser(oracle)
        result = method(counter, x0, flow_sigmas(FLOW_STEPS), *options, **keywords, **ONE)
        return result.latent, result.residuals, counter.evaluations
    return run


def flow_sample(method, *options):
    """A flow sampler from a fixed noise on the flow Gaussian problem (no residuals)."""
    def run():
        oracle, x0 = gaussian()
        counter = CountingDenoiser(oracle)
        return method(counter, noise(), flow_sigmas(FLOW_STEPS), *options), [], counter.evaluations
    return run


def rf_inversion_sample_run():
    """RF-Inversion's controlled sampling toward the flow problem's image, η 0.9 over the first 6 of 10 steps."""
    oracle, x0 = gaussian()
    counter = CountingDenoiser(oracle)
    landed = rf_inversion_sample(counter, noise(), flow_sigmas(FLOW_STEPS), reference=x0,
                                 etas=eta_schedule(FLOW_STEPS, 0.9, 0, 6))
    return landed, [], counter.evaluations


def flowedit_run():
    """FlowEdit from the flow Gaussian problem's image toward a shifted Gaussian."""
    (source, x0), (target, _) = gaussian(), gaussian(mean_seed=9)
    source, target = CountingDenoiser(source), CountingDenoiser(target)
    result = flow_edit(source, target, x0, flow_sigmas(FLOW_STEPS), FlowEditOptions(n_max=8, n_avg=2), seed=3)
    return result.latent, result.residuals, source.evaluations + target.evaluations


CASES = {
    **{name: (lambda name=name: contract_run(name)) for name in METHODS},
    "flow_rf_inversion": flow_invert(rf_inversion_invert, RFInversionOptions(gamma=0.5), target_noise=noise(seed=5)),
    "flow_fireflow": flow_invert(flow_solver_invert),
    "flow_rf_solver": flow_invert(flow_solver_invert, FlowSolverOptions(solver="rf_solver")),
    "flow_rf_inversion_sample": rf_inversion_sample_run,
    "flow_fireflow_sample": flow_sample(flow_solver_sample),
    "flow_rf_solver_sample": flow_sample(flow_solver_sample, FlowSolverOptions(solver="rf_solver")),
    "flowedit": flowedit_run,
}
"""name: a zero-argument run returning (seed, residual traces, evaluations)."""


def measure(latent: torch.Tensor, residuals: list, evaluations: int) -> dict:
    """The pinned numbers of one run: evaluations, iterations, each step's last residual, the seed's sum, norm and a
    few entries."""
    flat = latent.double().flatten()
    return {"evaluations": evaluations, "iterations": sum(len(trace) for trace in residuals),
            "step_residuals": [trace[-1] for trace in residuals], "seed_sum": float(flat.sum()),
            "seed_norm": float(flat.norm()), "seed_entries": [float(flat[i]) for i in ENTRIES]}


def table() -> str:
    """The golden table as written to tests/golden.json: one line per case, so that a change reads as a short diff."""
    rows = [f"  {json.dumps(name)}: {json.dumps(measure(*run()))}" for name, run in CASES.items()]
    return "{\n" + ",\n".join(rows) + "\n}"


def pins() -> dict:
    with open(GOLDEN) as file:
        return json.load(file)


def test_every_case_is_pinned_and_every_pin_is_a_case():
    assert list(pins()) == list(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_golden_numbers(name):
    """Counts exact; every float to 1e-6 relative (abs 1e-10 for residuals at float64 rounding)."""
    expected, measured = pins()[name], measure(*CASES[name]())
    assert measured.keys() == expected.keys()
    assert measured["evaluations"] == expected["evaluations"] and measured["iterations"] == expected["iterations"]
    for key, value in expected.items():  # a deliberate change: regenerate as this module's docstring says
        assert measured[key] == pytest.approx(value, rel=1e-6, abs=1e-10), key


if __name__ == "__main__":
    print(table())
