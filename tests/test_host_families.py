"""Every inverter on every model family the test host can build, through the matching sampler (real server).

Families are made the way users make them: the tiny SD1.5-architecture UNet with ComfyUI's own model-sampling
patch nodes (ModelSamplingDiscrete v_prediction / lcm, ModelSamplingSD3 for rectified flow), and the
SDXL-Turbo setting (euler_ancestral on the 4-step trailing schedule).
"""
import pytest

from conftest import IMAGES
from graphs import patch_model, relative_error, round_trip_graph, saved_latent

pytestmark = pytest.mark.host

FAMILIES = {
    # name: (model patch node or None, sampler, scheduler, steps, routes that can carry the seed)
    "eps": (None, "euler", "ddim_uniform", 10, ("latent", "noise")),
    "v_prediction": ({"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["unet", 0],
                                                                        "sampling": "v_prediction", "zsnr": False}},
                     "euler", "simple", 10, ("latent", "noise")),
    "flow": ({"class_type": "ModelSamplingSD3", "inputs": {"model": ["unet", 0], "shift": 3.0}},
             "euler", "simple", 10, ("noise",)),
    "lcm": ({"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["unet", 0], "sampling": "lcm",
                                                               "zsnr": False}},
            "lcm", "sgm_uniform", 4, ("latent", "noise")),
    "turbo": (None, "euler_ancestral", "trailing", 4, ("latent", "noise")),
}
METHODS = {"ddim": {}, "fixed_point": {"max_iterations": 20, "tolerance": 1e-4},
           "rnri": {"iterations": 2, "regularization": 0.1, "gradient": "jacobian-free"}}


def family_graph(family: str, method: str, image: str, strength: float = 1.0) -> dict:
    patch, sampler, scheduler, steps, _ = FAMILIES[family]
    graph = round_trip_graph(method, image, steps=steps, scheduler="simple" if scheduler == "trailing" else scheduler,
                             strength=strength, options={**METHODS[method], "sampler": sampler, "noise_seed": 7})
    if scheduler == "trailing":
        graph["trailing"] = {"class_type": "SeedfinderTrailingScheduler", "inputs": {"model": ["unet", 0],
                                                                                   "steps": steps}}
        graph["invert"]["inputs"]["sigmas"] = ["trailing", 0]
    return patch_model(graph, patch) if patch else graph


def measure(host, family, method, image, strength=1.0):
    history = host.run(family_graph(family, method, image, strength))
    encoded = saved_latent(host, history, "save_encoded")
    routes = FAMILIES[family][4] if strength == 1.0 else ("latent", "noise")
    info = history["outputs"]["invert"]["seedfinder"][0]
    return {route: relative_error(saved_latent(host, history, f"save_{route}_route"), encoded)
            for route in routes}, info


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_round_trips(host, family):
    rows = {method: measure(host, family, method, IMAGES[0]) for method in METHODS}
    for method, (errors, info) in rows.items():
        print(f"\n{family:13s} {method:12s} {info['evaluations']:4d} evaluations  " +
              "  ".join(f"{route} {error:.3g}" for route, error in errors.items()))
        assert info["family"] == ("CONST" if family == "flow" else "V_PREDICTION" if family == "v_prediction"
                                  else "EPS")
        for route in errors:  # both routes hand the same seed to the same sampler
            assert errors[route] == pytest.approx(next(iter(errors.values())), rel=1e-3)
    ddim, fixed, rnri = (rows[m][0] for m in ("ddim", "fixed_point", "rnri"))
    for route in ddim:
        assert fixed[route] * 10 <= ddim[route], (family, route, ddim, fixed)
        assert rnri[route] < ddim[route], (family, route, ddim, rnri)


def test_flow_partial_inversion_uses_both_routes(host):
    errors, info = measure(host, "flow", "fixed_point", IMAGES[1], strength=0.5)
    ddim, _ = measure(host, "flow", "ddim", IMAGES[1], strength=0.5)
    print(f"\nflow, strength 0.5: fixed point {errors}, ddim {ddim}")
    assert info["sigmas"][0] < 1.0
    for route in ("latent", "noise"):
        assert errors[route] * 10 <= ddim[route]
