"""The deterministic samplers users pick (heun, dpm_2, dpmpp_2m, res_multistep, uni_pc, uni_pc_bh2), inverted on a
real ComfyUI server and regenerated through the STOCK sampler nodes: KSamplerAdvanced with that sampler (add_noise
off) and SamplerCustomAdvanced with KSamplerSelect(that sampler) and the NOISE output; on the tiny smoke-test model
and on the trained demo model."""
import pytest
from conftest import IMAGES
from support.graphs import round_trip

pytestmark = pytest.mark.host

SAMPLERS = ("heun", "dpm_2", "dpmpp_2m", "res_multistep", "uni_pc", "uni_pc_bh2")
EVALUATIONS_PER_DDIM_STEP = {"heun": 2, "dpm_2": 2, "dpmpp_2m": 1, "res_multistep": 1, "uni_pc": 2, "uni_pc_bh2": 2}
DEMO_LABEL = ("red", "disc", "blue")


def compare(host, sampler: str, demo: bool, methods=("ddim", "fixed_point"), **kwargs) -> dict:
    image = DEMO_LABEL if demo else IMAGES[0]
    results = {method: round_trip(host, method, image, demo=demo, sampler=sampler, **kwargs) for method in methods}
    where = "demo model" if demo else "smoke model"
    print(f"\n{sampler} on the {where}: " + ", ".join(
        f"{method} {errors['latent']:.3g}/{errors['noise']:.3g} ({info['evaluations']} evaluations)"
        for method, (errors, info) in results.items()))
    for method, (errors, info) in results.items():
        assert info["sampler"] == sampler
        # the two stock routes hand the same seed to the same sampler
        assert errors["latent"] == pytest.approx(errors["noise"], rel=0.05, abs=1e-4), (method, errors)
    return results


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_round_trips_through_the_stock_nodes_10x_closer_than_ddim(host, sampler):
    results = compare(host, sampler, demo=False, steps=8, scheduler="karras")
    (ddim, ddim_info), (fixed, _) = results["ddim"], results["fixed_point"]
    for route in ("latent", "noise"):
        assert fixed[route] * 10 <= ddim[route], (route, ddim, fixed)
    stages = len(ddim_info["residuals"])
    assert ddim_info["evaluations"] == EVALUATIONS_PER_DDIM_STEP[sampler] * stages - (sampler in ("heun", "dpm_2"))


@pytest.mark.parametrize("sampler", ("heun", "dpmpp_2m", "uni_pc"))
def test_sampler_round_trips_on_the_demo_model(host, sampler):
    results = compare(host, sampler, demo=True, methods=("ddim", "fixed_point", "rnri"), steps=8, scheduler="karras")
    ddim = results["ddim"][0]
    for method in ("fixed_point", "rnri"):
        for route in ("latent", "noise"):
            assert results[method][0][route] * 10 <= ddim[route], (method, route, results[method][0], ddim)
