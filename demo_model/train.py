"""Train the demo model on CPU, one thread, deterministically: the narrow TAESD VAE, then the narrow UNet (ε or flow).

From the repository root with the host venv:
    python -m demo_model.train                     # VAE, then the ε UNet
    python -m demo_model.train --stage unet --objective flow   # the rectified-flow twin, on the shipped VAE
    python -m demo_model.train --check             # the shipped files come from these sources (no training)
"""
import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time

import torch

from . import data, ensure_comfy, text, widen

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "weights")
SOURCES = ("data.py", "text.py", "train.py", "widen.py")
FILES = {"vae": "taesd_narrow.safetensors", "eps": "unet_eps_narrow.safetensors",
         "flow": "unet_flow_narrow.safetensors"}
REQUIRED = ("vae", "eps")
VAE_CONFIG = dict(seed=0, images=20000, steps=3500, batch=32, lr=2e-3, latent_noise=0.05, scale_penalty=0.1,
                  width=widen.TAESD_WIDTH)
UNET_CONFIG = dict(seed=1, images=30000, steps={"eps": 2000, "flow": 1400}, batch=64, lr=1e-3, warmup=100,
                   ema=0.998, cfg_dropout=0.1, width=widen.UNET_WIDTH, unet=widen.unet_config())
QUICK = dict(images=256, steps=10)  # --quick: a smoke run of the whole pipeline
# SD1.5's discrete schedule as ComfyUI's ModelSamplingDiscrete builds it
LINEAR_START, LINEAR_END, TIMESTEPS = 0.00085, 0.012, 1000


def source_hash() -> str:
    """sha256 over the training sources (name and bytes of each)."""
    digest = hashlib.sha256()
    for name in SOURCES:
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()


def alphas_cumprod() -> torch.Tensor:
    """ᾱ_t of SD1.5 (linear in √β from 0.00085 to 0.012, 1000 steps, float64 as ComfyUI computes it)."""
    betas = torch.linspace(LINEAR_START ** 0.5, LINEAR_END ** 0.5, TIMESTEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def learning_rate(step: int, steps: int, peak: float, warmup: int = 0) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def init_taesd_(net: torch.nn.Module, generator: torch.Generator) -> None:
    """He-normal convolutions (ReLU nets), biases 0; the last conv of each residual branch at 0.2× so depth is stable."""
    for name, param in net.named_parameters():
        if param.ndim > 1:
            fan_in = param[0].numel()
            gain = 0.2 if name.endswith("conv.4.weight") else 1.0
            param.data = torch.randn(param.shape, generator=generator) * (gain * math.sqrt(2.0 / fan_in))
        else:
            param.data.zero_()


def init_unet_(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Every matrix N(0, 1/fan_in) (ComfyUI's zero-initialised output layers at 0.1× instead), norms 1, biases 0."""
    for name, param in net.named_parameters():
        if param.ndim > 1:
            small = any(part in name for part in ("out_layers.3.", "proj_out.", "out.2."))
            scale = (0.1 if small else 1.0) / math.sqrt(param[0].numel())
            param.data = torch.randn(param.shape, generator=generator) * scale
        elif name.endswith("weight"):
            param.data.fill_(1.0)
        else:
            param.data.zero_()


def pixels(images) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [0, 1] (what ComfyUI's TAESD feeds its encoder)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def train_vae(config: dict) -> tuple:
    """(encoder, decoder, final loss): TAESD-layout autoencoder, MSE in [0, 1] pixels, latent kept at unit RMS."""
    generator = torch.Generator().manual_seed(config["seed"])
    encoder, decoder = widen.taesd_encoder(config["width"]), widen.taesd_decoder(config["width"])
    init_taesd_(encoder, generator)
    init_taesd_(decoder, generator)
    images = torch.from_numpy(data.dataset(config["images"], seed=config["seed"])[0])
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=config["lr"])
    recent = []
    for step in range(config["steps"]):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, config["steps"], config["lr"], warmup=50)
        x = pixels(images[torch.randint(0, len(images), (config["batch"],), generator=generator)].numpy())
        z = encoder(x)
        # noise on the latent: the decoder must not depend on detail below the diffusion model's precision
        recon = decoder(z + config["latent_noise"] * torch.randn(z.shape, generator=generator))
        mse = (recon - x).square().mean()
        loss = mse + config["scale_penalty"] * (z.square().mean() - 1.0).square()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        recent = (recent + [mse.item()])[-100:]
        if step % 100 == 0 or step == config["steps"] - 1:
            print(f"vae step {step} mse {mse.item():.5f} latent rms {z.square().mean().sqrt().item():.3f}", flush=True)
    return encoder, decoder, sum(recent) / len(recent)


def load_weights(name: str, folder: str = WEIGHTS) -> tuple:
    """(float32 state dict, metadata) of a shipped narrow file."""
    from safetensors import safe_open
    with safe_open(os.path.join(folder, FILES[name]), framework="pt") as f:
        return {key: f.get_tensor(key).float() for key in f.keys()}, f.metadata()


def split_vae(state_dict: dict) -> tuple:
    """(encoder, decoder) state dicts of a narrow VAE file (keys encoder.* / decoder.*)."""
    return tuple({key[len(part) + 1:]: value for key, value in state_dict.items() if key.startswith(part + ".")}
                 for part in ("encoder", "decoder"))


@torch.no_grad()
def encode_latents(encoder: torch.nn.Module, images) -> torch.Tensor:
    """Model-space latents of uint8 images (the encoder's output: ComfyUI's vae_scale and SD15's 0.18215 cancel)."""
    return torch.cat([encoder(pixels(images[i:i + 256])) for i in range(0, len(images), 256)])


def caption_embeddings(clip) -> tuple:
    """(captions, their CLIPTextEncode embeddings (C, 77, 768), the empty prompt's (77, 768))."""
    captions = sorted({data.caption(label) for label in data.all_labels(False)})
    embeddings = torch.cat([text.encode(clip, caption) for caption in captions])
    return captions, embeddings, text.encode(clip, "")[0]


def noisy(objective: str, x0: torch.Tensor, noise: torch.Tensor, generator: torch.Generator) -> tuple:
    """(model input, timestep, target) as ComfyUI feeds the UNet: EPS on SD1.5's schedule, or CONST (shift 1)."""
    batch = len(x0)
    if objective == "eps":
        t = torch.randint(0, TIMESTEPS, (batch,), generator=generator)
        alpha = alphas_cumprod()[t].float().view(-1, 1, 1, 1)
        # (x0 + σ·n) / √(σ² + 1) with σ² = (1 − ᾱ)/ᾱ; timestep = the index of σ
        return alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise, t.float(), noise
    t = torch.rand(batch, generator=generator)
    # x_t = (1 − t)·x0 + t·n, timestep t·1000; denoised = x_t − t·output, so output = n − x0
    s = t.view(-1, 1, 1, 1)
    return (1 - s) * x0 + s * noise, t * 1000, noise - x0


def train_unet(config: dict, objective: str, encoder: torch.nn.Module, clip) -> tuple:
    """(EMA UNet, final loss): ComfyUI's UNetModel at training width, text-conditioned, 10 % empty-prompt dropout."""
    generator = torch.Generator().manual_seed(config["seed"])
    images, labels = data.dataset(config["images"], seed=config["seed"])
    latents = encode_latents(encoder, images)
    captions, embeddings, empty = caption_embeddings(clip)
    caption_index = torch.tensor([captions.index(data.caption(label)) for label in labels])
    net = widen.unet(config["width"])
    init_unet_(net, generator)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config["lr"], weight_decay=0.0)
    recent = []
    steps = config["steps"][objective]
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, steps, config["lr"], config["warmup"])
        index = torch.randint(0, len(latents), (config["batch"],), generator=generator)
        context = embeddings[caption_index[index]]
        dropped = torch.rand(len(index), generator=generator) < config["cfg_dropout"]
        context[dropped] = empty
        x0 = latents[index]
        model_input, timestep, target = noisy(objective, x0, torch.randn(x0.shape, generator=generator), generator)
        loss = (net(model_input, timestep, context=context) - target).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            for average, param in zip(ema.parameters(), net.parameters()):
                average.lerp_(param, 1 - config["ema"])
        recent = (recent + [loss.item()])[-100:]
        if step % 100 == 0 or step == steps - 1:
            print(f"unet[{objective}] step {step} loss {loss.item():.4f}", flush=True)
    return ema, sum(recent) / len(recent)


def save(state_dict: dict, name: str, folder: str, metadata: dict) -> None:
    """A narrow file, fp16, with string metadata (the source hash always included)."""
    import safetensors.torch
    os.makedirs(folder, exist_ok=True)
    tensors = {key: value.detach().to(torch.float16).contiguous() for key, value in state_dict.items()}
    safetensors.torch.save_file(tensors, os.path.join(folder, FILES[name]),
                                metadata={"source_sha256": source_hash(),
                                          **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}})


def check(folder: str = WEIGHTS) -> int:
    """0 if every shipped file was written by the current sources, else 1 (reasons printed)."""
    from safetensors import safe_open
    expected, status = source_hash(), 0
    for name, filename in FILES.items():
        path = os.path.join(folder, filename)
        if not os.path.exists(path):
            if name in REQUIRED:
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
    """Command line: train stages or check the shipped files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the shipped files' source hash, train nothing")
    parser.add_argument("--stage", choices=("all", "vae", "unet"), default="all")
    parser.add_argument("--objective", choices=("eps", "flow"), default="eps")
    parser.add_argument("--out", default=WEIGHTS, help="folder for the narrow files")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images (smoke test)")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    torch.set_num_threads(1)
    ensure_comfy()
    vae_config, unet_config = dict(VAE_CONFIG), dict(UNET_CONFIG)
    if args.quick:
        vae_config.update(QUICK)
        unet_config.update(images=QUICK["images"], steps={"eps": QUICK["steps"], "flow": QUICK["steps"]})
    if args.stage in ("all", "vae"):
        start = time.time()
        encoder, decoder, loss = train_vae(vae_config)
        seconds = time.time() - start
        state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                 **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
        save(state, "vae", args.out, {"config": vae_config, "final_mse": loss, "train_seconds": round(seconds, 1)})
        print(f"vae: {seconds:.0f} s, final mse {loss:.5f}", flush=True)
    if args.stage in ("all", "unet"):
        encoder = widen.taesd_encoder(vae_config["width"])
        # the UNet learns the latents of the shipped (fp16) encoder, which is what users will run
        encoder.load_state_dict(split_vae(load_weights("vae", args.out)[0])[0])
        clip = text.load_clip()
        start = time.time()
        net, loss = train_unet(unet_config, args.objective, encoder, clip)
        seconds = time.time() - start
        save(net.state_dict(), args.objective, args.out,
             {"config": unet_config, "objective": args.objective, "clip_fingerprint": text.fingerprint(clip),
              "final_loss": loss, "train_seconds": round(seconds, 1)})
        print(f"unet[{args.objective}]: {seconds:.0f} s, final loss {loss:.5f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
