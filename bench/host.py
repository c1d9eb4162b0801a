"""The host tests' measurements as markdown tables: the same graphs as tests/test_host_*.py and tests/test_demo_model.py
(which assert bounds on these numbers and print nothing), on one real ComfyUI server with the same models and inputs
(CPU, the test host's ComfyUI). Errors are relative L2 distances ‖x_rec − x‖/‖x‖ in latent space; "latent" and
"noise" are the two hand-off routes (KSamplerAdvanced on the LATENT output, SamplerCustomAdvanced on the NOISE).
usage: .host/venv/bin/python -m bench.host [--tables round_trips rnri exact ...] [--work DIR]
"""
import argparse
import os
import sys
import tempfile

from tests.support.comfy_host import REPO
from tests.support.inprocess import import_comfy

sys.path.insert(0, os.path.join(REPO, "tests"))  # the host tests' graphs and server (tests/ is not a package)
import conftest  # noqa: E402
import test_demo_model as demo_tests  # noqa: E402
import test_host_bad_inputs as bad_input_tests  # noqa: E402
import test_host_exact as exact_tests  # noqa: E402
import test_host_families as family_tests  # noqa: E402
import test_host_fidelity as fidelity_tests  # noqa: E402
import test_host_flow as flow_tests  # noqa: E402
import test_host_prompt_aware as prompt_aware_tests  # noqa: E402
import test_host_rnri as rnri_tests  # noqa: E402
import test_host_samplers as sampler_tests  # noqa: E402
import test_host_seeds as seed_tests  # noqa: E402
from support.graphs import relative_error, round_trip, saved_latent  # noqa: E402

IMAGES = conftest.IMAGES


def table(header: tuple, rows: list) -> str:
    """A markdown table; floats to 3 significant digits."""
    cells = [[f"{cell:.3g}" if isinstance(cell, float) else str(cell) for cell in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def ratio(reference: float, error: float) -> str:
    """How many times smaller `error` is than `reference`: 3 significant digits, whole numbers from 1000 up."""
    times = reference / error
    return f"{times:.3g}×" if times < 1000 else f"{times:.0f}×"


def round_trips(host) -> str:
    """DDIM Invert and FixedPoint Invert (defaults), 10 ddim_uniform steps (tests/test_host_invert.py)."""
    cases = [(image, image, {}) for image in IMAGES[:2]]
    cases += [(f"{IMAGES[0]}, cfg 2 with a negative prompt", IMAGES[0], {"cfg": 2.0, "use_negative": True}),
              (f"{IMAGES[1]}, strength 0.5", IMAGES[1], {"strength": 0.5})]
    rows = []
    for label, image, options in cases:
        ddim, _ = round_trip(host, "ddim", image, **options)
        fixed, info = round_trip(host, "fixed_point", image, **options)
        rows.append((label, ddim["latent"], ddim["noise"], fixed["latent"], fixed["noise"], info["evaluations"],
                     ratio(ddim["noise"], fixed["noise"]), info["round_trip_estimate"]))
    return table(("image", "DDIM latent", "DDIM noise", "FixedPoint latent", "FixedPoint noise", "evaluations",
                  "ratio (noise)", "FixedPoint's estimate"), rows)


def rnri(host) -> str:
    """RNRI Invert's two updates against DDIM, 10 ddim_uniform steps (tests/test_host_rnri.py)."""
    variants = {"newton (default)": {}, "paper, jacobian-free": {**rnri_tests.PAPER, "gradient": "jacobian-free"},
                "paper, autograd": {**rnri_tests.PAPER, "gradient": "autograd"}}
    rows = []
    for image in IMAGES[:2]:
        runs = [("DDIM", *round_trip(host, "ddim", image))]
        runs += [(f"RNRI {label}", *round_trip(host, "rnri", image, options=options))
                 for label, options in variants.items()]
        ddim = runs[0][1]["noise"]
        rows += [(image, label, errors["latent"], errors["noise"], info["evaluations"], ratio(ddim, errors["noise"]))
                 for label, errors, info in runs]
    return table(("image", "method", "latent", "noise", "evaluations", "DDIM / method (noise)"), rows)


def exact(host) -> str:
    """EDICT and BDIA through their coupled samplers, FixedPoint at the same evaluations per step, and the edit with
    another prompt (tests/test_host_exact.py)."""
    rows = []
    for method in exact_tests.SAME_COST:
        fixed, _ = exact_tests.same_cost_fixed_point(host, method)
        for precision in ("float64", "float32"):
            errors, info = round_trip(host, method, IMAGES[0], options={"precision": precision})
            rows.append((method, precision, errors["latent"], errors["noise"], info["evaluations"], fixed["noise"],
                         "—"))
        errors, _ = round_trip(host, method, IMAGES[1], cfg=2.0, use_negative=True)
        history = host.run(exact_tests.edit_graph(method))
        moved = relative_error(saved_latent(host, history, "save_noise_route"),
                               saved_latent(host, history, "save_encoded"))
        rows.append((method, "float64, cfg 2 + negative", "—", errors["noise"], "", "", moved))
    return table(("method", "precision", "latent", "noise", "evaluations", "FixedPoint at the same cost (noise)",
                  "edit moves the latent by"), rows)


def families(host) -> str:
    """Every inverter on every family (tests/test_host_families.py): the family matrix, then the flow model at
    strength 0.5."""
    rows = []
    for family in family_tests.FAMILIES:
        methods = family_tests.VIDEO_METHODS if family in family_tests.VIDEO else family_tests.METHODS
        for method in methods:
            errors, info = family_tests.measure(host, family, method, IMAGES[0])
            rows.append((family, method, info["evaluations"], errors.get("latent", "—"), errors["noise"]))
    for method in ("ddim", "fixed_point"):
        errors, info = family_tests.measure(host, "flow", method, IMAGES[1], strength=0.5)
        rows.append(("flow, strength 0.5", method, info["evaluations"], errors["latent"], errors["noise"]))
    return table(("family", "method", "evaluations", "latent", "noise"), rows)


def schedules(host) -> str:
    """DDIM and FixedPoint on schedules off the model's timestep table, 20 steps, NOISE route
    (tests/test_host_families.py)."""
    rows = []
    for scheduler in family_tests.SCHEDULES:
        errors = family_tests.schedule_round_trips(host, scheduler)
        rows.append((scheduler, errors["ddim"], errors["fixed_point"], ratio(errors["ddim"], errors["fixed_point"])))
    return table(("schedule", "DDIM", "FixedPoint", "ratio"), rows)


def prompt_aware(host) -> str:
    """Prompt-Aware Encode (seeded, depth 2): each inverter's round trip before and after on the smoke model
    (tests/test_host_prompt_aware.py), then on other families, to the adjusted latent (tests/test_host_families.py)."""
    rows = [(image, method, before, after["latent"], after["noise"], moved, psnr)
            for image, method, before, after, moved, psnr in prompt_aware_tests.adjustment_rows(host)]
    lines = table(("image", "method", "plain VAE encode (latent)", "prompt-aware (latent)", "prompt-aware (noise)",
                   "moved (relative L2)", "decoded PSNR to the plain decode (dB)"), rows)
    family_rows = [(family, errors["ddim"], errors["fixed_point"])
                   for family, errors in ((family, family_tests.prompt_aware_round_trips(host, family))
                                          for family in family_tests.PROMPT_AWARE_FAMILIES)]
    return lines + "\n\n" + table(("family", "DDIM", "FixedPoint"), family_rows)


def seeds(host) -> str:
    """Seed Interpolate's end frames against each seed's own round trip, and Seed Centroid of one image's seed three
    times over (tests/test_host_seeds.py); Seed Centroid of video seeds (tests/test_host_families.py)."""
    history = host.run(seed_tests.interpolation_graph())
    encoded = {"a": saved_latent(host, history, "save_encoded"), "b": saved_latent(host, history, "save_encoded_b")}
    rows = []
    for route in ("latent", "noise"):
        frames = saved_latent(host, history, f"save_frames_{route}")
        for name, index in (("a", 0), ("b", -1)):
            single = saved_latent(host, history, f"save_single_{name}_{route}")
            rows.append((f"interpolation, image {name}, frame {index}", route, relative_error(single, encoded[name]),
                         relative_error(frames[index:][:1], encoded[name])))
    for method in ("normalized_mean", "nao"):
        history = host.run(seed_tests.centroid_graph(method))
        encoded_one = saved_latent(host, history, "save_encoded")
        for route in ("latent", "noise"):
            rows.append((f"centroid {method}", route, "—",
                         relative_error(saved_latent(host, history, f"save_centroid_{route}"), encoded_one)))
    for family in family_tests.VIDEO:
        _, error = family_tests.video_centroid(host, family)
        rows.append((f"centroid normalized_mean, {family}", "noise", "—", error))
    return table(("case", "route", "single seed's round trip", "round trip"), rows)


def samplers(host) -> str:
    """The stock samplers regenerating their inversions (tests/test_host_samplers.py): the demo model at karras steps,
    the smoke model at 10 ddim_uniform steps."""
    runs = [(sampler, "demo", sampler_tests.sampler_round_trips(host, sampler, True, methods, steps=steps,
                                                                 scheduler="karras"))
            for sampler, steps, methods in sampler_tests.DEMO_CASES]
    runs += [(sampler, "smoke", sampler_tests.sampler_round_trips(host, sampler, False))
             for sampler in sampler_tests.SMOKE_SAMPLERS]
    rows = [(sampler, model, method, errors["latent"], errors["noise"], info["evaluations"],
             ratio(results["ddim"][0]["noise"], errors["noise"]))
            for sampler, model, results in runs for method, (errors, info) in results.items()]
    return table(("sampler", "model", "method", "latent", "noise", "evaluations", "DDIM / method (noise)"), rows)


def flow(host) -> str:
    """The flow methods on the flow demo model and on the tiny random flow families (tests/test_host_flow.py)."""
    rf = flow_tests.rf_inversion_errors(host)
    midpoint, reports = flow_tests.midpoint_round_trips(host)
    rows = [("flow demo, RF-Inversion γ 0.5 η 0.9 (steps 0-5 of 10)", f"its sampler {rf['pulled']:.3g}, plain euler "
             f"{rf['plain']:.3g}, target prompt {rf['edited']:.3g}")]
    rows += [(f"flow demo, {name} (10 steps)", f"{error:.3g}" + (f" ({reports[name]['evaluations']} evaluations)"
                                                                if name in reports else ""))
             for name, error in midpoint.items()]
    for family in flow_tests.FLOW_FAMILIES:
        errors = flow_tests.flow_family_round_trips(host, host.run(flow_tests.flow_family_graph(family)))
        rows.append((f"{family}: DDIM (10 steps), FireFlow (6 steps)",
                     f"{errors['noise_route']:.4g}, {errors['fireflow']:.4g}"))
    return table(("case", "round trip to the image"), rows)


def bad_inputs(host) -> str:
    """The honest-output cases (tests/test_host_bad_inputs.py): cfg 100, schedulers that return other step counts,
    and the masked edit through the NOISE route."""
    errors, info = round_trip(host, "fixed_point", IMAGES[0], cfg=100.0, use_negative=True)
    rows = [("FixedPoint at cfg 100 with a negative prompt", f"noise {errors['noise']:.3g}, the node's estimate "
             f"{info['round_trip_estimate']:.3g}")]
    for scheduler, steps, strength in bad_input_tests.OTHER_STEP_COUNTS:
        errors, info = round_trip(host, "fixed_point", IMAGES[1], steps=steps, scheduler=scheduler, strength=strength)
        rows.append((f"{scheduler}, {steps} steps, strength {strength}", f"{info['steps']} steps inverted from "
                     f"start_at_step {info['start_at_step']}: latent {errors['latent']:.3g}, "
                     f"noise {errors['noise']:.3g}"))
    latents = bad_input_tests.masked_edit(host)
    masked, kept, encoded = bad_input_tests.MASKED, bad_input_tests.KEPT, latents["encoded"]
    rows.append(("masked edit", f"reconstruction {relative_error(latents['same_prompt'], encoded):.2e}; the edit "
                 f"moves the masked half by {relative_error(latents['edited'][masked], encoded[masked]):.3f}, the "
                 f"rest by {relative_error(latents['edited'][kept], encoded[kept]):.1e}; fresh noise instead of the "
                 f"seed leaves the masked half at {relative_error(latents['fresh'][masked], encoded[masked]):.3f}"))
    return table(("case", "measured"), rows)


def fidelity(host) -> str:
    """The Fidelity node's readout of a VAE round trip, for an image and a video clip (tests/test_host_fidelity.py)."""
    image = fidelity_tests.report(host, fidelity_tests.fidelity_graph(["decode", 0]))
    clip = fidelity_tests.report(host, fidelity_tests.video_fidelity_graph())
    rows = [(f"{IMAGES[0]} through the smoke VAE", "; ".join(image["text"])),
            ("a 5-frame clip through the Wan 2.1 VAE", f"{'; '.join(clip['text'])}; per frame "
             f"{', '.join(f'{p:.1f}' for p in clip['psnr'])} dB")]
    return table(("source", "readout"), rows)


def demo(host) -> str:
    """The trained demo model through core nodes (tests/test_demo_model.py): one-step denoising error, prompt
    following, VAE reconstruction."""
    from demo_model import install
    rows = []
    for sigma in (0.5, 2.0):
        trained = demo_tests.denoising_mse(host, install.UNET_FILES["eps"], sigma)
        untrained = demo_tests.denoising_mse(host, demo_tests.UNET_FILE, sigma)
        rows.append((f"one-step x0 MSE at σ {sigma}", f"trained {trained:.4f}, untrained {untrained:.4f}"))
    for label, prompts, batch in (("trained pairs", demo_tests.TRAINED_PROMPTS, 4),
                                  ("held-out pair", demo_tests.HELD_OUT_PROMPTS, 16)):
        colour, both = demo_tests.following_rates(host, prompts, batch)
        rows.append((f"prompt following, {label}", f"colour {colour:.0%}, colour and shape {both:.0%}"))
    psnrs = demo_tests.vae_psnrs(host, host.demo_files[1])
    rows.append(("VAE reconstruction PSNR (dB)", ", ".join(f"{p:.1f}" for p in psnrs)))
    return table(("measure", "value"), rows)


TABLES = {"round_trips": round_trips, "rnri": rnri, "exact": exact, "families": families, "schedules": schedules,
          "prompt_aware": prompt_aware, "seeds": seeds, "samplers": samplers, "flow": flow, "bad_inputs": bad_inputs,
          "fidelity": fidelity, "demo": demo}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    parser.add_argument("--work", help="scratch folder for the server (default: a new temporary one)")
    args = parser.parse_args()
    import_comfy()
    server = conftest.seedfinder_host(args.work or tempfile.mkdtemp(prefix="seedfinder_bench_host_"))
    server.start()
    try:
        for name in args.tables:
            print(f"### {name}\n{' '.join(TABLES[name].__doc__.split())}\n\n{TABLES[name](server)}\n", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
