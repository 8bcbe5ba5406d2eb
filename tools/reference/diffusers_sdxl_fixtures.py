"""Reference images for tiny-sdxl, made by diffusers' own SDXL pipelines.

Runs StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline and
StableDiffusionXLInpaintPipeline on tiny-sdxl's PyTorch weights (the diffusers folder that
tools/model-factory/tiny_sdxl.py writes beside its ONNX export), for 3 schedulers × 2 seeds ×
(text-to-image, image-to-image at strength 0.3 and 0.7, inpainting), and writes each case's
request (Easel's field names) and diffusers' PNG. Then the same inpainting through an inpainting
UNet (9 input channels: latents, mask, masked image's latents): a small seeded random one with
tiny-sdxl's conditioning, exported to test/fixtures/models/tiny-sdxl-inpaint-unet (its weights
are noise, so its images are too; what is checked is that Easel feeds it as diffusers does). test/e2e/sdxl-fidelity.test.ts sends the same
requests to Easel and compares pixels. The noise is the pipelines' own: a CPU torch.Generator
seeded with the request's seed, which Easel reproduces draw for draw.

    pip install torch transformers pillow numpy          # a venv; torch 2.13 CPU here
    PYTHONPATH=<diffusers checkout>/src <venv>/bin/python tools/reference/diffusers_sdxl_fixtures.py \\
        [--pipeline tools/model-factory/.work/tiny-sdxl/diffusers] [--out test/fixtures/sdxl]

diffusers is read from a checkout (the committed fixtures: huggingface/diffusers
58eb52c0803ea9af3abec60841c2a093bdf1f951); nothing of it is committed, only these outputs.
"""
import argparse
import io
import json
import os
import random
import sys

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "model-factory"))
import export_util  # noqa: E402
import shapes  # noqa: E402
import tiny_sdxl  # noqa: E402

from diffusers import (  # noqa: E402
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)

SCHEDULERS = {"euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler, "dpmpp_2m": DPMSolverMultistepScheduler}
STEPS = 8

# Two request shapes: the plain one (no negative prompt: force_zeros_for_empty_prompt's zeros), and
# one with every SDXL field set (second prompt, negative prompt, micro-conditioning, guidance_rescale).
SEEDS = {
    11: {"prompt": "a red circle on a blue background", "guidance_scale": 5.0},
    2024: {
        "prompt": "a yellow square on a black background", "prompt_2": "a large yellow square",
        "negative_prompt": "a green triangle", "guidance_scale": 6.0, "guidance_rescale": 0.5,
        "original_size": [96, 80], "crops_coords_top_left": [8, 16], "target_size": [64, 64],
        "negative_original_size": [64, 64], "negative_crops_coords_top_left": [4, 4], "negative_target_size": [64, 64],
    },
}
MODES = {"t2i": {}, "i2i-0.3": {"strength": 0.3}, "i2i-0.7": {"strength": 0.7}, "inpaint": {"strength": 1.0}}
PROMPT_FOR_IMAGE = "a green cross on a white background"


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def inputs() -> tuple[Image.Image, Image.Image]:
    """An init image (a rendered scene) and a mask (white: repaint the right half's middle)."""
    attrs = {"fg": "purple", "bg": "yellow", "shape": "triangle", "size": "large", "position": "center"}
    init = shapes.render(attrs, random.Random(5))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle([32, 8, 63, 55], fill=255)
    return init, mask


def inpainting_unet(base: UNet2DConditionModel, out_dir: str) -> UNet2DConditionModel:
    """A small seeded random UNet with 9 input channels and tiny-sdxl's conditioning widths, exported as optimum would."""
    torch.manual_seed(9)
    c = base.config
    unet = UNet2DConditionModel(
        sample_size=c.sample_size, in_channels=9, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=c.cross_attention_dim, attention_head_dim=(8, 8), norm_num_groups=8, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=c.addition_time_embed_dim,
        projection_class_embeddings_input_dim=c.projection_class_embeddings_input_dim,
    ).eval()
    g = torch.Generator().manual_seed(3)
    inputs = {"sample": torch.randn((2, 9, 8, 8), generator=g), "timestep": torch.tensor([999.0, 1.0]),
              "encoder_hidden_states": torch.randn((2, 32, c.cross_attention_dim), generator=g),
              "text_embeds": torch.randn((2, c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim), generator=g),
              "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64], [64.0, 64, 0, 0, 64, 64]])}
    axes = {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "text_embeds": {0: "batch"}, "time_ids": {0: "batch"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}
    export_util.export(tiny_sdxl.UNetExport(unet), inputs, ["out_sample"], axes, os.path.join(out_dir, "unet", "model.onnx"))
    unet.save_config(os.path.join(out_dir, "unet"))
    return unet


def as_pair(v):
    return tuple(v) if v is not None else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="tools/model-factory/.work/tiny-sdxl/diffusers")
    ap.add_argument("--out", default="test/fixtures/sdxl")
    ap.add_argument("--inpaint-unet", default="test/fixtures/models/tiny-sdxl-inpaint-unet")
    ap.add_argument("--diffusers-commit", default="58eb52c0803ea9af3abec60841c2a093bdf1f951", help="the checkout's commit, recorded in cases.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    base = StableDiffusionXLPipeline.from_pretrained(args.pipeline)
    base.set_progress_bar_config(disable=True)
    pipes = {
        "t2i": base,
        "i2i": StableDiffusionXLImg2ImgPipeline(**base.components, requires_aesthetics_score=False, force_zeros_for_empty_prompt=True),
        "inpaint": StableDiffusionXLInpaintPipeline(**base.components, requires_aesthetics_score=False, force_zeros_for_empty_prompt=True),
    }
    for p in pipes.values():
        p.set_progress_bar_config(disable=True)
    init, mask = inputs()
    with open(os.path.join(args.out, "init.png"), "wb") as f:
        f.write(png(init))
    with open(os.path.join(args.out, "mask.png"), "wb") as f:
        f.write(png(mask))

    cases = []
    with_inpaint_unet = StableDiffusionXLInpaintPipeline(
        **{**base.components, "unet": inpainting_unet(base.unet, args.inpaint_unet)}, requires_aesthetics_score=False, force_zeros_for_empty_prompt=True)
    with_inpaint_unet.set_progress_bar_config(disable=True)
    for sched_name, sched_cls in SCHEDULERS.items():
        for seed, fields in SEEDS.items():
            for mode, extra in MODES.items():
                name = f"{sched_name}-{seed}-{mode}"
                request = {**fields, **extra, "num_inference_steps": STEPS, "seed": seed, "scheduler": sched_name, "width": 64, "height": 64}
                if mode != "t2i" and "negative_crops_coords_top_left" in fields:
                    # diffusers' img2img and inpaint pipelines condition the negative pass on
                    # crops_coords_top_left, whatever negative_crops_coords_top_left says (their
                    # _get_add_time_ids); Easel takes the field as given, so the request says the same.
                    request["negative_crops_coords_top_left"] = fields["crops_coords_top_left"]
                kw = dict(
                    prompt=fields["prompt"], prompt_2=fields.get("prompt_2"), negative_prompt=fields.get("negative_prompt"),
                    guidance_scale=fields["guidance_scale"], guidance_rescale=fields.get("guidance_rescale", 0.0),
                    original_size=as_pair(fields.get("original_size")), crops_coords_top_left=as_pair(fields.get("crops_coords_top_left")) or (0, 0),
                    target_size=as_pair(fields.get("target_size")), negative_original_size=as_pair(fields.get("negative_original_size")),
                    negative_crops_coords_top_left=as_pair(fields.get("negative_crops_coords_top_left")) or (0, 0),
                    negative_target_size=as_pair(fields.get("negative_target_size")),
                    num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed), output_type="pil",
                )
                pipe = pipes["t2i" if mode == "t2i" else "inpaint" if mode == "inpaint" else "i2i"]
                if mode == "inpaint" and seed == 11:
                    # The inpainting UNet, at full strength and at 0.6 (its draws differ: the image is sampled only below 1).
                    for strength in (1.0, 0.6):
                        vname = f"inpaint-unet-{sched_name}-{strength}"
                        with_inpaint_unet.scheduler = sched_cls.from_config(base.scheduler.config)
                        vkw = {**kw, "generator": torch.Generator().manual_seed(seed)}
                        image = with_inpaint_unet(image=init, mask_image=mask, strength=strength, height=64, width=64, **vkw).images[0]
                        with open(os.path.join(args.out, f"{vname}.png"), "wb") as f:
                            f.write(png(image))
                        cases.append({"name": vname, "unet": "inpaint", "request": {**request, "strength": strength, "image": "init.png", "mask_image": "mask.png"}})
                        print(vname, flush=True)
                pipe.scheduler = sched_cls.from_config(base.scheduler.config)
                if mode == "t2i":
                    image = pipe(height=64, width=64, **kw).images[0]
                elif mode == "inpaint":
                    image = pipe(image=init, mask_image=mask, strength=extra["strength"], height=64, width=64, **kw).images[0]
                    request.update(image="init.png", mask_image="mask.png")
                else:
                    image = pipe(image=init, strength=extra["strength"], **kw).images[0]
                    request.update(image="init.png")
                with open(os.path.join(args.out, f"{name}.png"), "wb") as f:
                    f.write(png(image))
                cases.append({"name": name, "request": request})
                print(name, flush=True)

    # SDXL-Turbo's recipe (its model card): EulerAncestral with trailing timesteps, no guidance, 1 to 4 steps.
    for steps in (1, 4):
        name = f"turbo-{steps}"
        pipes["t2i"].scheduler = EulerAncestralDiscreteScheduler.from_config(base.scheduler.config, timestep_spacing="trailing")
        image = pipes["t2i"](SEEDS[11]["prompt"], height=64, width=64, num_inference_steps=steps, guidance_scale=0.0,
                             generator=torch.Generator().manual_seed(11), output_type="pil").images[0]
        with open(os.path.join(args.out, f"{name}.png"), "wb") as f:
            f.write(png(image))
        cases.append({"name": name, "request": {"prompt": SEEDS[11]["prompt"], "num_inference_steps": steps, "guidance_scale": 0, "seed": 11, "width": 64, "height": 64,
                                                "scheduler": "euler_a", "scheduler_config": {"timestep_spacing": "trailing"}}})
        print(name, flush=True)

    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"diffusers": args.diffusers_commit, "steps": STEPS, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
