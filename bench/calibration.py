"""How well the invert nodes' round-trip estimate (nodes/host/report.py: the sum of the steps' final residuals over
the latent's RMS) predicts the measured round trip, from the per-image rows of bench/results/fidelity.json (written
by `python -m bench.fidelity`): the ratio estimate / measured per method and step count, and how often the 5 %
warning would fire on a round trip under 5 %. Writes bench/results/calibration.md.

usage: .host/venv/bin/python -m bench.calibration [--fidelity bench/results/fidelity.json] [--out bench/results]
"""
import argparse
import json
import os
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
POOR_ROUND_TRIP = 0.05  # nodes/host/report.py's threshold; read here without importing ComfyUI


def ratios(rows: list) -> dict:
    """{(method, steps): [(estimate / measured, false warning)]} over every image with a non-zero measured round
    trip and an estimate."""
    out = defaultdict(list)
    for row in rows:
        for image in row["per_image"]:
            estimate, measured = image["estimate"], image["latent_error"]
            if estimate is None or measured <= 0:
                continue
            out[(row["method"], row["steps"])].append(
                (estimate / measured, estimate > POOR_ROUND_TRIP >= measured))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelity", default=os.path.join(HERE, "results", "fidelity.json"))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    with open(args.fidelity) as f:
        table = ratios(json.load(f))
    lines = ["Round-trip estimate / measured round trip, per image (demo model, cfg 1 and 3, procedural images and "
             "photos), from bench/results/fidelity.json", "",
             "| method | steps | images | ratio min | ratio max | within 3× | false 5 % warnings |",
             "|---|---|---|---|---|---|---|"]
    for (method, steps), values in table.items():
        r = [v[0] for v in values]
        within = sum(1 / 3 <= x <= 3 for x in r)
        lines.append(f"| {method} | {steps} | {len(r)} | {min(r):.2g} | {max(r):.2g} | {within}/{len(r)} | "
                     f"{sum(v[1] for v in values)} |")
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "calibration.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
