"""Install the demo model and the second model where ComfyUI's core loaders find them: the shipped narrow weights
widened (deterministic, the same function) to SD1.5-detectable widths, the seeded CLIP-L they share, and a few
procedural images for LoadImage."""
import math
import os

import numpy as np

from . import data, ensure_comfy, second, text, train, widen

UNET_FILES = {"eps": "seedfinder_demo_shapes_sd15_eps.safetensors",
              "flow": "seedfinder_demo_shapes_sd15_flow.safetensors"}  # flow: load, then ModelSamplingSD3 shift 1
VAE_FILE = "seedfinder_demo_shapes_taesd.safetensors"
# The second model (glyph world, second.py): only for checking that defaults chosen on the demo model hold.
SECOND_UNET_FILE = "seedfinder_second_glyphs_sd15_eps.safetensors"
SECOND_VAE_FILE = "seedfinder_second_glyphs_taesd.safetensors"
CLIP_FILE = "seedfinder_demo_clip_l.safetensors"
# The scenes UNet (128×128, one or two objects; scene_unet.py), with the demo TAESD and twin.CLIP_FILE's CLIP-L
SCENE_UNET_FILE = "seedfinder_demo_scenes_sd15_eps.safetensors"
SD15_SCALE = 0.18215  # vae_scale: SD15's process_in multiplies by it again, so the UNet sees the encoder's output
# Never rendered for training (a different generator per image); the second pair is the held-out one.
DEMO_LABELS = (("red", "disc", "blue"), ("green", "triangle", "black"), ("yellow", "square", "gray"),
               ("white", "triangle", "red"))
DEMO_SEED = 9000
# More pictures of the held-out pair (the rare concept, DEMO_LABELS[1]) for the rare-concept example's references:
# RARE_REFERENCES of them, each from its own generator after the demo images'.
RARE_LABEL, RARE_REFERENCES = DEMO_LABELS[1], 2


def image_name(label) -> str:
    """The PNG name that says its caption: seedfinder_shapes_red_disc_on_blue.png."""
    colour, shape, background = label
    return f"seedfinder_shapes_{colour}_{shape}_on_{background}.png"


def save_file(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """safetensors file, folders created."""
    import safetensors.torch
    os.makedirs(os.path.dirname(path), exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)


def widen_unet_layout(state_dict: dict, wide_net, k: int) -> dict:
    """A narrow UNet (any layout) at k× width, the same function, given the wide layout (`wide_net`, on the meta
    device): widen.replicate per tensor (consecutive copies, ÷k on the input side), the timestep sinusoid re-indexed,
    q scaled by 1/√k as the head dimension grows k-fold (widen.widen_unet's steps, for the other layouts)."""
    wide_shapes = widen.shapes(wide_net)
    out = {}
    for key, value in state_dict.items():
        value = value.float()
        if key == "time_embed.0.weight":
            value = widen.timestep_input(value, wide_shapes[key][1], k)
        wide = widen.replicate(value, wide_shapes[key], k)
        out[key] = (wide / math.sqrt(k) if key.endswith(".to_q.weight") else wide).contiguous()
    assert out.keys() == wide_shapes.keys()
    return out


def model_of_config(config_class, unet: dict, dtype, state_dict: dict | None = None):
    """A MODEL of ComfyUI's `config_class` (e.g. supported_models.SD15) with this UNet config, whatever the file
    detection would call it (a narrow UNet at its trained width: the installed wide file's function, fewer FLOPs), run
    in `dtype`, weights from `state_dict` (left as initialised if None)."""
    import comfy.model_management as mm
    import comfy.model_patcher

    class GivenConfig(config_class):
        unet_extra_config = {}

    config = GivenConfig(dict(unet))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    if state_dict is not None:
        model.diffusion_model.load_state_dict(state_dict, strict=True)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def write_vae(narrow: dict, meta: dict, path: str) -> None:
    """A narrow TAESD file widened to ComfyUI's TAESD with SD15's latent scale, as VAELoader loads it."""
    import torch
    encoder, decoder = widen.widen_taesd(*train.split_vae(narrow))
    save_file({**{f"taesd_encoder.{k}": v for k, v in encoder.items()},
               **{f"taesd_decoder.{k}": v for k, v in decoder.items()},
               "vae_scale": torch.tensor(SD15_SCALE), "vae_shift": torch.tensor(0.0)},
              path, {"source_sha256": meta["source_sha256"]})


def write_scene_model(models_dir: str, weights: str = train.WEIGHTS, unet: bool = True) -> dict:
    """Write the scenes UNet (scene_unet.py) widened to SD15's 320 channels (diffusion_models/; skipped if not `unet`:
    399 MB float32 that an in-process run at the trained width never reads), the demo TAESD it was trained on (vae/)
    and the word-separating CLIP-L (text_encoders/, CLIPLoader type stable_diffusion); {kind: path}, kinds "scenes"
    (if written), "vae", "clip"."""
    from . import scene_unet, twin, words
    ensure_comfy()
    paths = {"vae": os.path.join(models_dir, "vae", VAE_FILE),
             "clip": os.path.join(models_dir, "text_encoders", twin.CLIP_FILE)}
    write_vae(*train.load_weights("vae", weights), paths["vae"])
    if unet:
        paths["scenes"] = os.path.join(models_dir, "diffusion_models", SCENE_UNET_FILE)
        narrow, meta = scene_unet.load_weights(weights)
        wide = scene_unet.unet(scene_unet.UNET_WIDTH * scene_unet.UNET_K, device="meta")
        save_file(widen_unet_layout(narrow, wide, scene_unet.UNET_K), paths["scenes"],
                  {key: meta[key] for key in ("source_sha256", "objective", "clip_fingerprint")})
    save_file(words.clip_state_dict(), paths["clip"])
    return paths


def write_clip(models_dir: str) -> str:
    """The seeded CLIP-L both models were trained on (second.CLIP_SEED is the same): each UNet's recorded fingerprint
    checks it at load."""
    path = os.path.join(models_dir, "text_encoders", CLIP_FILE)
    save_file(text.clip_state_dict(), path)
    return path


def write_demo_models(models_dir: str, weights: str = train.WEIGHTS) -> dict:
    """Write the demo model's wide UNets (diffusion_models/), TAESD VAE (vae/) and the CLIP-L (text_encoders/) from the
    narrow files in `weights`; {kind: path}, kinds "eps", "flow", "vae", "clip"."""
    ensure_comfy()
    paths = {"vae": os.path.join(models_dir, "vae", VAE_FILE)}
    write_vae(*train.load_weights("vae", weights), paths["vae"])
    for objective, name in UNET_FILES.items():
        if os.path.exists(os.path.join(weights, train.FILES[objective])):
            narrow, meta = train.load_weights(objective, weights)
            paths[objective] = os.path.join(models_dir, "diffusion_models", name)
            # float32: the widened weights are the fp16 narrow ones divided by 5 or √5, not fp16-representable
            save_file(widen.widen_unet(narrow), paths[objective],
                      {key: meta[key] for key in ("source_sha256", "objective", "clip_fingerprint")})
    paths["clip"] = write_clip(models_dir)
    return paths


def write_second_model(models_dir: str, weights: str = train.WEIGHTS) -> dict:
    """Write the second model (glyph world) widened: {kind: path}, kinds "second", "second_vae", "clip". Separate from
    the demo's: its wide UNet is 579 MB (float32, ×10 width) and only the benches that check defaults and its own
    tests load it."""
    ensure_comfy()
    paths = {"second_vae": os.path.join(models_dir, "vae", SECOND_VAE_FILE),
             "second": os.path.join(models_dir, "diffusion_models", SECOND_UNET_FILE)}
    write_vae(*second.load_weights("vae", weights), paths["second_vae"])
    narrow, meta = second.load_weights("eps", weights)
    save_file(widen_unet_layout(narrow, second.unet(second.UNET_WIDTH * second.UNET_K, device="meta"), second.UNET_K),
              paths["second"],
              {key: meta[key] for key in ("source_sha256", "objective", "clip_fingerprint")})
    paths["clip"] = write_clip(models_dir)
    return paths


def demo_image(index: int) -> np.ndarray:
    """The uint8 image of DEMO_LABELS[index]."""
    return data.render(DEMO_LABELS[index], np.random.default_rng(DEMO_SEED + index))


def rare_reference_name(index: int) -> str:
    """The PNG name of the held-out pair's extra picture `index`: seedfinder_shapes_green_triangle_on_black_2.png."""
    return image_name(RARE_LABEL).replace(".png", f"_{index + 2}.png")


def rare_reference(index: int) -> np.ndarray:
    """The uint8 extra picture `index` of the held-out pair."""
    return data.render(RARE_LABEL, np.random.default_rng(DEMO_SEED + len(DEMO_LABELS) + index))


def write_demo_images(input_dir: str) -> list:
    """The demo images and the held-out pair's extra pictures as PNGs for LoadImage; their names."""
    from PIL import Image
    os.makedirs(input_dir, exist_ok=True)
    pictures = {image_name(label): demo_image(index) for index, label in enumerate(DEMO_LABELS)}
    pictures.update({rare_reference_name(index): rare_reference(index) for index in range(RARE_REFERENCES)})
    for name, picture in pictures.items():
        Image.fromarray(picture).save(os.path.join(input_dir, name))
    return list(pictures)


# The scenes world's pictures for LoadImage (never drawn for training: placed by hand, colours jittered by
# SCENE_SEED + index). The first is the shape-edit example's ("a red disc …" → "a red square …", the blue square kept).
SCENE_DEMOS = (
    ("gray", (("red", "disc", 38.0, 64.0, 22.0), ("blue", "square", 92.0, 70.0, 18.0))),
    ("black", (("yellow", "triangle", 62.0, 66.0, 30.0),)),
    ("blue", (("white", "disc", 40.0, 44.0, 18.0), ("purple", "triangle", 88.0, 84.0, 22.0))),
    ("red", (("green", "square", 66.0, 60.0, 26.0),)),
)
SCENE_SEED = 9100
# More pictures of the rare pair (scenes.RARE) for the rare-concept example's references
SCENE_RARE = (("gray", (("purple", "square", 60.0, 62.0, 24.0),)), ("white", (("purple", "square", 76.0, 52.0, 20.0),)),
              ("black", (("purple", "square", 50.0, 74.0, 22.0),)))


def scene_of(spec: tuple):
    """A scenes.Scene from (background, ((colour, shape, cx, cy, size), ...)), objects left to right."""
    from . import scenes
    background, things = spec
    return scenes.Scene(background, tuple(sorted((scenes.Thing(*thing) for thing in things), key=lambda t: t.cx)))


def scene_image_name(scene) -> str:
    """The PNG name that says its caption: seedfinder_scene_red_disc_and_blue_square_on_gray.png."""
    return f"seedfinder_scene_{scene.caption.replace(' background', '').replace('a ', '').replace(' ', '_')}.png"


def write_scene_images(input_dir: str) -> list:
    """The scenes demo pictures (SCENE_DEMOS, then SCENE_RARE) as PNGs for LoadImage, each with one mask PNG per object
    (`<name>_object<i>.png`, white inside, objects left to right: LoadImageMask's input); the pictures' names."""
    from PIL import Image

    from . import scenes
    os.makedirs(input_dir, exist_ok=True)
    names = []
    for index, spec in enumerate(SCENE_DEMOS + SCENE_RARE):
        scene = scene_of(spec)
        image, masks = scenes.render(scene, np.random.default_rng(SCENE_SEED + index))
        name = scene_image_name(scene)
        Image.fromarray(image).save(os.path.join(input_dir, name))
        for i, mask in enumerate(masks):
            Image.fromarray((mask * 255).round().astype(np.uint8)).save(
                os.path.join(input_dir, name.replace(".png", f"_object{i}.png")))
        names.append(name)
    return names
