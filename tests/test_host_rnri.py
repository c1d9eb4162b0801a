"""RNRI Invert on a real ComfyUI server with the tiny SD1.5-architecture model (RNRI against FixedPoint on the two
trained models: tests/test_solvers_rnri.py, in process)."""
import pytest
from conftest import IMAGES
from support.graphs import expect_failure, round_trip, round_trip_graph

pytestmark = pytest.mark.host

PAPER = {"iterations": 2, "regularization": 0.1, "update": "paper"}
"""The paper's update at its 2 iterations; the gradient is the test's parameter."""


def test_rnri_newton_round_trips_far_closer_than_ddim(host):
    """The default update: Anderson, then Newton-Krylov where a step stalls; ≥ 10× closer than DDIM at 10 steps, and
    the node warns that the first step above σ = 0 (Δσ/σ_hi ≈ 0.88 on ddim_uniform) is likely a fold."""
    for image in IMAGES[:2]:
        ddim, _ = round_trip(host, "ddim", image)
        newton, info = round_trip(host, "rnri", image)
        assert newton["latent"] == pytest.approx(newton["noise"], rel=1e-2)
        assert newton["latent"] * 10 <= ddim["latent"] and newton["noise"] * 10 <= ddim["noise"]
        assert "fold" in info["warning"] and info["notes"]


@pytest.mark.parametrize("gradient", ["jacobian-free", "autograd"])
def test_rnri_round_trips_through_both_routes(host, gradient):
    """The paper update. Measured (bench/results/rnri.md): at its default 2 iterations RNRI improves on DDIM by 1.2-1.3×
    (jacobian-free) on this model, not by the 10× the issue asks for; autograd's step can overshoot (0.94-1.06×)."""
    options = {**PAPER, "gradient": gradient}
    for image in IMAGES[:2]:
        ddim, _ = round_trip(host, "ddim", image)
        rnri, info = round_trip(host, "rnri", image, options=options)
        assert info["evaluations"] == 20
        assert rnri["latent"] == pytest.approx(rnri["noise"], rel=1e-3)
        assert rnri["latent"] != pytest.approx(ddim["latent"], rel=1e-3)
        if gradient == "jacobian-free":
            assert rnri["latent"] < ddim["latent"] and rnri["noise"] < ddim["noise"]


def test_rnri_with_cfg_and_negative_prompt(host):
    rnri, info = round_trip(host, "rnri", IMAGES[0], cfg=2.0, use_negative=True)
    ddim, _ = round_trip(host, "ddim", IMAGES[0], cfg=2.0, use_negative=True)
    assert rnri["latent"] < ddim["latent"]


def test_rnri_bad_inputs(host):
    bad = round_trip_graph("rnri", IMAGES[0], options={"iterations": 0})
    expect_failure(host, bad, "iterations")  # ComfyUI's own range check names the input
    bad = round_trip_graph("rnri", IMAGES[0], options={"regularization": -1.0})
    expect_failure(host, bad, "regularization")
    bad = round_trip_graph("rnri", IMAGES[0], options={"gradient": "numeric"})
    expect_failure(host, bad, "gradient")
    bad = round_trip_graph("rnri", IMAGES[0], options={"update": "broyden"})
    expect_failure(host, bad, "update")
    errors, _ = round_trip(host, "rnri", IMAGES[1])  # and the server still inverts as before
    assert errors["latent"] == pytest.approx(errors["noise"], rel=0.01) and errors["noise"] < 0.05
