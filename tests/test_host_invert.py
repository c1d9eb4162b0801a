"""DDIM Invert and FixedPoint Invert on a real ComfyUI server with the tiny SD1.5-architecture model."""
import pytest
from conftest import IMAGES
from support.graphs import round_trip, round_trip_graph, seconds_to_interrupt

pytestmark = pytest.mark.host


def test_nodes_are_registered_with_tooltips(host):
    info = host.get("/object_info")
    assert "(IMPORT FAILED)" not in host.log()
    for node_id, display in (("SeedfinderDDIMInvert", "DDIM Invert"), ("SeedfinderFixedPointInvert",
                                                                        "FixedPoint Invert"),
                             ("SeedfinderRNRIInvert", "RNRI Invert")):
        node = info[node_id]
        assert node["display_name"] == display
        assert node["output_name"] == ["latent", "noise", "sigmas", "sampler"]
        assert set(node["input"]["optional"]) == {"negative", "sigmas", "round_trip"}
    ours = [node for node_id, node in info.items() if node_id.startswith("Seedfinder")]
    assert len(ours) >= 4
    for node in ours:
        assert node["description"], node["name"]
        for group in ("required", "optional"):
            for name, spec in node["input"].get(group, {}).items():
                assert spec[1].get("tooltip"), (node["name"], name)


@pytest.mark.parametrize("image", IMAGES[:2])
def test_fixed_point_round_trip_is_10x_closer_than_ddim(host, image):
    ddim, ddim_info = round_trip(host, "ddim", image)
    fixed, fixed_info = round_trip(host, "fixed_point", image)
    for route in ("latent", "noise"):
        assert fixed[route] * 10 <= ddim[route], (route, ddim, fixed)
    # the two routes hand the same seed to the same sampler
    assert fixed["latent"] == pytest.approx(fixed["noise"], rel=0.05, abs=1e-4)
    assert ddim_info["evaluations"] == 10 and len(ddim_info["residuals"]) == 10
    assert 10 <= fixed_info["evaluations"] <= 10 * 20
    assert fixed_info["evaluations"] == sum(len(trace) for trace in fixed_info["residuals"])
    assert max(fixed_info["final_residual"]) < min(ddim_info["final_residual"])
    # the estimate shown on the node is first order: within a factor of 10 of the measured round trip
    for errors, info in ((ddim, ddim_info), (fixed, fixed_info)):
        assert 0.1 <= errors["noise"] / info["round_trip_estimate"] <= 10


DEMO_IMAGE = ("red", "disc", "blue")


@pytest.mark.parametrize("method, steps, sampler", [("ddim", 50, "euler"), ("fixed_point", 10, "dpmpp_2m")])
def test_the_measured_round_trip_is_ksampler_advanced_s(host, method, steps, sampler):
    """With round_trip "measure" (the default) the node's round trip is KSamplerAdvanced's, to 1e-3 relative, on the
    demo model; DDIM at 50 ddim_uniform steps is a good seed (measured 0.037) whose estimate (3.1) warned before."""
    errors, info = round_trip(host, method, DEMO_IMAGE, demo=True, steps=steps, sampler=sampler)
    print(f"\n{method} {sampler} {steps}: measured {info['round_trip_measured']:.4g}, KSamplerAdvanced "
          f"{errors['latent']:.4g}, estimate {info['round_trip_estimate']:.3g}")
    assert info["round_trip_measured"] == pytest.approx(errors["latent"], rel=1e-3)
    assert info["round_trip_evaluations"] == steps
    if method == "ddim":
        assert info["round_trip_measured"] < 0.05 < info["round_trip_estimate"] and "warning" not in info
        _, estimated = round_trip(host, method, DEMO_IMAGE, demo=True, steps=steps, options={"round_trip": "estimate"})
        assert estimated["round_trip_measured"] is None and estimated["round_trip_evaluations"] == 0
        assert "will not give the image back" in estimated["warning"]


def test_cfg_with_negative_prompt_round_trips(host):
    ddim, _ = round_trip(host, "ddim", IMAGES[0], cfg=2.0, use_negative=True)
    fixed, info = round_trip(host, "fixed_point", IMAGES[0], cfg=2.0, use_negative=True)
    for route in ("latent", "noise"):
        assert fixed[route] * 10 <= ddim[route]


def test_partial_inversion_hands_off_the_tail_of_the_schedule(host):
    fixed, info = round_trip(host, "fixed_point", IMAGES[1], strength=0.5)
    ddim, _ = round_trip(host, "ddim", IMAGES[1], strength=0.5)
    assert info["steps"] == 5 and info["start_at_step"] == 5 and len(info["sigmas"]) == 6
    for route in ("latent", "noise"):
        assert fixed[route] * 10 <= ddim[route]


def test_interrupt_stops_a_long_inversion_promptly(host):
    graph = round_trip_graph("fixed_point", IMAGES[3], steps=200, options={"max_iterations": 200, "tolerance": 0.0})
    stopped_after = seconds_to_interrupt(host, graph)
    assert stopped_after < 5.0, stopped_after
    errors, info = round_trip(host, "ddim", IMAGES[3])  # and the next prompt runs in full
    assert info["evaluations"] == 10 and errors["latent"] == pytest.approx(errors["noise"], rel=0.01)
