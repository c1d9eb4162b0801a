"""The scenes UNet: an ε-prediction SD1.5-class UNet trained on the 128×128 scenes world (scenes.py: one or two objects,
exact masks) with the word-separating CLIP-L (words.py, loaded as SD1.5's text encoder) and the demo's shipped TAESD
(fully convolutional: 16×16 latents at 128×128). CPU, one thread, deterministic. Two stages, each checkpointed and
resumed: the base stage at a constant learning rate (its EMA weights, rounded to fp16, are written to the checkpoints
folder), then a cool-down that continues from them with the learning rate decayed to zero (cosine).

From the repository root with the host venv:
    python -m demo_model.scene_unet                 # train both stages (resumes from bench/out/scene_unet/)
    python -m demo_model.scene_unet --steps 3000    # a base stage cut off at 3000 steps (constant learning rate: the
                                                    # same weights a longer base stage has at step 3000)
    python -m demo_model.scene_unet --check         # the shipped file comes from these sources
"""
import argparse
import copy
import hashlib
import inspect
import json
import os
import sys
import time

import torch

from . import ensure_comfy, scenes, second, text, train, widen, words

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINTS = os.path.join(os.path.dirname(HERE), "bench", "out", "scene_unet")  # ignored by git
FILE = "scenes_unet_eps_narrow.safetensors"
SOURCES = ("scene_unet.py", "scenes.py", "words.py", "data.py")
# What this model takes from the other modules: hashed by their source text (second.py's rule).
SHARED = (train.init_unet_, train.pixels, train.alphas_cumprod, train.noisy, train.encode_latents, train.split_vae,
          train.load_weights, text.clip_state_dict, text.load_clip, text.encode, second.Checkpoint, second.run_steps,
          second.ran_on, second.file_sha256)
LATENT = scenes.SIZE // 8  # the TAESD downsamples 8×
UNET_WIDTH = 32
UNET_K = 320 // UNET_WIDTH  # SD15 detection requires model_channels 320
CONFIG = dict(seed=41, images=16000, steps=6000, batch=64, lr=1e-3, warmup=200, ema=0.999, cfg_dropout=0.1,
              width=UNET_WIDTH, vae=train.FILES["vae"])
# The cool-down stage: from the base stage's fp16 EMA weights, a fresh AdamW at `lr` decayed to 0 (cosine); the base
# stage's data and captions. A constant learning rate leaves the weights noisy (speckled backgrounds, extra objects).
COOLDOWN = dict(seed=43, steps=3000, lr=5e-4, warmup=50, ema=0.998)
BASE_FILE = "base.safetensors"  # the base stage's weights, in the checkpoints folder
CHECKPOINT_EVERY = 100
QUICK = dict(images=128, steps=6)  # --quick: a smoke run (checkpoints every 3 steps)


def unet_config(model_channels: int = UNET_WIDTH) -> dict:
    """UNetModel arguments, SD15-detectable at 320 channels: levels 16×16 and 8×8 (channels ×1, ×2), one res block
    each; text cross-attention at 8×8 and in the middle (attention at 16×16 costs 3.7× the step time on this CPU)."""
    return dict(
        use_checkpoint=False, image_size=LATENT, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
        in_channels=4, out_channels=4, model_channels=model_channels, num_res_blocks=[1, 1], channel_mult=[1, 2],
        transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1,
        use_linear_in_transformer=False, context_dim=words.WIDTH, use_temporal_resblock=False,
        use_temporal_attention=False, num_heads=8, num_head_channels=-1,
    )


def unet(model_channels: int = UNET_WIDTH, device=None):
    """ComfyUI's UNetModel in this layout at `model_channels` (weights uninitialised)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    return UNetModel(**unet_config(model_channels), device=device, operations=comfy.ops.disable_weight_init)


def source_hash() -> str:
    """sha256 over this model's sources (name and bytes) and the shared functions' source text."""
    digest = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    for function in SHARED:
        digest.update(f"{function.__module__}.{function.__qualname__}".encode() + b"\0"
                      + inspect.getsource(function).encode() + b"\0")
    return digest.hexdigest()


class Checkpoint(second.Checkpoint):
    """second.Checkpoint keyed by this model's sources and its config without the step count (constant learning
    rate after warm-up: a longer run continues a shorter one)."""

    def __init__(self, folder: str, stage: str, config: dict):
        self.path = os.path.join(folder, f"{stage}.pt")
        key = {k: v for k, v in config.items() if k != "steps"}
        self.key = json.dumps({"config": key, "sources": source_hash()}, sort_keys=True)


def load_clip():
    """The word-separating CLIP-L as CLIPLoader (type stable_diffusion) builds it."""
    return text.load_clip(words.clip_state_dict())


def caption_embeddings(clip, captions: list, checkpoints: str) -> tuple:
    """(CLIPTextEncode contexts (C, 77, 768) of `captions`, the empty prompt's (77, 768)); cached with the
    checkpoints."""
    cache = Checkpoint(checkpoints, "captions", {"captions": captions, "clip": text.fingerprint(clip)})
    state = cache.load()
    if state is None:
        state = {"context": torch.cat([text.encode(clip, caption) for caption in [*captions, ""]])}
        cache.save(state)
    return state["context"][:-1], state["context"][-1]


def training_data(config: dict, encoder: torch.nn.Module, clip, checkpoints: str) -> tuple:
    """(latents, each latent's caption context index, contexts (C, 77, 768), the empty prompt's context) of the
    config's `images` scenes drawn with its `seed`."""
    images, drawn = scenes.dataset(config["images"], seed=config["seed"])
    latents = train.encode_latents(encoder, images)
    captions = sorted({scene.caption for scene in drawn})
    contexts, empty = caption_embeddings(clip, captions, checkpoints)
    return latents, torch.tensor([captions.index(scene.caption) for scene in drawn]), contexts, empty


def train_unet(config: dict, stage: dict, data: tuple, checkpoints: str, every: int, init: dict | None = None) -> tuple:
    """(EMA UNet, final loss, timing): ε-prediction on SD1.5's schedule (train.noisy), text-conditioned, `cfg_dropout`
    of captions replaced by the empty prompt. `stage` sets name, seed, steps, lr, warmup, ema and the schedule
    ("constant" after warm-up, or "cosine" to zero); `init` the starting weights (None: train.init_unet_)."""
    generator = torch.Generator().manual_seed(stage["seed"])
    latents, caption_index, contexts, empty = data
    net = unet(config["width"])
    if init is None:
        train.init_unet_(net, generator)
    else:
        net.load_state_dict(init)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimiser = torch.optim.AdamW(net.parameters(), lr=stage["lr"], weight_decay=0.0)

    def learning_rate(step: int) -> float:
        if stage["schedule"] == "cosine":
            return train.learning_rate(step, stage["steps"], stage["lr"], stage["warmup"])
        return stage["lr"] * min(1.0, (step + 1) / stage["warmup"])

    def step_fn(step: int) -> float:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step)
        index = torch.randint(0, len(latents), (config["batch"],), generator=generator)
        context = contexts[caption_index[index]]
        dropped = torch.rand(len(index), generator=generator) < config["cfg_dropout"]
        context[dropped] = empty
        x0 = latents[index]
        model_input, timestep, target = train.noisy("eps", x0, torch.randn(x0.shape, generator=generator), generator)
        loss = (net(model_input, timestep, context=context) - target).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            for average, param in zip(ema.parameters(), net.parameters()):
                average.lerp_(param, 1 - stage["ema"])
        return loss.item()

    key = {**config, **stage, "vae_sha256": second.file_sha256(config["vae"])}
    if stage["schedule"] == "constant":  # a longer constant-rate run continues a shorter one
        key.pop("steps")
    loss, timing = second.run_steps(f"scene_unet {stage['name']}", Checkpoint(checkpoints, stage["name"], key),
                                    {"net": net, "ema": ema}, optimiser, generator, stage["steps"], every, step_fn)
    return ema, loss, timing


def base_stage(config: dict) -> dict:
    """The base stage's `train_unet` settings: the config's seed, steps, lr, warm-up and EMA, constant rate."""
    return dict(name="unet", schedule="constant", **{k: config[k] for k in ("seed", "steps", "lr", "warmup", "ema")})


def fp16_state(net: torch.nn.Module) -> dict:
    """The state dict rounded to fp16, as shipped."""
    return {key: value.detach().to(torch.float16).contiguous() for key, value in net.state_dict().items()}


def weights_sha256(state: dict) -> str:
    """sha256 over a state dict's names and fp16 bytes (the weights alone: a file's metadata holds its timings)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode() + b"\0" + state[key].to(torch.float16).numpy().tobytes())
    return digest.hexdigest()


def base_weights(config: dict, data: tuple, checkpoints: str, every: int) -> tuple:
    """(float32 state dict, metadata) of the base stage's fp16 EMA weights: read from `checkpoints`/BASE_FILE when it
    holds this config's base stage, else trained and written there."""
    import safetensors.torch
    from safetensors import safe_open
    path = os.path.join(checkpoints, BASE_FILE)
    if os.path.exists(path):
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
            if json.loads(metadata["config"]) == config:
                print(f"scene_unet: base stage read from {path}", flush=True)
                return {key: f.get_tensor(key).float() for key in f.keys()}, metadata
    net, loss, timing = train_unet(config, base_stage(config), data, checkpoints, every)
    metadata = {"source_sha256": source_hash(), "ran_on": second.ran_on(), "config": json.dumps(config),
                "final_loss": json.dumps(loss), "train_seconds": json.dumps(timing)}
    os.makedirs(checkpoints, exist_ok=True)
    safetensors.torch.save_file(fp16_state(net), path, metadata=metadata)
    return {key: value.float() for key, value in fp16_state(net).items()}, metadata


def load_weights(folder: str = train.WEIGHTS) -> tuple:
    """(float32 state dict, metadata) of the shipped narrow file."""
    from safetensors import safe_open
    with safe_open(os.path.join(folder, FILE), framework="pt") as f:
        return {key: f.get_tensor(key).float() for key in f.keys()}, f.metadata()


def check(folder: str = train.WEIGHTS) -> int:
    """0 if the shipped file exists and was written by the current sources, else 1 (reason printed)."""
    from safetensors import safe_open
    path, expected = os.path.join(folder, FILE), source_hash()
    if not os.path.exists(path):
        print(f"MISSING {FILE}")
        return 1
    with safe_open(path, framework="pt") as f:
        found = (f.metadata() or {}).get("source_sha256")
    print(f"{'ok' if found == expected else 'STALE'} {FILE} (trained by sources {found}, current {expected})")
    return int(found != expected)


def main(argv=None) -> int:
    """Command line: train (resuming) or check the shipped file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the shipped file's source hash, train nothing")
    parser.add_argument("--steps", type=int, default=CONFIG["steps"], help="base-stage steps (a cut-off run: fewer)")
    parser.add_argument("--cooldown-steps", type=int, default=COOLDOWN["steps"], help="cool-down steps")
    parser.add_argument("--out", default=train.WEIGHTS, help="folder for the narrow file")
    parser.add_argument("--checkpoints", default=CHECKPOINTS, help="folder of the resumable checkpoints")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images (smoke test)")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    torch.set_num_threads(1)
    began, cpu_began = time.time(), time.process_time()
    ensure_comfy()
    config, every = dict(CONFIG, steps=args.steps), CHECKPOINT_EVERY
    cooldown = dict(COOLDOWN, steps=args.cooldown_steps, name="cooldown", schedule="cosine")
    if args.quick:
        config.update(QUICK, warmup=2)
        cooldown.update(steps=QUICK["steps"], warmup=2)
        every = QUICK["steps"] // 2
    encoder = widen.taesd_encoder()
    # the UNet learns the latents of the shipped (fp16) demo encoder, which is what users will run
    encoder.load_state_dict(train.split_vae(train.load_weights("vae", args.out)[0])[0])
    clip = load_clip()
    data = training_data(config, encoder, clip, args.checkpoints)
    base, base_metadata = base_weights(config, data, args.checkpoints, every)
    net, loss, timing = train_unet(config, cooldown, data, args.checkpoints, every, init=base)
    import safetensors.torch
    metadata = {"source_sha256": source_hash(), "ran_on": second.ran_on(), "objective": "eps",
                "config": json.dumps(config), "cooldown": json.dumps(cooldown), "unet": json.dumps(unet_config()),
                "vae_sha256": second.file_sha256(config["vae"]), "clip_fingerprint": json.dumps(text.fingerprint(clip)),
                "base_weights_sha256": weights_sha256(base),
                "base_source_sha256": base_metadata["source_sha256"], "base_ran_on": base_metadata["ran_on"],
                "base_final_loss": base_metadata["final_loss"], "base_train_seconds": base_metadata["train_seconds"],
                "final_loss": json.dumps(loss), "train_seconds": json.dumps(timing)}
    os.makedirs(args.out, exist_ok=True)
    safetensors.torch.save_file(fp16_state(net), os.path.join(args.out, FILE), metadata=metadata)
    print(f"scene_unet: base {base_metadata['train_seconds']} s, cool-down {timing} s, final loss {loss:.5f}; this "
          f"run, data and captions included: wall {time.time() - began:.0f} s, "
          f"cpu {time.process_time() - cpu_began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
