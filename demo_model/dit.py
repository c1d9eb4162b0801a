"""The DiT twin: SD3's MMDiT (rectified flow) on the 128×128 scenes world (scenes.py), with a 16-channel TAESD and
the word-separating CLIP-L of words.py. CPU, one thread, deterministic; each stage checkpoints and resumes
(second.run_steps).

From the repository root with the host venv:
    python -m demo_model.dit                       # the 16-channel VAE, then the MMDiT (resumes from bench/out/dit/)
    python -m demo_model.dit --stage dit           # the MMDiT only, on the shipped 16-channel VAE
    python -m demo_model.dit --check               # the shipped twin files come from these sources

The MMDiT is trained at the shape ComfyUI detects (depth 2: hidden 128, 2 heads of 64, patch 2) except the text
inputs, which read only the CLIP-L part: the context embedder's 768 of SD3's 4096 columns, the pooled embedder's 768
of 2048; twin.write_dit_models adds the zero columns. The learning rate is constant after warm-up, so a run cut off
at step N and shipped (--steps N) is the same as a run configured for N steps.
"""
import argparse
import copy
import hashlib
import inspect
import json
import math
import os
import sys
import time

import torch

from . import ensure_comfy, scenes, second, train, widen, words

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINTS = os.path.join(os.path.dirname(HERE), "bench", "out", "dit")  # ignored by git
FILES = {"vae": "dit_taesd16_narrow.safetensors", "dit": "dit_mmdit_narrow.safetensors"}
SOURCES = ("dit.py", "words.py", "data.py", "scenes.py")
# What the twin takes from the demo's other modules: hashed by their source text (second.py's rule), so retraining
# the demo does not make the twin stale unless it changes what trained it.
SHARED = (train.pixels, train.split_vae, train.load_weights, train.encode_latents, train.init_taesd_,
          widen.taesd_encoder, widen.taesd_decoder, second.Checkpoint, second.run_steps, second.ran_on,
          second.file_sha256)
LATENT_CHANNELS = 16  # SD3's latent format
DEPTH = 2  # MMDiT detection: hidden size = 64·depth, heads = depth
PATCH = 2  # ComfyUI's MMDiT crops its position embedding for patch 2 only ((h + 1) // p)
POS_EMBED_GRID = 8  # 8×8 patches: a 128×128 image (16×16 latent, patch 2); smaller ones use the centre
CLIP_WIDTH = words.WIDTH
VAE_CONFIG = dict(seed=30, images=6000, steps=200, batch=16, lr=5e-4, latent_noise=0.05, scale_penalty=0.1,
                  width=widen.TAESD_WIDTH, init=train.FILES["vae"], symmetry_noise=0.02)
DIT_CONFIG = dict(seed=31, images=16000, steps=6000, batch=64, lr=6e-4, warmup=200, ema=0.999, cfg_dropout=0.1,
                  clip_grad=1.0, depth=DEPTH, patch=PATCH)
CHECKPOINT_EVERY = 100
QUICK = dict(images=128, steps=6)  # --quick: a smoke run of the whole pipeline (checkpoints every 3 steps)


def source_hash() -> str:
    """sha256 over the twin's sources (name and bytes) and the shared functions' source text."""
    digest = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    for function in SHARED:
        digest.update(f"{function.__module__}.{function.__qualname__}".encode() + b"\0"
                      + inspect.getsource(function).encode() + b"\0")
    return digest.hexdigest()


class Checkpoint(second.Checkpoint):
    """second.Checkpoint keyed by the twin's sources, and by the config without its step count (constant learning
    rate: a longer run continues a shorter one)."""

    def __init__(self, folder: str, stage: str, config: dict):
        self.path = os.path.join(folder, f"{stage}.pt")
        key = {k: v for k, v in config.items() if k != "steps"}
        self.key = json.dumps({"config": key, "sources": source_hash()}, sort_keys=True)


def mmdit_config(context_in: int = CLIP_WIDTH, pooled_in: int = CLIP_WIDTH) -> dict:
    """MMDiT arguments as ComfyUI's detection derives them from the twin's state dict (text widths: see module doc)."""
    hidden = 64 * DEPTH
    return dict(patch_size=PATCH, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, depth=DEPTH,
                adm_in_channels=pooled_in, pos_embed_max_size=POS_EMBED_GRID, num_patches=POS_EMBED_GRID ** 2,
                context_embedder_config={"target": "torch.nn.Linear",
                                         "params": {"in_features": context_in, "out_features": hidden}},
                pos_embed_scaling_factor=None, x_block_self_attn_layers=[], input_size=None)


def mmdit(context_in: int = CLIP_WIDTH, pooled_in: int = CLIP_WIDTH, device=None):
    """ComfyUI's MMDiT in the twin's layout (weights uninitialised: ComfyUI's ops skip initialisation)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    return MMDiT(**mmdit_config(context_in, pooled_in), device=device, operations=comfy.ops.disable_weight_init)


def init_mmdit_(net: torch.nn.Module, generator: torch.Generator) -> None:
    """DiT's adaLN-Zero start (Peebles & Xie 2023): matrices N(0, 1/fan_in), biases 0, every adaLN modulation and the
    final projection 0 (each block starts as the identity); the position table fixed 2-D sin-cos."""
    from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed_torch
    for name, param in net.named_parameters():
        zero = "adaLN_modulation" in name or name.startswith("final_layer.linear")
        if param.ndim > 1 and not zero:
            param.data = torch.randn(param.shape, generator=generator) / math.sqrt(param[0].numel())
        else:
            param.data.zero_()
    net.pos_embed.copy_(get_2d_sincos_pos_embed_torch(net.hidden_size, POS_EMBED_GRID, POS_EMBED_GRID)[None])


def expand_latent(encoder: dict, decoder: dict, generator: torch.Generator, noise: float) -> tuple:
    """The demo's 4-channel TAESD with 16 latent channels: each latent channel copied 4× (the decoder's input ÷4, the
    same function), the copies' encoder weights perturbed by `noise`·std so training can tell them apart."""
    k = LATENT_CHANNELS // widen.LATENT_CHANNELS
    encoder, decoder = dict(encoder), dict(decoder)
    last = f"{len(widen.taesd_encoder()) - 1}"
    for key in (f"{last}.weight", f"{last}.bias"):
        wide = encoder[key].repeat_interleave(k, dim=0)
        encoder[key] = wide + noise * wide.std() * torch.randn(wide.shape, generator=generator)
    decoder["1.weight"] = decoder["1.weight"].repeat_interleave(k, dim=1) / k
    return encoder, decoder


def taesd16(width: int = widen.TAESD_WIDTH) -> tuple:
    """(encoder, decoder): comfy.taesd's layout at `width` channels and 16 latent channels."""
    from comfy.taesd.taesd import conv
    encoder, decoder = widen.taesd_encoder(width), widen.taesd_decoder(width)
    encoder[-1] = conv(width, LATENT_CHANNELS)
    decoder[1] = conv(LATENT_CHANNELS, width)
    return encoder, decoder


def train_vae(config: dict, checkpoints: str, every: int) -> tuple:
    """(encoder, decoder, final MSE, timing): the demo TAESD's objective (train.train_vae's) on the scenes world, from
    the shipped 4-channel demo TAESD expanded to 16 latent channels (expand_latent)."""
    generator = torch.Generator().manual_seed(config["seed"])
    encoder, decoder = taesd16(config["width"])
    start = expand_latent(*train.split_vae(train.load_weights("vae")[0]), generator, config["symmetry_noise"])
    for net, state in zip((encoder, decoder), start):
        net.load_state_dict(state)
    images = torch.from_numpy(scenes.dataset(config["images"], seed=config["seed"])[0])
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=config["lr"])

    def step_fn(step: int) -> float:
        for group in optimiser.param_groups:
            group["lr"] = config["lr"] * min(1.0, (step + 1) / 50)
        x = train.pixels(images[torch.randint(0, len(images), (config["batch"],), generator=generator)].numpy())
        z = encoder(x)
        recon = decoder(z + config["latent_noise"] * torch.randn(z.shape, generator=generator))
        mse = (recon - x).square().mean()
        loss = mse + config["scale_penalty"] * (z.square().mean() - 1.0).square()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return mse.item()

    key = {**config, "init_sha256": second.file_sha256(config["init"])}
    loss, timing = second.run_steps("vae", Checkpoint(checkpoints, "vae", key),
                                    {"encoder": encoder, "decoder": decoder}, optimiser, generator, config["steps"],
                                    every, step_fn)
    return encoder, decoder, loss, timing


def caption_embeddings(clip, captions: list, checkpoints: str) -> tuple:
    """(CLIP-L contexts (C, 77, 768) and pooled (C, 768) of `captions`, the empty prompt's context and pooled); cached
    with the checkpoints."""
    cache = Checkpoint(checkpoints, "captions", {"captions": captions, "clip": words.fingerprint(clip)})
    state = cache.load()
    if state is None:
        encoded = [words.encode(clip, caption) for caption in [*captions, ""]]
        state = {"context": torch.cat([c[..., :CLIP_WIDTH] for c, _ in encoded]),
                 "pooled": torch.cat([p[..., :CLIP_WIDTH] for _, p in encoded])}
        cache.save(state)
    return state["context"][:-1], state["pooled"][:-1], state["context"][-1], state["pooled"][-1]


def flow_sample(x0: torch.Tensor, generator: torch.Generator) -> tuple:
    """(model input, timestep, target) as ComfyUI's SD3 (CONST) feeds the MMDiT: x_t = (1 − t)·x0 + t·n with t
    logit-normal (Esser et al. 2024, SD3 §3.1), timestep 1000·t, target n − x0 (denoised = x_t − t·output)."""
    t = torch.sigmoid(torch.randn(len(x0), generator=generator))
    noise = torch.randn(x0.shape, generator=generator)
    s = t.view(-1, 1, 1, 1)
    return (1 - s) * x0 + s * noise, t * 1000, noise - x0


def train_dit(config: dict, encoder: torch.nn.Module, clip, checkpoints: str, every: int) -> tuple:
    """(EMA MMDiT, final loss, timing): rectified flow on the 16-channel latents, text-conditioned by the CLIP-L
    context and pooled output, `cfg_dropout` of captions replaced by the empty prompt's."""
    generator = torch.Generator().manual_seed(config["seed"])
    images, drawn = scenes.dataset(config["images"], seed=config["seed"])
    latents = train.encode_latents(encoder, images)
    del images
    captions = sorted({scene.caption for scene in drawn})
    contexts, pooled, empty_context, empty_pooled = caption_embeddings(clip, captions, checkpoints)
    caption_index = torch.tensor([captions.index(scene.caption) for scene in drawn])
    net = mmdit()
    init_mmdit_(net, generator)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config["lr"], weight_decay=0.0)

    def step_fn(step: int) -> float:
        for group in optimiser.param_groups:
            group["lr"] = config["lr"] * min(1.0, (step + 1) / config["warmup"])
        index = torch.randint(0, len(latents), (config["batch"],), generator=generator)
        context, y = contexts[caption_index[index]], pooled[caption_index[index]]
        dropped = torch.rand(len(index), generator=generator) < config["cfg_dropout"]
        context[dropped], y[dropped] = empty_context, empty_pooled
        model_input, timestep, target = flow_sample(latents[index], generator)
        loss = (net(model_input, timestep, y=y, context=context) - target).square().mean()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config["clip_grad"])
        optimiser.step()
        with torch.no_grad():
            for average, param in zip(ema.parameters(), net.parameters()):
                average.lerp_(param, 1 - config["ema"])
        return loss.item()

    loss, timing = second.run_steps("dit", Checkpoint(checkpoints, "dit", config), {"net": net, "ema": ema},
                                    optimiser, generator, config["steps"], every, step_fn)
    return ema, loss, timing


def load_weights(name: str, folder: str = train.WEIGHTS) -> tuple:
    """(float32 state dict, metadata) of a shipped narrow twin file ("vae" or "dit")."""
    from safetensors import safe_open
    with safe_open(os.path.join(folder, FILES[name]), framework="pt") as f:
        return {key: f.get_tensor(key).float() for key in f.keys()}, f.metadata()


def save(state_dict: dict, name: str, folder: str, metadata: dict) -> None:
    """A narrow twin file, fp16 (the fixed position table included), with string metadata and the source hash."""
    import safetensors.torch
    os.makedirs(folder, exist_ok=True)
    tensors = {key: value.detach().to(torch.float16).contiguous() for key, value in state_dict.items()}
    strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    safetensors.torch.save_file(tensors, os.path.join(folder, FILES[name]),
                                metadata={"source_sha256": source_hash(), "ran_on": second.ran_on(), **strings})


def check(folder: str = train.WEIGHTS) -> int:
    """0 if both twin files exist and were written by the current sources, else 1 (reasons printed)."""
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
    parser.add_argument("--stage", choices=("all", "vae", "dit"), default="all")
    parser.add_argument("--steps", type=int, default=DIT_CONFIG["steps"], help="MMDiT steps (a cut-off run: fewer)")
    parser.add_argument("--out", default=train.WEIGHTS, help="folder for the narrow files")
    parser.add_argument("--checkpoints", default=CHECKPOINTS, help="folder of the resumable stage checkpoints")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images (smoke test)")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    torch.set_num_threads(1)
    began, cpu_began = time.time(), time.process_time()
    ensure_comfy()
    vae_config, dit_config, every = dict(VAE_CONFIG), dict(DIT_CONFIG, steps=args.steps), CHECKPOINT_EVERY
    if args.quick:
        vae_config.update(QUICK)
        dit_config.update(QUICK, warmup=2)
        every = QUICK["steps"] // 2
    if args.stage in ("all", "vae"):
        encoder, decoder, loss, timing = train_vae(vae_config, args.checkpoints, every)
        state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                 **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
        save(state, "vae", args.out, {"config": vae_config, "final_mse": loss, "train_seconds": timing,
                                      "initialised_from": {vae_config["init"]: second.file_sha256(vae_config["init"])}})
        print(f"vae: {timing} s, final mse {loss:.5f}", flush=True)
    if args.stage in ("all", "dit"):
        encoder = taesd16(vae_config["width"])[0]
        # the MMDiT learns the latents of the shipped (fp16) encoder, which is what users will run
        encoder.load_state_dict(train.split_vae(load_weights("vae", args.out)[0])[0])
        clip = words.load_clip()
        net, loss, timing = train_dit(dit_config, encoder, clip, args.checkpoints, every)
        save(net.state_dict(), "dit", args.out,
             {"config": dit_config, "mmdit": mmdit_config(), "objective": "flow",
              "clip_fingerprint": words.fingerprint(clip), "final_loss": loss, "train_seconds": timing})
        print(f"dit: {timing} s, final loss {loss:.5f}", flush=True)
    print(f"this run, data and captions included: wall {time.time() - began:.0f} s, "
          f"cpu {time.process_time() - cpu_began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
