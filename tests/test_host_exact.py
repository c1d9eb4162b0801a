"""EDICT Invert and BDIA Invert on a real ComfyUI server: exact round trips through their samplers."""
import pytest
from conftest import IMAGES
from support.graphs import expect_failure, only, relative_error, round_trip, round_trip_graph, saved_latent

pytestmark = pytest.mark.host

SAME_COST = {"edict": 2, "bdia": 1}
"""FixedPoint iterations per step that cost what each exact method's step costs."""


def same_cost_fixed_point(host, method: str) -> tuple:
    """FixedPoint's round trip at the exact method's evaluations per step (errors, ui report)."""
    return round_trip(host, "fixed_point", IMAGES[0], options={"max_iterations": SAME_COST[method], "tolerance": 0.0})


def edit_graph(method: str) -> dict:
    """The exact method's round trip at cfg 2 with a negative prompt, regenerated with another prompt."""
    edit = round_trip_graph(method, IMAGES[1], cfg=2.0, use_negative=True)
    edit["target"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a painting of a dog", "clip": ["clip", 0]}}
    edit["guider"]["inputs"]["positive"] = ["target", 0]
    return edit


@pytest.mark.parametrize("method", ["edict", "bdia"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_exact_round_trip_through_its_sampler(host, method, precision):
    errors, info = round_trip(host, method, IMAGES[0], options={"precision": precision})
    fixed, _ = same_cost_fixed_point(host, method)
    assert info["evaluations"] == (20 if method == "edict" else 10)
    # measured: float64 bit-exact (0.0); float32 2.8e-5 (EDICT, round-off grows by 1/mix per step) and 6.2e-6 (BDIA)
    bound = {"float64": 1e-7, "float32": {"edict": 1e-4, "bdia": 1e-5}[method]}[precision]
    for route in ("latent", "noise"):
        assert errors[route] <= bound
        assert errors[route] * 1000 <= fixed[route]


@pytest.mark.parametrize("method", ["edict", "bdia"])
def test_exact_round_trip_with_cfg_and_editing(host, method):
    errors, _ = round_trip(host, method, IMAGES[1], routes=("noise",), cfg=2.0, use_negative=True)
    assert errors["noise"] <= 1e-5
    history = host.run(only(edit_graph(method), "save_encoded", "save_noise_route"))
    edited = relative_error(saved_latent(host, history, "save_noise_route"),
                            saved_latent(host, history, "save_encoded"))
    assert edited > 0.05


def test_exact_bad_inputs(host):
    foreign = round_trip_graph("edict", IMAGES[0])
    foreign["other"] = {"class_type": "SeedfinderFixedPointInvert", "inputs": {
        **foreign["invert"]["inputs"], "sampler": "euler", "noise_seed": 0, "max_iterations": 2, "tolerance": 0.0,
        "acceleration": "none", "warm_start": False}}
    for key in ("mix", "precision"):
        del foreign["other"]["inputs"][key]
    foreign["custom"]["inputs"]["noise"] = ["other", 1]
    expect_failure(host, foreign, "noise:", "only regenerates the seed its invert node made")
    errors, _ = round_trip(host, "bdia", IMAGES[2], routes=("noise",))
    assert errors["noise"] <= 1e-5
