"""The automatic mask's defaults (threshold, steps), chosen on the demo ε model, checked on the second trained model
(glyphs) beside the demo model by the same measure: for a colour edit of each picture's object (the demo's shape, the
second's letter), the mask's IoU with the object's exact latent cells and the share of them it covers, at the default
and its neighbours. Writes bench/results/automask_second.md.
usage: .host/venv/bin/python -m bench.automask [--images 12] [--steps 20]
"""
import argparse
import copy
import os
from dataclasses import replace

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = ((0.2, 8), (0.3, 4), (0.3, 8), (0.4, 4), (0.4, 8))
"""(mask_threshold, mask_steps) measured; the default (AttentionEditOptions) among them."""
SEED = 2026


def recoloured(label: tuple, colours: tuple, background: str) -> tuple:
    """The label with its first word (the colour) the next of `colours` that is not the `background`."""
    start = colours.index(label[0])
    return next(c for c in colours[start + 1:] + colours[:start] if c != background), *label[1:]


def glyph_pictures(count: int) -> list:
    """(source caption, target caption, uint8 image, the letter's coverage (64, 64)) of `count` random glyph pictures;
    the coverage replays `glyphs.render`'s draws on a copy of its generator (the two colours' jitter, the texture, then
    the glyph)."""
    from demo_model import glyphs
    rng = np.random.default_rng(SEED)
    labels = glyphs.all_labels()
    drawn = []
    for index in rng.choice(len(labels), count, replace=False):
        label = labels[index]
        replay = copy.deepcopy(rng)
        image = glyphs.render(label, rng)
        replay.uniform(size=6)
        glyphs.texture_mask(label[2], replay)
        drawn.append((glyphs.caption(label), glyphs.caption(recoloured(label, glyphs.COLOURS, label[3])), image,
                      glyphs.glyph_mask(label[1], replay)))
    return drawn


def shape_pictures(count: int) -> list:
    """The same for `count` random pictures of the demo world (demo_model.masks: the shape's exact coverage)."""
    from demo_model import data, masks
    rng = np.random.default_rng(SEED)
    labels = data.all_labels(held_out=False)
    drawn = []
    for index in rng.choice(len(labels), count, replace=False):
        label = labels[index]
        image, cover = masks.draw(label, rng)
        drawn.append((data.caption(label), data.caption(recoloured(label, data.COLOURS, label[2])), image, cover))
    return drawn


def mask_scores(name: str, pictures: list, steps: int) -> dict:
    """{(threshold, mask steps): [(IoU, covered, share of the picture masked) per picture]} on trained model `name`."""
    from seedfinder.nodes import host
    from seedfinder.nodes.host.attention_edit import VAE_FACTOR
    from seedfinder.nodes.invert import FixedPointInvert
    from seedfinder.solvers import AttentionEditOptions, FixedPointOptions, widgets

    from bench.fidelity import conditioning
    from tests.support.inprocess import trained_model

    scores = {setting: [] for setting in SETTINGS}
    model, clip, vae = trained_model(name)
    for source_text, target_text, image, cover in pictures:
        latent = {"samples": vae.encode(torch.from_numpy(image)[None].float() / 255.0)}
        source, target = conditioning(clip, source_text), conditioning(clip, target_text)
        seed = FixedPointInvert.execute(model=model, positive=source, negative=None, latent=latent, steps=steps,
                                        scheduler="simple", cfg=1.0, strength=1.0, sampler="euler", noise_seed=0,
                                        **widgets(FixedPointOptions()))[1]
        cells = tuple(latent["samples"].shape[-2:])
        exact = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy((cover > 0).astype(np.float32))[None],
                                                        cells)[0]
        for threshold, mask_steps in SETTINGS:
            options = replace(AttentionEditOptions(), mask_threshold=threshold, mask_steps=mask_steps)
            guider = host.attention_edit_guider(model, host.Prompt(source, None, 1.0), host.Prompt(target, None, 1.0),
                                                options, seed)
            found = guider.mask[0, ::VAE_FACTOR, ::VAE_FACTOR].float()
            scores[(threshold, mask_steps)].append((float((found * exact).sum() / ((found + exact) > 0).sum()),
                                                    float((found * exact).sum() / exact.sum()), float(found.mean())))
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tests.support.inprocess import import_pack
    import_pack()
    from seedfinder.solvers import AttentionEditOptions

    default = AttentionEditOptions()
    lines = [f"The automatic mask on the two trained ε models, {args.images} random pictures each, a colour edit of "
             f"the object (demo: the shape; second: the letter), FixedPoint seed at {args.steps} steps, cfg 1; "
             f"mask_source {default.mask_source}. IoU with the object's exact latent cells, the share of them "
             f"covered, the share of the picture masked: mean (lowest). Default: threshold {default.mask_threshold}, "
             f"{default.mask_steps} steps.\n", "| model | threshold | steps | IoU | covered | masked |",
             "|---|---|---|---|---|---|"]
    with torch.inference_mode():
        for name, pictures in (("demo", shape_pictures), ("second", glyph_pictures)):
            for (threshold, steps), values in mask_scores(name, pictures(args.images), args.steps).items():
                iou, covered, masked = (np.array(column) for column in zip(*values))
                mark = " (default)" if (threshold, steps) == (default.mask_threshold, default.mask_steps) else ""
                lines.append(f"| {name} | {threshold}{mark} | {steps} | {iou.mean():.2f} ({iou.min():.2f}) | "
                             f"{covered.mean():.0%} ({covered.min():.0%}) | {masked.mean():.0%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(HERE, "results", "automask_second.md"), "w") as out:
        out.write(f"`python -m bench.automask --images {args.images} --steps {args.steps}`\n\n{text}")


if __name__ == "__main__":
    main()
