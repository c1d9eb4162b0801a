"""The second model: trained on the glyph world (glyphs.py), not the shapes, with another UNet layout and its own
TAESD, so that a default chosen on the demo model can be checked on a model the project did not tune on.
CPU, one thread, deterministic; each stage checkpoints every CHECKPOINT_EVERY steps and resumes from its checkpoint.

From the repository root with the host venv:
    python -m demo_model.second                   # its VAE, then its ε UNet (resumes from bench/out/second/)
    python -m demo_model.second --stage unet      # the UNet only, on the shipped second VAE
    python -m demo_model.second --check           # the shipped second-model files come from these sources
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

from . import ensure_comfy, glyphs, text, train, widen

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINTS = os.path.join(os.path.dirname(HERE), "bench", "out", "second")  # ignored by git
FILES = {"vae": "second_taesd_narrow.safetensors", "eps": "second_unet_eps_narrow.safetensors"}
SOURCES = ("glyphs.py", "second.py")
# What the second model takes from the demo's modules: hashed by their source text (and the constants they read), so
# retraining the demo does not make these files stale unless it changes what trained them.
SHARED = (train.learning_rate, train.init_unet_, train.pixels, train.alphas_cumprod, train.noisy, train.encode_latents,
          train.split_vae, train.load_weights,
          widen.taesd_encoder, widen.taesd_decoder, widen.replicate, widen.timestep_input, text.clip_state_dict,
          text.load_clip, text.encode)
SHARED_CONSTANTS = dict(linear_start=train.LINEAR_START, linear_end=train.LINEAR_END, timesteps=train.TIMESTEPS,
                        latent_channels=widen.LATENT_CHANNELS)
CLIP_SEED = 20  # the seeded random CLIP-L the demo model uses too (install writes it once)
UNET_WIDTH = 32
UNET_K = 320 // UNET_WIDTH  # SD15 detection requires model_channels 320
TAESD_WIDTH = widen.TAESD_WIDTH  # widened 4× to ComfyUI's 64 by widen.widen_taesd
# The VAE starts from the demo's shipped TAESD: from random weights this width sat at the per-image mean colour
# (MSE 0.022) for all of a 700-step run, which the CPU budget cannot outlast; fine-tuned it passes the 8×8 block-mean
# baseline (0.0105) within 200 steps.
VAE_CONFIG = dict(seed=10, images=6000, steps=400, batch=32, lr=1e-3, latent_noise=0.05, scale_penalty=0.1,
                  width=TAESD_WIDTH, init=train.FILES["vae"])
UNET_STEPS = 1000
CHECKPOINT_EVERY = 100
QUICK = dict(images=128, steps=6)  # --quick: a smoke run of the whole pipeline (checkpoints every 3 steps)


def unet_config(model_channels: int = UNET_WIDTH) -> dict:
    """The second UNet's UNetModel arguments, SD15-detectable at 320 channels but laid out unlike the demo's: two res
    blocks per level, channels ×2 at the second level, attention only at 4×4 and in the middle (none at 8×8)."""
    return dict(
        use_checkpoint=False, image_size=8, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
        in_channels=widen.LATENT_CHANNELS, out_channels=widen.LATENT_CHANNELS, model_channels=model_channels,
        num_res_blocks=[2, 2], channel_mult=[1, 2], transformer_depth=[0, 0, 1, 1],
        transformer_depth_output=[0, 0, 0, 1, 1, 1], transformer_depth_middle=1, use_linear_in_transformer=False,
        context_dim=768, use_temporal_resblock=False, use_temporal_attention=False, num_heads=8,
        num_head_channels=-1,
    )


UNET_CONFIG = dict(seed=11, images=6000, steps=UNET_STEPS, batch=64, lr=1e-3, warmup=100, ema=0.998,
                   cfg_dropout=0.1, width=UNET_WIDTH, unet=unet_config())


def unet(model_channels: int = UNET_WIDTH, device=None):
    """ComfyUI's UNetModel in the second layout at `model_channels` (weights uninitialised)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    return UNetModel(**unet_config(model_channels), device=device, operations=comfy.ops.disable_weight_init)


def source_hash() -> str:
    """sha256 over this model's sources (name and bytes), the shared functions' source text and shared constants."""
    digest = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    for function in SHARED:
        digest.update(f"{function.__module__}.{function.__qualname__}".encode() + b"\0"
                      + inspect.getsource(function).encode() + b"\0")
    digest.update(json.dumps(SHARED_CONSTANTS, sort_keys=True).encode())
    return digest.hexdigest()


def load_weights(name: str, folder: str = train.WEIGHTS) -> tuple:
    """(float32 state dict, metadata) of a shipped narrow second-model file ("vae" or "eps")."""
    from safetensors import safe_open
    with safe_open(os.path.join(folder, FILES[name]), framework="pt") as f:
        return {key: f.get_tensor(key).float() for key in f.keys()}, f.metadata()


class Checkpoint:
    """A stage's resumable state in `folder`/`stage`.pt, valid only for the same config and sources."""

    def __init__(self, folder: str, stage: str, config: dict):
        self.path = os.path.join(folder, f"{stage}.pt")
        self.key = json.dumps({"config": config, "sources": source_hash()}, sort_keys=True)

    def load(self):
        """The saved state dict, or None if there is none for this config and these sources."""
        if not os.path.exists(self.path):
            return None
        state = torch.load(self.path, weights_only=False)
        return state if state.get("key") == self.key else None

    def save(self, state: dict) -> None:
        """Write atomically (a cut-off run leaves the previous checkpoint intact)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        torch.save({**state, "key": self.key}, self.path + ".tmp")
        os.replace(self.path + ".tmp", self.path)


def run_steps(stage: str, checkpoint: Checkpoint, modules: dict, optimiser, generator: torch.Generator, steps: int,
              every: int, step_fn) -> tuple:
    """Run `step_fn(step)` (returns the logged loss) for steps not yet done, resuming from and saving `checkpoint`
    every `every` steps with the modules, optimiser and generator state; (mean loss of the last 100, {"wall": s,
    "cpu": s}: wall and process CPU seconds of the steps, over all resumed runs)."""
    state = checkpoint.load()
    start, recent, seconds, cpu = 0, [], 0.0, 0.0
    if state is not None:
        for name, module in modules.items():
            module.load_state_dict(state[name])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        start, recent, seconds, cpu = state["step"], state["recent"], state["seconds"], state["cpu_seconds"]
        print(f"{stage}: resumed at step {start} ({seconds:.0f} s trained)", flush=True)
    began, cpu_began = time.time(), time.process_time()
    for step in range(start, steps):
        recent = (recent + [step_fn(step)])[-100:]
        if step % 100 == 0 or step == steps - 1:
            print(f"{stage} step {step} loss {recent[-1]:.5f} ({seconds + time.time() - began:.0f} s)", flush=True)
        if (step + 1) % every == 0 or step == steps - 1:
            checkpoint.save({**{name: module.state_dict() for name, module in modules.items()},
                             "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
                             "step": step + 1, "recent": recent, "seconds": seconds + time.time() - began,
                             "cpu_seconds": cpu + time.process_time() - cpu_began})
    timing = {"wall": round(seconds + time.time() - began, 1), "cpu": round(cpu + time.process_time() - cpu_began, 1)}
    return sum(recent) / len(recent), timing


def train_vae(config: dict, checkpoints: str, every: int) -> tuple:
    """(encoder, decoder, final MSE, timing): the demo's TAESD objective (train.train_vae's) on glyph images, from
    the shipped demo TAESD (`config["init"]`)."""
    generator = torch.Generator().manual_seed(config["seed"])
    encoder, decoder = widen.taesd_encoder(config["width"]), widen.taesd_decoder(config["width"])
    for net, state in zip((encoder, decoder), train.split_vae(train.load_weights("vae")[0])):
        net.load_state_dict(state)
    images = torch.from_numpy(glyphs.dataset(config["images"], seed=config["seed"])[0])
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=config["lr"])

    def step_fn(step: int) -> float:
        for group in optimiser.param_groups:
            group["lr"] = train.learning_rate(step, config["steps"], config["lr"], warmup=50)
        x = train.pixels(images[torch.randint(0, len(images), (config["batch"],), generator=generator)].numpy())
        z = encoder(x)
        recon = decoder(z + config["latent_noise"] * torch.randn(z.shape, generator=generator))
        mse = (recon - x).square().mean()
        loss = mse + config["scale_penalty"] * (z.square().mean() - 1.0).square()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return mse.item()

    key = {**config, "init_sha256": file_sha256(config["init"])}
    loss, timing = run_steps("vae", Checkpoint(checkpoints, "vae", key), {"encoder": encoder, "decoder": decoder},
                              optimiser, generator, config["steps"], every, step_fn)
    return encoder, decoder, loss, timing


def caption_embeddings(clip, checkpoints: str) -> tuple:
    """(captions, their CLIPTextEncode embeddings (C, 77, 768), the empty prompt's (77, 768)); kept with the
    checkpoints, as encoding the captions takes minutes on one thread."""
    captions = sorted({glyphs.caption(label) for label in glyphs.all_labels()})
    cache = Checkpoint(checkpoints, "captions", {"captions": captions, "clip": text.fingerprint(clip)})
    state = cache.load()
    if state is None:
        state = {"embeddings": torch.cat([text.encode(clip, caption) for caption in captions]),
                 "empty": text.encode(clip, "")[0]}
        cache.save(state)
    return captions, state["embeddings"], state["empty"]


def train_unet(config: dict, encoder: torch.nn.Module, clip, checkpoints: str, every: int) -> tuple:
    """(EMA UNet, final loss, timing): ε-prediction on SD1.5's schedule (train.noisy), text-conditioned, 10 %
    empty-prompt dropout, on the second VAE's latents of glyph images."""
    generator = torch.Generator().manual_seed(config["seed"])
    images, labels = glyphs.dataset(config["images"], seed=config["seed"])
    latents = train.encode_latents(encoder, images)
    captions, embeddings, empty = caption_embeddings(clip, checkpoints)
    caption_index = torch.tensor([captions.index(glyphs.caption(label)) for label in labels])
    net = unet(config["width"])
    train.init_unet_(net, generator)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config["lr"], weight_decay=0.0)

    def step_fn(step: int) -> float:
        for group in optimiser.param_groups:
            group["lr"] = train.learning_rate(step, config["steps"], config["lr"], config["warmup"])
        index = torch.randint(0, len(latents), (config["batch"],), generator=generator)
        context = embeddings[caption_index[index]]
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
                average.lerp_(param, 1 - config["ema"])
        return loss.item()

    loss, timing = run_steps("unet", Checkpoint(checkpoints, "unet", config), {"net": net, "ema": ema}, optimiser,
                              generator, config["steps"], every, step_fn)
    return ema, loss, timing


def file_sha256(name: str, folder: str = train.WEIGHTS) -> str:
    """sha256 of a shipped file's bytes."""
    with open(os.path.join(folder, name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def ran_on() -> str:
    """Where a file was trained: device, threads, and the versions that shape its numbers."""
    import PIL
    return f"cpu, {torch.get_num_threads()} thread(s), torch {torch.__version__}, Pillow {PIL.__version__}"


def save(state_dict: dict, name: str, folder: str, metadata: dict) -> None:
    """A narrow second-model file, fp16, with string metadata (the source hash always included)."""
    import safetensors.torch
    os.makedirs(folder, exist_ok=True)
    tensors = {key: value.detach().to(torch.float16).contiguous() for key, value in state_dict.items()}
    strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    safetensors.torch.save_file(tensors, os.path.join(folder, FILES[name]),
                                metadata={"source_sha256": source_hash(), "ran_on": ran_on(), **strings})


def check(folder: str = train.WEIGHTS) -> int:
    """0 if both second-model files exist and were written by the current sources, else 1 (reasons printed)."""
    from safetensors import safe_open
    expected, status = source_hash(), 0
    for filename in FILES.values():
        path = os.path.join(folder, filename)
        if not os.path.exists(path):
            print(f"MISSING {filename}")
            status = 1
            continue
        with safe_open(path, framework="pt") as f:
            found = (f.metadata() or {}).get("source_sha256")
        ok = found == expected
        print(f"{'ok' if ok else 'STALE'} {filename} (trained by sources {found}, current {expected})")
        status |= not ok
    return status


def main(argv=None) -> int:
    """Command line: train the stages (resuming) or check the shipped files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the shipped files' source hash, train nothing")
    parser.add_argument("--stage", choices=("all", "vae", "unet"), default="all")
    parser.add_argument("--out", default=train.WEIGHTS, help="folder for the narrow files")
    parser.add_argument("--checkpoints", default=CHECKPOINTS, help="folder of the resumable stage checkpoints")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images (smoke test)")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    torch.set_num_threads(1)
    began, cpu_began = time.time(), time.process_time()
    ensure_comfy()
    vae_config, unet_config_, every = dict(VAE_CONFIG), dict(UNET_CONFIG), CHECKPOINT_EVERY
    if args.quick:
        vae_config.update(QUICK)
        unet_config_.update(QUICK)
        every = QUICK["steps"] // 2
    if args.stage in ("all", "vae"):
        encoder, decoder, loss, timing = train_vae(vae_config, args.checkpoints, every)
        state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                 **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
        save(state, "vae", args.out, {"config": vae_config, "final_mse": loss, "train_seconds": timing,
                                      "initialised_from": {vae_config["init"]: file_sha256(vae_config["init"])}})
        print(f"vae: {timing} s, final mse {loss:.5f}", flush=True)
    if args.stage in ("all", "unet"):
        encoder = widen.taesd_encoder(vae_config["width"])
        # the UNet learns the latents of the shipped (fp16) encoder, which is what users will run
        encoder.load_state_dict(train.split_vae(load_weights("vae", args.out)[0])[0])
        clip = text.load_clip(text.clip_state_dict(CLIP_SEED))
        net, loss, timing = train_unet(unet_config_, encoder, clip, args.checkpoints, every)
        save(net.state_dict(), "eps", args.out,
             {"config": unet_config_, "objective": "eps", "clip_fingerprint": text.fingerprint(clip),
              "final_loss": loss, "train_seconds": timing})
        print(f"unet: {timing} s, final loss {loss:.5f}", flush=True)
    print(f"this run, data and captions included: wall {time.time() - began:.0f} s, "
          f"cpu {time.process_time() - cpu_began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
