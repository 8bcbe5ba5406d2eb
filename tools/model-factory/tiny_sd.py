"""Builds models/tiny-sd: renders the data, trains the tokenizer, the autoencoder and the
text-conditioned UNet, exports the diffusers/optimum ONNX layout, and evaluates it.

    /usr/bin/python3 tools/model-factory/tiny_sd.py [--out models/tiny-sd] [--unet-steps N]

Seeded and deterministic on one machine (torch CPU kernels, one thread count).
"""
import os

# OpenBLAS's own threads fight torch's OpenMP threads on two cores (measured: 1.7x slower).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import clip_bpe  # noqa: E402
import diffusion_train  # noqa: E402
import export_util  # noqa: E402
import shapes  # noqa: E402
from tiny_sd_model import TextEncoder, TextEncoderExport, UNet, VaeDecoder, VaeEncoder, VaeEncoderExport  # noqa: E402

MAX_LENGTH = 32
TEXT_DIM = 128
UNET_CHANNELS = (64, 128)
VAE_CHANNELS = (16, 32, 64, 64)
GROUPS = 8
BETA_START, BETA_END, TRAIN_STEPS = 0.00085, 0.012, 1000


def alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, TRAIN_STEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def log(msg: str) -> None:
    print(f"[tiny-sd {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_vae(images: torch.Tensor, steps: int, seed: int):
    torch.manual_seed(seed)
    enc, dec = VaeEncoder(VAE_CHANNELS, GROUPS), VaeDecoder(VAE_CHANNELS, GROUPS)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, images.shape[0], (16,), generator=g)
        x = images[idx]
        mean, logvar = enc(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
        rec = dec(z)
        kl = 0.5 * torch.mean(mean**2 + logvar.exp() - 1 - logvar)
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-5 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    return enc.eval(), dec.eval()


@torch.no_grad()
def encode_all(enc: VaeEncoder, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([enc(images[i : i + 256])[0] for i in range(0, images.shape[0], 256)])


def train_unet(latents: torch.Tensor, ids: torch.Tensor, empty_ids: torch.Tensor, vocab: int, steps: int, seed: int):
    torch.manual_seed(seed)
    te = TextEncoder(vocab, TEXT_DIM, 3, 4, MAX_LENGTH)
    unet = UNet(UNET_CHANNELS, TEXT_DIM, 4, GROUPS)
    ema_te, ema_unet = TextEncoder(vocab, TEXT_DIM, 3, 4, MAX_LENGTH), UNet(UNET_CHANNELS, TEXT_DIM, 4, GROUPS)
    ema_te.load_state_dict(te.state_dict())
    ema_unet.load_state_dict(unet.state_dict())
    params = list(te.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=steps, pct_start=0.05, final_div_factor=20)
    ac = alphas_cumprod()
    g = torch.Generator().manual_seed(seed)
    batch = 32
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, latents.shape[0], (batch,), generator=g)
        x0 = latents[idx]
        cond = ids[idx].clone()
        drop = torch.rand(batch, generator=g) < 0.1  # classifier-free guidance dropout
        cond[drop] = empty_ids
        t, noise, xt = diffusion_train.noised(x0, ac, TRAIN_STEPS, g)
        hidden, _ = te(cond)
        pred = unet(xt, t.float(), hidden)
        loss = F.mse_loss(pred, noise)
        diffusion_train.step(loss, opt, sched, params, ((ema_te, te), (ema_unet, unet)), step)
        if step % 250 == 0 or step == steps - 1:
            rate = (step + 1) / (time.time() - t0)
            log(f"unet step {step}/{steps} loss {loss.item():.4f} ({rate:.2f} steps/s)")
    return ema_te.eval(), ema_unet.eval()


@torch.no_grad()
def sample_ddim(te, unet, dec, tok: clip_bpe.ClipBpe, prompts: list[str], steps: int, guidance: float, seed: int, scale: float):
    """DDIM (eta 0, leading spacing, steps_offset 1, set_alpha_to_one False), as SD 1.5 uses it."""
    ac = alphas_cumprod()
    cond = torch.tensor([tok.encode(p) for p in prompts], dtype=torch.int32)
    uncond = torch.tensor([tok.encode("")] * len(prompts), dtype=torch.int32)
    ctx = te(torch.cat([uncond, cond]))[0]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((len(prompts), 4, 8, 8), generator=g)
    ratio = TRAIN_STEPS // steps
    timesteps = [i * ratio + 1 for i in reversed(range(steps))]
    for t in timesteps:
        tt = torch.full((2 * len(prompts),), float(t))
        eps_u, eps_c = unet(torch.cat([x, x]), tt, ctx).chunk(2)
        eps = eps_u + guidance * (eps_c - eps_u)
        a = ac[t]
        prev = t - ratio
        a_prev = ac[prev] if prev >= 0 else ac[0]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    img = dec(x / scale)
    return ((img / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def evaluate(te, unet, dec, tok, heldout, scale: float, out_dir: str, model_dir: str) -> dict:
    prompts = [c for _, c in heldout]
    imgs = np.concatenate([sample_ddim(te, unet, dec, tok, prompts[i : i + 50], 20, 7.5, 1234 + i, scale) for i in range(0, len(prompts), 50)])
    # A contact sheet of the first 16 held-out prompts, for people to look at.
    from PIL import Image

    sheet = Image.new("RGB", (64 * 8, 64 * 2))
    for i in range(16):
        sheet.paste(Image.fromarray(imgs[i]), ((i % 8) * 64, (i // 8) * 64))
    sheet.save(os.path.join(out_dir, "samples.png"))
    sheet.save(os.path.join(model_dir, "samples.png"))
    return shapes.grade(imgs, heldout)


def main() -> None:
    args = export_util.diffusion_args("tiny-sd", 6000, "reuse the checkpoints in --work")
    started = time.time()

    log("rendering data")
    train, heldout = shapes.build_split(args.images, 100, args.seed)
    merges = clip_bpe.train([c for _, c in train], num_merges=400)
    tok = clip_bpe.ClipBpe(merges, MAX_LENGTH)
    clip_bpe.save(merges, os.path.join(args.out, "tokenizer"), MAX_LENGTH)
    vocab = len(tok.vocab)
    log(f"{len(train)} images, {len(merges)} merges, vocab {vocab}")
    images = torch.from_numpy(np.stack([im for im, _ in train])).permute(0, 3, 1, 2).float() / 127.5 - 1
    ids = torch.tensor([tok.encode(c) for _, c in train], dtype=torch.int32)
    empty = torch.tensor(tok.encode(""), dtype=torch.int32)

    ckpt = os.path.join(args.work, "weights.pt")
    if args.skip_train:
        state = torch.load(ckpt)
        enc, dec = VaeEncoder(VAE_CHANNELS, GROUPS), VaeDecoder(VAE_CHANNELS, GROUPS)
        te, unet = TextEncoder(vocab, TEXT_DIM, 3, 4, MAX_LENGTH), UNet(UNET_CHANNELS, TEXT_DIM, 4, GROUPS)
        for m, k in ((enc, "enc"), (dec, "dec"), (te, "te"), (unet, "unet")):
            m.load_state_dict(state[k])
            m.eval()
        scale = state["scale"]
    else:
        enc, dec = train_vae(images, args.vae_steps, args.seed)
        latents = encode_all(enc, images)
        scale = round(float(1.0 / latents.std()), 5)
        log(f"latent std {latents.std():.4f}, scaling_factor {scale:.5f}")
        te, unet = train_unet(latents * scale, ids, empty, vocab, args.unet_steps, args.seed)
        torch.save({"enc": enc.state_dict(), "dec": dec.state_dict(), "te": te.state_dict(), "unet": unet.state_dict(), "scale": scale}, ckpt)
    train_seconds = time.time() - started

    log("exporting")
    graphs = export_graphs(args.out, enc, dec, te, unet, vocab)
    write_configs(args.out, vocab, scale)
    parity = export_util.check_parity(graphs, args.work)
    log("evaluating prompt adherence on 100 held-out captions (DDIM, 20 steps, guidance 7.5)")
    quality = evaluate(te, unet, dec, tok, heldout, scale, args.work, args.out)
    with open(os.path.join(args.work, "heldout.json"), "w") as f:
        json.dump([c for _, c in heldout], f, indent=1)
    report = {
        "images": len(train), "vae_steps": args.vae_steps, "unet_steps": args.unet_steps,
        "train_seconds": round(train_seconds), "total_seconds": round(time.time() - started),
        "parity": parity, "quality": quality,
        "params": {n: sum(p.numel() for p in m.parameters()) for n, m in (("text_encoder", te), ("unet", unet), ("vae_encoder", enc), ("vae_decoder", dec))},
    }
    with open(os.path.join(args.work, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    export_util.print_table("tiny-sd", report)


def export_graphs(out: str, enc, dec, te, unet, vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, vocab - 2, (2, MAX_LENGTH), generator=g, dtype=torch.int64).to(torch.int32)
    ids[:, 0] = vocab - 2
    ids[:, 10:] = vocab - 1
    hidden = torch.randn((2, MAX_LENGTH, TEXT_DIM), generator=g)
    latents = torch.randn((2, 4, 8, 8), generator=g)
    image = torch.rand((2, 3, 64, 64), generator=g) * 2 - 1
    specs = [
        dict(name="text_encoder", module=TextEncoderExport(te), inputs={"input_ids": ids},
             outputs=["last_hidden_state", "pooler_output"],
             axes={"input_ids": {0: "batch", 1: "sequence"}, "last_hidden_state": {0: "batch", 1: "sequence"}, "pooler_output": {0: "batch"}}),
        dict(name="unet", module=unet, inputs={"sample": latents, "timestep": torch.tensor([999.0, 1.0]), "encoder_hidden_states": hidden},
             outputs=["out_sample"],
             axes={"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                   "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}),
        dict(name="vae_encoder", module=VaeEncoderExport(enc), inputs={"sample": image}, outputs=["latent_sample"],
             axes={"sample": {0: "batch", 2: "height", 3: "width"}, "latent_sample": {0: "batch", 2: "height", 3: "width"}}),
        dict(name="vae_decoder", module=dec, inputs={"latent_sample": latents}, outputs=["sample"],
             axes={"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "height", 3: "width"}}),
    ]
    for s in specs:
        s["path"] = os.path.join(out, s["name"], "model.onnx")
        export_util.export(s["module"], s["inputs"], s["outputs"], s["axes"], s["path"])
    return specs


def write_configs(out: str, vocab: int, scale: float) -> None:
    def dump(rel: str, obj: dict) -> None:
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        with open(os.path.join(out, rel), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    dump("model_index.json", {
        "_class_name": "OnnxStableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"], "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
    })
    dump("scheduler/scheduler_config.json", {
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.30.0",
        "beta_start": BETA_START, "beta_end": BETA_END, "beta_schedule": "scaled_linear",
        "num_train_timesteps": TRAIN_STEPS, "prediction_type": "epsilon", "set_alpha_to_one": False,
        "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "clip_sample": False,
        "trained_betas": None,
    })
    dump("text_encoder/config.json", {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": TEXT_DIM,
        "intermediate_size": 4 * TEXT_DIM, "num_attention_heads": 4, "num_hidden_layers": 3,
        "max_position_embeddings": MAX_LENGTH, "vocab_size": vocab, "hidden_act": "gelu",
        "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1,
    })
    dump("unet/config.json", {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.0", "sample_size": 8,
        "in_channels": 4, "out_channels": 4, "block_out_channels": list(UNET_CHANNELS), "layers_per_block": 1,
        "cross_attention_dim": TEXT_DIM, "attention_head_dim": 4, "norm_num_groups": GROUPS,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "flip_sin_to_cos": True, "freq_shift": 0,
        "act_fn": "silu", "time_cond_proj_dim": None,
    })
    vae = {
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0", "sample_size": 64, "in_channels": 3,
        "out_channels": 3, "latent_channels": 4, "block_out_channels": list(VAE_CHANNELS), "layers_per_block": 1,
        "norm_num_groups": GROUPS, "act_fn": "silu", "scaling_factor": round(scale, 5),
        "down_block_types": ["DownEncoderBlock2D"] * len(VAE_CHANNELS), "up_block_types": ["UpDecoderBlock2D"] * len(VAE_CHANNELS),
    }
    dump("vae_encoder/config.json", vae)
    dump("vae_decoder/config.json", vae)


if __name__ == "__main__":
    main()
