"""Writes each bundled model's card (models/<name>/README.md) from the factory's reports: what it
is, how it was trained and rebuilt, its size, parameter count, measured quality, and the sha256
of every file beside the card (which Easel's test suite checks)."""
import hashlib
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
WORK = os.path.join(os.path.dirname(__file__), ".work")
SKIP = {"README.md", "easel.yaml"}  # the card itself, and Easel's serving config, edited by hand


def files_of(model_dir: str) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(model_dir):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), model_dir)
            if rel not in SKIP:
                out.append(rel)
    return sorted(out)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def table(model_dir: str) -> tuple[str, int]:
    rows, total = [], 0
    for rel in files_of(model_dir):
        p = os.path.join(model_dir, rel)
        size = os.path.getsize(p)
        total += size
        rows.append(f"| `{rel}` | {size} | `{sha256(p)}` |")
    return "| file | bytes | sha256 |\n|---|---|---|\n" + "\n".join(rows), total


def fmt(d: dict) -> str:
    return "\n".join(f"| {k} | {v} |" for k, v in d.items())


def tiny_sd_card(report: dict) -> str:
    d = os.path.join(ROOT, "models", "tiny-sd")
    files, total = table(d)
    params = report["params"]
    q = report["quality"]
    return f"""# tiny-sd

A tiny text-to-image latent diffusion model, trained from scratch by Easel's model factory on
a rendered data set of captioned shapes. It has the file layout and tensor names of a Stable
Diffusion 1.x pipeline exported to ONNX with Hugging Face optimum, so the code that serves it
serves those too.

## What it draws

One filled shape on a plain background, 64x64 pixels (the graphs take other sizes that are
multiples of 8; they were trained at 64). Prompts in the training captions' English work:

- shapes: circle, square, triangle, cross
- colours: red, green, blue, yellow, purple, orange, white, black
- backgrounds: white, black, blue, yellow, green, gray
- sizes: small, medium, large; positions: center, top left, top right, bottom left, bottom right

e.g. "a red circle on a blue background", "a small green triangle on a white background",
"a yellow cross at the top left on a black background".

`samples.png` shows the first 16 held-out captions (DDIM, 20 steps, guidance 7.5).

## Components

| component | what | parameters |
|---|---|---|
| tokenizer | CLIP-style byte-level BPE (lower-cased, `<|startoftext|>`/`<|endoftext|>`, max length 32), trained on the captions | — |
| text_encoder | CLIP-like causal transformer, 3 layers, width 128: `input_ids` (int32) → `last_hidden_state`, `pooler_output` | {params['text_encoder']} |
| unet | conditional UNet (ResNet + self/cross-attention blocks at 8x8 and 4x4, channels 64/128): `sample`, `timestep` (float32, `[batch]`: each sample has its own), `encoder_hidden_states` → `out_sample`; epsilon prediction | {params['unet']} |
| vae_encoder / vae_decoder | KL autoencoder, 4-channel latent at 1/8 scale, `scaling_factor` in the config | {params['vae_encoder']} / {params['vae_decoder']} |
| scheduler | `scheduler_config.json`: scaled_linear betas 0.00085–0.012, 1000 train steps, epsilon, steps_offset 1 | — |

Batch, height and width axes are dynamic in every graph (sequence length too in the text encoder).

## Training

{report['images']} rendered images with captions (seeded); the 100 held-out captions' attribute
combinations never occur in training. The autoencoder trained {report['vae_steps']} steps (batch 16,
MSE + L1 + 1e-5 KL); then text encoder and UNet trained jointly {report['unet_steps']} steps (batch 32,
AdamW, one-cycle LR 5e-4, EMA 0.999) with 10% caption dropout for classifier-free guidance.
Training took {report['train_seconds']} s and the whole build {report['total_seconds']} s on 2 CPU cores.

Rebuild (PyTorch from Debian: `apt-get install -y python3-torch python3-onnx python3-pil libopenblas0-pthread`):

    /usr/bin/python3 tools/model-factory/tiny_sd.py && /usr/bin/python3 tools/model-factory/cards.py

## Measured quality

100 held-out captions, DDIM 20 steps, guidance 7.5, graded by the factory's deterministic
analyser (background from the border, foreground colour from the pixels far from it, shape
class from the mask's geometry):

| measure | value |
|---|---|
| foreground colour correct | {q['fg']:.2f} |
| background colour correct | {q['bg']:.2f} |
| shape class correct | {q['shape']:.2f} |

ONNX Runtime vs PyTorch on fixed inputs (max abs difference), and each graph's batch of two vs
its samples run alone (for the UNet: timesteps 999 and 1 in one batch):

| check | max abs |
|---|---|
{fmt(report['parity'])}

## Files

{total} bytes in all.

{files}
"""


# tiny-sd's held-out scores (its card), for tiny-sdxl's card to stand beside.
TINY_SD = {"fg": 0.98, "bg": 1.00, "shape": 0.71}

# Both served models through Easel's /predictions on the same held-out captions x 10 seeds
# (`served_eval.py --seeds 10` against the committed weights): images hit of 1000.
SERVED = {"tiny-sd": {"fg": 987, "bg": 999, "shape": 735}, "tiny-sdxl": {"fg": 997, "bg": 996, "shape": 751}}


def served_text() -> str:
    from served_eval import wilson

    sd, sdxl = SERVED["tiny-sd"], SERVED["tiny-sdxl"]
    span = lambda hits: "–".join(f"{x:.3f}" for x in wilson(hits, 1000))  # noqa: E731
    rows = "\n".join(f"| {m} | {h['fg'] / 1000:.3f} | {h['bg'] / 1000:.3f} | {h['shape'] / 1000:.3f} |" for m, h in SERVED.items())
    return f"""A larger sample, through Easel itself: the same 100 held-out captions with 10 seeds each
(1,000 images per model), DDIM, 20 steps, guidance 7.5, sent to `POST /predictions/<model>` and
graded by the same analyser (`tools/model-factory/served_eval.py --seeds 10`):

| model | foreground | background | shape |
|---|---|---|---|
{rows}

Background: {1000 - sdxl['bg']} misses in 1,000 against tiny-sd's {1000 - sd['bg']} (95 % intervals {span(sdxl['bg'])} and
{span(sd['bg'])}); foreground {1000 - sdxl['fg']} against {1000 - sd['fg']} ({span(sdxl['fg'])} and {span(sd['fg'])}); shape {sdxl['shape']} against {sd['shape']} right.
"""


def tiny_sdxl_card(report: dict) -> str:
    d = os.path.join(ROOT, "models", "tiny-sdxl")
    files, total = table(d)
    params = report["params"]
    q = report["quality"]
    return f"""# tiny-sdxl

A tiny Stable Diffusion XL, trained from scratch by Easel's model factory on the same captioned
shapes as tiny-sd. Its networks are diffusers' and transformers' own classes at toy size, and
its folder is what optimum writes when it exports an SDXL pipeline to ONNX: two text encoders
(the second with a projection), a UNet with SDXL's added conditioning (pooled text embedding and
the micro-conditioning `time_ids`), a VAE encoder and decoder. The code that serves it serves
`stabilityai/stable-diffusion-xl-base-1.0` exported by optimum.

## What it draws

One filled shape on a plain background, 64x64 pixels, from the captions' English (see tiny-sd:
circle, square, triangle, cross; red, green, blue, yellow, purple, orange, white, black; white,
black, blue, yellow, green, gray backgrounds; small, medium, large; five positions).

Micro-conditioning means here what it means to SDXL: training images were drawn at random
original sizes (smaller ones upscaled: soft edges) and crops of larger ones (the shape may leave
the frame), each with its `original_size` and `crops_coords_top_left`. diffusers' defaults
(original size = target size, crop (0, 0)) ask for a sharp, uncropped scene.

`samples.png`: rows 1–2 the first 16 held-out captions (DDIM, 20 steps, guidance 7.5); row 3 the
first 8 again with `original_size` (32, 32); row 4 with `original_size` (96, 96) and
`crops_coords_top_left` (24, 24).

## Components

| component | what | parameters |
|---|---|---|
| tokenizer, tokenizer_2 | CLIP byte-level BPE trained on the captions, max length 32 (the second pads with `!`, as SDXL's does) | — |
| text_encoder | transformers `CLIPTextModel`, 3 layers, width 128: `input_ids` (int32) → `last_hidden_state`, `pooler_output`, `hidden_states.0`–`3` | {params['text_encoder']} |
| text_encoder_2 | transformers `CLIPTextModelWithProjection`, 3 layers, width 96, projection 64: → `text_embeds`, `last_hidden_state`, `hidden_states.0`–`3` | {params['text_encoder_2']} |
| unet | diffusers `UNet2DConditionModel`, channels 64/128, cross-attention (4 heads) at both levels over the encoders' penultimate states side by side (224 wide), `addition_embed_type: text_time` (time embedding 32 per number): `sample`, `timestep` (float32, `[batch]`), `encoder_hidden_states`, `text_embeds`, `time_ids` → `out_sample`; epsilon | {params['unet']} |
| vae_encoder / vae_decoder | diffusers `AutoencoderKL` (channels 16/32/64/64, 4-channel latent at 1/8), `scaling_factor` from the latents' spread, `force_upcast` as SDXL's; the encoder gives optimum's `latent_parameters` (mean and log-variance) | {params['vae']} |
| scheduler | SDXL base's `EulerDiscreteScheduler` config: scaled_linear 0.00085–0.012, leading spacing, steps_offset 1 | — |

## Training

{report['images']} rendered images (seeded), half at the target size, a quarter drawn at 24–48
pixels and upscaled, a quarter drawn at 64–96 and cropped at random; the 100 held-out captions
are tiny-sd's, whose attribute combinations never occur in training. The autoencoder trained
{report['vae_steps']} steps; then both text encoders and the UNet jointly {report['unet_steps']}
steps (batch 32, AdamW, one-cycle LR 5e-4, EMA 0.999), 10% of captions dropped to zero
embeddings (what `force_zeros_for_empty_prompt` feeds the unconditional pass){decoder_text(report)}. Training took
{report['train_seconds']} s and the whole build {report['total_seconds']} s on 2 CPU cores.

Rebuild (a venv with torch, transformers, onnx, pillow and numpy; diffusers from a checkout):

    PYTHONPATH=<diffusers>/src <venv>/bin/python tools/model-factory/tiny_sdxl.py && /usr/bin/python3 tools/model-factory/cards.py tiny-sdxl

The PyTorch pipeline (diffusers' `save_pretrained`) stays in `tools/model-factory/.work/tiny-sdxl/diffusers`
for `tools/reference/diffusers_sdxl_fixtures.py`.

## Measured quality

100 held-out captions through diffusers' own `StableDiffusionXLPipeline` on these weights, 20
steps, guidance 7.5, graded by the factory's analyser (tiny-sd's card has the same measures):

| measure | value |
|---|---|
{fmt({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in q.items()})}

tiny-sd on the same captions and analyser (its card, DDIM): foreground {TINY_SD['fg']:.2f}, background
{TINY_SD['bg']:.2f}, shape {TINY_SD['shape']:.2f}.{versus_tiny_sd(q)}
Sharpness is the mean difference between horizontally adjacent pixels.

{served_text()}
ONNX Runtime vs PyTorch on fixed inputs (max abs difference), and each graph's batch of two vs
its samples run alone:

| check | max abs |
|---|---|
{fmt(report['parity'])}

## Files

{total} bytes in all.

{files}
"""


def tiny_lm_card(name: str, report: dict) -> str:
    d = os.path.join(ROOT, "models", name)
    files, total = table(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    q = report["quality"]
    parity = {k: v for k, v in report["parity"].items() if k.startswith(name + " ")}
    role = ("the main model; `tiny-lm-draft` is its draft for speculative decoding" if name == "tiny-lm"
            else "the draft model for speculative decoding with `tiny-lm`: same tokenizer, several times cheaper per token")
    return f"""# {name}

A tiny decoder-only language model ({role}), trained from scratch by Easel's model factory on
generated English: short children's stories and simple question/answer chats. Its files have the
layout of a transformers.js/optimum decoder export, so the code that serves it serves those too.

## What it writes

Stories in the style of "Once upon a time, there was a little girl named Lily..." with a small
cast (Lily, Tom, Mia, Ben...), animals, places and objects; and chat answers to simple questions
("What color is the sky?", "What does a cat say?") through the ChatML chat template in
`tokenizer_config.json` (`<|im_start|>user ... <|im_end|>`). Generation ends at `<|im_end|>` or
`<|endoftext|>`. The template also writes OpenAI's `tools` into the system turn and an assistant's calls as
`<tool_call>{{"name": …, "arguments": …}}</tool_call>` (Hermes/Qwen style); the model was not trained on tool use.

## Model

| | |
|---|---|
| architecture | GPT-2-like: learned positions, pre-LayerNorm, GELU, tied embeddings |
| layers / width / heads | {cfg['n_layer']} / {cfg['n_embd']} / {cfg['n_head']} |
| vocabulary | {cfg['vocab_size']} (byte-level BPE, `tokenizer.json`) |
| context | {cfg['n_positions']} positions |
| parameters | {report['params'][name]} |
| graph | `onnx/model.onnx`: `input_ids`, `attention_mask`, `position_ids`, `past_key_values.{{i}}.key/.value` → `logits`, `present.{{i}}.key/.value`; batch and sequence axes dynamic, an empty cache (past length 0) for the first step |

## Training

{report['docs']} generated documents ({report['tokens']} tokens, seeded; the text is Easel's own),
windows of 128 tokens, batch 32, AdamW with one-cycle LR 2e-3: {report['steps'] if name == 'tiny-lm' else report['draft_steps']} steps.
The whole tiny-lm build (both models) took {report['total_seconds']} s on 2 CPU cores.

Rebuild: `/usr/bin/python3 tools/model-factory/tiny_lm.py && /usr/bin/python3 tools/model-factory/cards.py`

## Measured quality

| measure | value |
|---|---|
{fmt(q)}

ONNX Runtime vs PyTorch (max abs), with a 4-token cache and with an empty one, and a batch of
two vs each row alone:

| check | max abs |
|---|---|
{fmt(parity)}

## Files

{total} bytes in all.

{files}
"""


def versus_tiny_sd(q: dict) -> str:
    """Which of this model's DDIM grades meet tiny-sd's and which fall short (100 captions: each image is 0.01)."""
    names = {"fg": "foreground", "bg": "background", "shape": "shape"}
    short = [f"{names[k]} ({q[f'ddim {k}']:.2f})" for k in TINY_SD if q[f"ddim {k}"] < TINY_SD[k]]
    if not short:
        return " This model follows colour and shape at least as well."
    meets = [names[k] for k in TINY_SD if q[f"ddim {k}"] >= TINY_SD[k]]
    return f" Short of tiny-sd: {', '.join(short)}" + (f"; as good or better: {', '.join(meets)}." if meets else ".")


def decoder_text(report: dict) -> str:
    """What the autoencoder's last stage did, and its round trip (the grade's cap) where the report has it."""
    parts = []
    if report.get("decoder_steps"):
        parts.append(f"; then the VAE's decoder alone {report['decoder_steps']} steps on latents the frozen encoder samples (Stability's sd-vae-ft-mse recipe)")
    if "vae_round_trip" in report:
        rt = report["vae_round_trip"]
        parts.append(f". The autoencoder's own round trip of the held-out scenes (render, encode, decode, grade): foreground {rt['fg']:.2f}, background {rt['bg']:.2f}, shape {rt['shape']:.2f}")
    return "".join(parts)


def tiny_llama_card(report: dict) -> str:
    d = os.path.join(ROOT, "models", "tiny-llama")
    files, total = table(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    parity = {k: v for k, v in report["parity"].items() if "max abs" in k}
    tokenizer = {k: v for k, v in report["parity"].items() if k.startswith("tokenizer")}
    samples = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in report["samples"].items())
    return f"""# tiny-llama

A tiny decoder-only language model with Llama's architecture, trained from scratch by Easel's
model factory on the same generated English as `tiny-lm` (short children's stories and simple
question/answer chats). It is the text pipeline's second architecture: rotary positions,
grouped-query attention (2 key/value heads for 4 query heads, so its KV cache is half the size of
a multi-head model's), and a SentencePiece-style tokenizer that adds `<s>` to a prompt. Its files
have the layout of an optimum decoder export of a `LlamaForCausalLM`.

## What it writes

The same as tiny-lm: stories ("Once upon a time, there was a little girl named Lily...") and chat
answers through the ChatML template in `tokenizer_config.json`, which starts with `{{{{ bos_token }}}}`. The template also writes OpenAI's `tools` into the system turn and an assistant's calls as
`<tool_call>{{"name": …, "arguments": …}}</tool_call>` (Hermes/Qwen style), and the model was
trained on such chats (tools/model-factory/tool_chats.py): four functions — `get_weather(city)`,
`get_time(zone)`, `add(a, b)`, `multiply(a, b)` — offered in random subsets and orders, asks that
need one of them (it calls it), asks that need one not offered or none (it answers in text), and
the turns after a call (the `tool` message with the result, then an answer). Generation ends at
`</s>` or `<|im_end|>`.

Tool choice on {report['quality']['held-out asks that need an offered function'] + report['quality']['held-out asks no offered function fits']} held-out asks (cities and number pairs no training chat has; greedy,
unconstrained — Easel's constrained decoding then guarantees the call's shape): the right
function called {report['quality']['... the right function called']:.1%} of the time, with the right arguments too {report['quality']['... the right function with the right arguments']:.1%}; text
when no offered function fits {report['quality']['... answered in text']:.1%}. The figures are in the table under
"Measured quality".

| prompt | greedy continuation (PyTorch) |
|---|---|
{samples}

## Model

| | |
|---|---|
| architecture | Llama: RMSNorm (eps {cfg['rms_norm_eps']}), rotary position embeddings (theta {cfg['rope_theta']}), grouped-query attention, SwiGLU MLP, no biases, untied output head |
| layers / width / MLP width | {cfg['num_hidden_layers']} / {cfg['hidden_size']} / {cfg['intermediate_size']} |
| query heads / key-value heads / head size | {cfg['num_attention_heads']} / {cfg['num_key_value_heads']} / {cfg['head_dim']} |
| vocabulary | {cfg['vocab_size']}: SentencePiece-style BPE in `tokenizer.json` (`▁` marks a word's space, Metaspace pre-tokenizer with `prepend_scheme: first`, byte fallback `<0x00>`…`<0xFF>`, `<s>` added by the post-processor), plus the ChatML tokens |
| context | {cfg['max_position_embeddings']} positions |
| parameters | {report['params']} |
| graph | `onnx/model.onnx`: `input_ids`, `attention_mask`, `position_ids`, `past_key_values.{{i}}.key/.value` → `logits`, `present.{{i}}.key/.value` with 2 KV heads; batch and sequence axes dynamic, an empty cache (past length 0) for the first step |

The graph takes its past as inputs (optimum's `model.onnx` with past), not a merged decoder with
`use_cache_branch`: the merged form exists so that the first step can skip zero-length past
tensors, which ONNX Runtime accepts anyway, and building its `If` graph would mean merging two
exports by hand with `python3-onnx`; Easel reads both layouts.

## Training

{report['docs']} generated documents and {report['tool_docs']} tool-use chats rendered by the chat template
({report['tokens']} tokens, each `<s> text </s>`, seeded; the text is Easel's own), windows of 256
tokens, batch 16, AdamW with one-cycle LR 2e-3: {report['steps']} steps. The build took {report['total_seconds']} s on 2 CPU cores.

Rebuild: `/usr/bin/python3 tools/model-factory/tiny_llama.py && /usr/bin/python3 tools/model-factory/cards.py tiny-llama`

## Measured quality

Perplexity is per token of this tokenizer, so it does not compare with tiny-lm's (another
vocabulary); bits per character of the held-out text do.

| measure | value |
|---|---|
{fmt(report['quality'])}

ONNX Runtime vs PyTorch (max abs), with a 4-token cache and with an empty one, and a batch of
two vs each row alone:

| check | max abs |
|---|---|
{fmt(parity)}

The tokenizer: the factory's encoder (which made the training data) against
`@huggingface/tokenizers` (which Easel loads `tokenizer.json` with) on held-out documents and odd
strings. A decode that does not give the text back is a leading space (the Strip decoder drops
one, as Llama's does).

| check | count |
|---|---|
{fmt(tokenizer)}

## Files

{total} bytes in all.

{files}
"""


def main() -> None:
    which = sys.argv[1:] or ["tiny-sd", "tiny-sdxl", "tiny-lm", "tiny-llama"]
    if "tiny-sd" in which:
        r = json.load(open(os.path.join(WORK, "tiny-sd", "report.json")))
        open(os.path.join(ROOT, "models", "tiny-sd", "README.md"), "w").write(tiny_sd_card(r))
    if "tiny-sdxl" in which:
        r = json.load(open(os.path.join(WORK, "tiny-sdxl", "report.json")))
        open(os.path.join(ROOT, "models", "tiny-sdxl", "README.md"), "w").write(tiny_sdxl_card(r))
    if "tiny-lm" in which:
        r = json.load(open(os.path.join(WORK, "tiny-lm", "report.json")))
        for name in ("tiny-lm", "tiny-lm-draft"):
            open(os.path.join(ROOT, "models", name, "README.md"), "w").write(tiny_lm_card(name, r))
    if "tiny-llama" in which:
        r = json.load(open(os.path.join(WORK, "tiny-llama", "report.json")))
        open(os.path.join(ROOT, "models", "tiny-llama", "README.md"), "w").write(tiny_llama_card(r))
    print("cards written")


if __name__ == "__main__":
    main()
