"""Weight quantisation of the demo models, and what it costs in quality.

Makes `onnx/model_int8.onnx`, `model_q8.onnx` and `model_q4.onnx` beside each demo LM's graph and
`unet/model_int8.onnx` beside tiny-sd's UNet (Easel loads them with `runtime: {variant: NAME}`),
measures them, and removes them again unless `--keep` is given (then `npm run
bench:runtime-options` and `npm run bench:llm-peers` measure them too, and the bundled-models test
reports them as files the cards do not list). All made by ONNX Runtime's own quantisers:
- int8: dynamic quantisation, MatMul weights stored as int8 (per output channel), activations
  quantised per call (MatMulInteger). tiny-sd's convolutions stay float32 (ONNX Runtime's CPU
  ConvInteger takes only uint8 weights and its quantised convolutions need calibration data).
- q8 and q4: weight-only MatMulNBits, 8 or 4 bits in blocks of 32 (matmul_nbits).

Quality, each measured with ONNX Runtime on the float32 and the quantised graphs alike:
- LMs: held-out perplexity per token (stories.py's held-out split, as the training scripts make
  it, in windows of 128 tokens) and how often the two graphs' greedy tokens agree;
- tiny-sd: the factory's colour/shape grade (shapes.analyse) of 100 held-out captions, 20 DDIM
  steps, guidance 7.5, the same noise for both.

Needs ONNX Runtime's Python package (and onnx >= 1.16 for its quantiser), which Debian does not
package: a virtual environment over Debian's Python, e.g.

    /usr/bin/python3 -m venv --system-site-packages .work/ortq
    .work/ortq/bin/pip install onnxruntime onnx ml_dtypes   # or --no-index --find-links <wheels>
    .work/ortq/bin/python tools/model-factory/quantize.py
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, os.path.dirname(__file__))
import byte_bpe  # noqa: E402
import clip_bpe  # noqa: E402
import shapes  # noqa: E402
import sp_bpe  # noqa: E402
import stories  # noqa: E402

MODELS = "models"
WINDOW = 128


def quantise(src: str, dst: str) -> None:
    # DefaultTensorType: the type of what ONNX's shape inference cannot follow through ONNX
    # Runtime's own operators (a fused graph's GroupQueryAttention, RotaryEmbedding): float.
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def matmul_nbits(src: str, dst: str, bits: int) -> None:
    """Weight-only quantization to ONNX Runtime's MatMulNBits (what onnxruntime-genai ships for
    CPU): symmetric blocks of 32 weights with one scale each; `accuracy_level` 4 lets the CPU
    kernels multiply in int8, activations quantized per block as they go."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=bits)
    q = MatMulNBitsQuantizer(onnx.load(src), bits=bits, block_size=32, is_symmetric=True, accuracy_level=4, algo_config=config)
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=False)


# An LM's variants, by the name `runtime: {variant: ...}` picks them with (onnx/model_<name>.onnx).
LM_VARIANTS = {"int8": quantise, "q8": lambda s, d: matmul_nbits(s, d, 8), "q4": lambda s, d: matmul_nbits(s, d, 4)}


def session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def lm_logits(s: ort.InferenceSession, ids: np.ndarray) -> np.ndarray:
    """[batch, tokens] → logits, with an empty cache."""
    b, t = ids.shape
    feeds = {"input_ids": ids, "attention_mask": np.ones((b, t), np.int64), "position_ids": np.tile(np.arange(t, dtype=np.int64), (b, 1))}
    for i in s.get_inputs():
        if i.name.startswith("past_key_values."):
            feeds[i.name] = np.zeros((b, i.shape[1], 0, i.shape[3]), np.float32)
    return s.run(["logits"], feeds)[0]


def lm_tokens(model: str) -> list[int]:
    """The held-out stories and chats of the training scripts, tokenised as they trained."""
    tok = json.load(open(os.path.join(MODELS, model, "tokenizer.json")))
    vocab, merges = tok["model"]["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tok["model"]["merges"]]
    heldout = stories.corpus(2000, 1)
    if model == "tiny-llama":
        sp = sp_bpe.SpBpe(vocab, merges, ["<|im_start|>", "<|im_end|>"])
        return [i for d in heldout for i in sp.encode(d) + [vocab[sp_bpe.EOS]]]
    bb = byte_bpe.ByteBpe(vocab, merges, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return [i for d in heldout for i in bb.encode(d) + [vocab["<|endoftext|>"]]]


def lm_quality(model: str, graphs: dict[str, str]) -> dict:
    """Per graph (float32 first, then its variants): held-out perplexity, ms per decode step, and
    each variant's greedy agreement with float32."""
    stream = np.array(lm_tokens(model), np.int64)
    windows = stream[: len(stream) // (WINDOW + 1) * (WINDOW + 1)].reshape(-1, WINDOW + 1)[:200]
    out, argmax = {}, {}
    for name, path in graphs.items():
        s = session(path)
        nll, n, best = 0.0, 0, []
        for i in range(0, len(windows), 20):
            w = windows[i : i + 20]
            logits = lm_logits(s, w[:, :-1]).astype(np.float64)
            logits -= logits.max(-1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            nll -= np.take_along_axis(logp, w[:, 1:, None], -1).sum()
            n += w[:, 1:].size
            best.append(logp.argmax(-1))
        out[f"{name} perplexity"] = round(math.exp(nll / n), 4)
        argmax[name] = np.concatenate(best)
        # Time per decode step, one sequence with a 64-token cache.
        feeds = {"input_ids": np.array([[5]], np.int64), "attention_mask": np.ones((1, 65), np.int64), "position_ids": np.array([[64]], np.int64)}
        for inp in s.get_inputs():
            if inp.name.startswith("past_key_values."):
                feeds[inp.name] = np.full((1, inp.shape[1], 64, inp.shape[3]), 0.01, np.float32)
        for _ in range(20):
            s.run(["logits"], feeds)
        t0 = time.perf_counter()
        for _ in range(300):
            s.run(["logits"], feeds)
        out[f"{name} ms per decode step"] = round((time.perf_counter() - t0) / 300 * 1000, 4)
    for name in list(graphs)[1:]:
        out[f"{name} greedy agreement"] = round(float((argmax["float32"] == argmax[name]).mean()), 4)
    out["held-out tokens"] = int(windows[:, 1:].size)
    return out


def sd_images(unet_path: str, prompts: list[str], seed: int) -> np.ndarray:
    """tiny-sd's DDIM (as the training script samples it) on ONNX Runtime: 20 steps, guidance 7.5."""
    d = os.path.join(MODELS, "tiny-sd")
    merges = [tuple(line.split()) for line in open(os.path.join(d, "tokenizer", "merges.txt")).read().splitlines()[1:] if line]
    tok = clip_bpe.ClipBpe(merges, 32)
    te, unet, dec = session(os.path.join(d, "text_encoder", "model.onnx")), session(unet_path), session(os.path.join(d, "vae_decoder", "model.onnx"))
    scale = json.load(open(os.path.join(d, "vae_decoder", "config.json")))["scaling_factor"]
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    ac = np.cumprod(1 - betas).astype(np.float32)
    ids = np.array([tok.encode("")] * len(prompts) + [tok.encode(p) for p in prompts], np.int32)
    ctx = te.run(None, {te.get_inputs()[0].name: ids.astype(np.int32 if "int32" in te.get_inputs()[0].type else np.int64)})[0]
    x = np.random.default_rng(seed).standard_normal((len(prompts), 4, 8, 8)).astype(np.float32)
    names = [i.name for i in unet.get_inputs()]
    for t in [i * 50 + 1 for i in reversed(range(20))]:
        tt = np.full((2 * len(prompts),), t, np.float32 if "float" in unet.get_inputs()[1].type else np.int64)
        eps_u, eps_c = np.split(unet.run(None, {names[0]: np.concatenate([x, x]), names[1]: tt, names[2]: ctx})[0], 2)
        eps = eps_u + 7.5 * (eps_c - eps_u)
        a, a_prev = ac[t], ac[t - 50] if t - 50 >= 0 else ac[0]
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        x = (math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps).astype(np.float32)
    img = dec.run(None, {dec.get_inputs()[0].name: x / scale})[0]
    return (np.clip(img / 2 + 0.5, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)


def sd_quality(fp32: str, int8: str) -> dict:
    _, heldout = shapes.build_split(0, 100, 0)
    prompts = [c for _, c in heldout]
    out, images = {}, {}
    for name, path in (("float32", fp32), ("int8", int8)):
        t0 = time.perf_counter()
        imgs = np.concatenate([sd_images(path, prompts[i : i + 50], 1234 + i) for i in range(0, len(prompts), 50)])
        out[f"{name} seconds for 100 images"] = round(time.perf_counter() - t0, 2)
        hits = {"fg": 0, "bg": 0, "shape": 0}
        for (attrs, _), img in zip(heldout, imgs):
            got = shapes.analyse(img)
            for k in hits:
                hits[k] += got[k] == attrs[k]
        out.update({f"{name} {k} accuracy": v / len(heldout) for k, v in hits.items()})
        images[name] = imgs.astype(np.int16)
    out["max pixel difference"] = int(np.abs(images["float32"] - images["int8"]).max())
    out["mean pixel difference"] = round(float(np.abs(images["float32"] - images["int8"]).mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="leave the quantized graphs beside the models")
    ap.add_argument("--lms-only", action="store_true", help="the LMs only, not tiny-sd")
    args = ap.parse_args()
    keep = args.keep
    report = {}
    made = []
    for model in ("tiny-lm", "tiny-lm-draft", "tiny-llama"):
        src = os.path.join(MODELS, model, "onnx", "model.onnx")
        graphs = {"float32": src}
        for name, make in LM_VARIANTS.items():
            graphs[name] = os.path.join(MODELS, model, "onnx", f"model_{name}.onnx")
            make(src, graphs[name])
            made.append(graphs[name])
        report[model] = {**{f"{n} bytes": os.path.getsize(p) for n, p in graphs.items()}, **lm_quality(model, graphs)}
        print(model, json.dumps(report[model]), flush=True)
    if not args.lms_only:
        src = os.path.join(MODELS, "tiny-sd", "unet", "model.onnx")
        dst = os.path.join(MODELS, "tiny-sd", "unet", "model_int8.onnx")
        quantise(src, dst)
        made.append(dst)
        report["tiny-sd"] = {"float32 unet bytes": os.path.getsize(src), "int8 unet bytes": os.path.getsize(dst), **sd_quality(src, dst)}
        print("tiny-sd", json.dumps(report["tiny-sd"]), flush=True)
    os.makedirs("tools/model-factory/.work", exist_ok=True)
    with open("tools/model-factory/.work/quantize.json", "w") as f:
        json.dump(report, f, indent=2)
    for f in made if not keep else []:
        os.remove(f)


if __name__ == "__main__":
    main()
