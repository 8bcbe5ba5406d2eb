"""Builds models/tiny-lm and models/tiny-lm-draft: decoder-only transformers sharing one
byte-level BPE tokenizer, trained on generated stories and chats, exported in the
transformers.js/optimum decoder layout (input_ids, attention_mask, position_ids,
past_key_values.{i}.key/.value → logits, present.{i}.key/.value).

    /usr/bin/python3 tools/model-factory/tiny_lm.py [--steps N]
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import byte_bpe  # noqa: E402
import export_util  # noqa: E402
import stories  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MAX_POSITIONS = 256
CONTEXT = 128
MODELS = {
    "tiny-lm": dict(dim=128, layers=4, heads=4),
    "tiny-lm-draft": dict(dim=64, layers=1, heads=2),
}


def log(msg: str) -> None:
    print(f"[tiny-lm {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, bias, past_k, past_v):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.reshape(b, t, h, d // h).transpose(1, 2) * (d // h) ** -0.5
        k = torch.cat([past_k, k.reshape(b, t, h, d // h).transpose(1, 2)], dim=2)
        v = torch.cat([past_v, v.reshape(b, t, h, d // h).transpose(1, 2)], dim=2)
        att = (q @ k.transpose(-1, -2) + bias).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp(self.ln2(x))
        return x, k, v


def attention_bias(attention_mask, t: int):
    """[b, 1, t, total] additive bias for t new tokens after total - t cached ones: key j is
    visible to query i when j <= (total - t) + i and attention_mask[:, j] is 1."""
    total = attention_mask.shape[1]
    q_pos = torch.arange(t)[:, None] + (total - t)
    k_pos = torch.arange(total)[None, :]
    allowed = (k_pos <= q_pos)[None, None] & (attention_mask[:, None, None, :] > 0)
    return torch.where(allowed, torch.zeros(()), torch.full((), -1e9))


class DecoderLM(nn.Module):
    """GPT-2-like: learned positions, pre-LayerNorm blocks, tied embeddings, a KV cache."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.dim, self.layers, self.heads = dim, layers, heads
        self.kv_heads, self.head_dim = heads, dim // heads
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(MAX_POSITIONS, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        t = input_ids.shape[1]
        x = self.wte(input_ids) + self.wpe(position_ids)
        bias = attention_bias(attention_mask, t)
        presents = []
        for i, blk in enumerate(self.blocks):
            x, k, v = blk(x, bias, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        logits = self.ln_f(x) @ self.wte.weight.t()
        return (logits, *presents)

    def empty_past(self, batch: int, length: int = 0):
        return [torch.zeros(batch, self.kv_heads, length, self.head_dim) for _ in range(2 * self.layers)]

    def lm_logits(self, ids):
        b, t = ids.shape
        return self(ids, torch.ones(b, t, dtype=torch.int64), torch.arange(t)[None].expand(b, t), *self.empty_past(b))[0]


def batches(stream: torch.Tensor, batch: int, g: torch.Generator, context: int = CONTEXT):
    idx = torch.randint(0, stream.numel() - context - 1, (batch,), generator=g)
    x = torch.stack([stream[i : i + context] for i in idx])
    y = torch.stack([stream[i + 1 : i + context + 1] for i in idx])
    return x, y


def train(model: DecoderLM, stream: torch.Tensor, steps: int, seed: int, name: str, batch: int = 32, context: int = CONTEXT) -> None:
    """AdamW with a one-cycle schedule on random windows of `context` tokens, `batch` at a time."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(steps):
        x, y = batches(stream, batch, g, context)
        loss = F.cross_entropy(model.lm_logits(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"{name} step {step}/{steps} loss {loss.item():.3f} ({(step + 1) / (time.time() - t0):.2f} steps/s)")
    model.eval()


@torch.no_grad()
def evaluate(big: DecoderLM, draft: DecoderLM, stream: torch.Tensor) -> dict:
    g = torch.Generator().manual_seed(99)
    nll = {"tiny-lm": 0.0, "tiny-lm-draft": 0.0}
    agree = n = 0
    for _ in range(20):
        x, y = batches(stream, 16, g)
        lb, ld = big.lm_logits(x), draft.lm_logits(x)
        nll["tiny-lm"] += F.cross_entropy(lb.flatten(0, 1), y.flatten(), reduction="sum").item()
        nll["tiny-lm-draft"] += F.cross_entropy(ld.flatten(0, 1), y.flatten(), reduction="sum").item()
        agree += (lb.argmax(-1) == ld.argmax(-1)).sum().item()
        n += y.numel()
    out = {f"{k} held-out perplexity": round(math.exp(v / n), 3) for k, v in nll.items()}
    out["draft greedy agreement"] = round(agree / n, 4)
    # Cost per generated token: one decode step with a 64-token cache, batch 1.
    for name, m in (("tiny-lm", big), ("tiny-lm-draft", draft)):
        ids = torch.tensor([[5]])
        mask = torch.ones(1, 65, dtype=torch.int64)
        pos = torch.tensor([[64]])
        past = m.empty_past(1, 64)
        for _ in range(20):
            m(ids, mask, pos, *past)
        t0 = time.perf_counter()
        for _ in range(200):
            m(ids, mask, pos, *past)
        out[f"{name} ms per token (torch, cache 64)"] = round((time.perf_counter() - t0) / 200 * 1000, 3)
    out["draft cost ratio (tiny-lm / draft)"] = round(out["tiny-lm ms per token (torch, cache 64)"] / out["tiny-lm-draft ms per token (torch, cache 64)"], 2)
    return out


@torch.no_grad()
def sample_text(model: DecoderLM, tok: byte_bpe.ByteBpe, prompt: str, n: int = 40) -> str:
    ids = tok.encode(prompt)
    for _ in range(n):
        nxt = int(model.lm_logits(torch.tensor([ids]))[0, -1].argmax())
        ids.append(nxt)
        if nxt in (tok.vocab["<|endoftext|>"], tok.vocab["<|im_end|>"]):
            break
    return tok.decode(ids)


def export(model: nn.Module, out: str, name: str, vocab_size: int, tok_dir: str) -> list[dict]:
    """Exports any decoder with `layers`, `kv_heads`, `head_dim` and `empty_past` in the optimum
    layout, copies the tokenizer files beside it, and returns the parity cases (a 4-token cache with
    a left-padded row, and an empty cache)."""
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    g = torch.Generator().manual_seed(3)
    b, t, p = 2, 3, 4
    inputs = {
        "input_ids": torch.randint(0, vocab_size, (b, t), generator=g),
        "attention_mask": torch.ones(b, p + t, dtype=torch.int64),
        "position_ids": torch.arange(p, p + t)[None].expand(b, t).contiguous(),
    }
    inputs["attention_mask"][1, 0] = 0  # a left-padded row
    past = model.empty_past(b, p)
    for i in range(model.layers):
        inputs[f"past_key_values.{i}.key"] = torch.randn(past[2 * i].shape, generator=g)
        inputs[f"past_key_values.{i}.value"] = torch.randn(past[2 * i + 1].shape, generator=g)
    outputs = ["logits"] + [f"present.{i}.{kv}" for i in range(model.layers) for kv in ("key", "value")]
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(model.layers):
        for kv in ("key", "value"):
            axes[f"past_key_values.{i}.{kv}"] = {0: "batch_size", 2: "past_sequence_length"}
            axes[f"present.{i}.{kv}"] = {0: "batch_size", 2: "total_sequence_length"}
    path = os.path.join(out, "onnx", "model.onnx")
    export_util.export(model, inputs, outputs, axes, path)
    # A second parity case: the first step, with an empty cache.
    first = {"input_ids": inputs["input_ids"], "attention_mask": torch.ones(b, t, dtype=torch.int64),
             "position_ids": torch.arange(t)[None].expand(b, t).contiguous()}
    for i in range(model.layers):
        first[f"past_key_values.{i}.key"] = torch.zeros(b, model.kv_heads, 0, model.head_dim)
        first[f"past_key_values.{i}.value"] = torch.zeros(b, model.kv_heads, 0, model.head_dim)
    for f in os.listdir(tok_dir):
        with open(os.path.join(tok_dir, f), "rb") as src, open(os.path.join(out, f), "wb") as dst:
            dst.write(src.read())
    return [dict(name=f"{name} (cache 4)", module=model, inputs=inputs, outputs=outputs, path=path),
            dict(name=f"{name} (empty cache)", module=model, inputs=first, outputs=outputs, path=path)]


def write_configs(model: DecoderLM, out: str, name: str, vocab_size: int, eot: int, im_end: int) -> None:
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab_size,
        "n_embd": model.dim, "n_layer": model.layers, "n_head": model.heads, "n_positions": MAX_POSITIONS,
        "hidden_size": model.dim, "num_hidden_layers": model.layers, "num_attention_heads": model.heads,
        "max_position_embeddings": MAX_POSITIONS, "bos_token_id": eot, "eos_token_id": eot,
        "activation_function": "gelu", "tie_word_embeddings": True, "use_cache": True, "torch_dtype": "float32",
    }
    gen = {"bos_token_id": eot, "eos_token_id": [eot, im_end], "pad_token_id": eot, "max_length": MAX_POSITIONS,
           "max_new_tokens": 64, "do_sample": False}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)


def start(out: str, work: str, *steps: str) -> tuple[argparse.Namespace, list[str], list[str], float]:
    """The factory's LM command line (output and work folders, corpus size, training steps for each
    of `steps`, threads, seed), and the seeded training and held-out stories and chats."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=out)
    ap.add_argument("--work", default=work)
    ap.add_argument("--docs", type=int, default=40000)
    for name in steps:
        ap.add_argument(f"--{name}", type=int, default=1200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    return args, stories.corpus(args.docs, args.seed), stories.corpus(2000, args.seed + 1), time.time()


def main() -> None:
    args, docs, heldout, started = start("models", "tools/model-factory/.work/tiny-lm", "steps", "draft-steps")
    vocab, merges = byte_bpe.train(docs[:8000], 1024, SPECIALS)
    tok = byte_bpe.ByteBpe(vocab, merges, SPECIALS)
    tok_dir = os.path.join(args.work, "tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    byte_bpe.save_tokenizer_json(os.path.join(tok_dir, "tokenizer.json"), vocab, merges, SPECIALS)
    with open(os.path.join(tok_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "unk_token": None, "model_max_length": MAX_POSITIONS,
                   "add_bos_token": False, "clean_up_tokenization_spaces": False, "chat_template": stories.CHAT_TEMPLATE}, f, indent=2)
    eot = vocab["<|endoftext|>"]
    encode = lambda texts: torch.tensor([i for d in texts for i in tok.encode(d) + [eot]], dtype=torch.int64)  # noqa: E731
    stream, held = encode(docs), encode(heldout)
    log(f"vocab {len(vocab)}, {stream.numel()} training tokens, {held.numel()} held-out tokens")

    torch.manual_seed(args.seed)
    models = {n: DecoderLM(len(vocab), **cfg) for n, cfg in MODELS.items()}
    train(models["tiny-lm"], stream, args.steps, args.seed, "tiny-lm")
    train(models["tiny-lm-draft"], stream, args.draft_steps, args.seed + 1, "tiny-lm-draft")
    train_seconds = time.time() - started

    graphs = []
    for name, m in models.items():
        graphs += export(m, os.path.join(args.out, name), name, len(vocab), tok_dir)
        write_configs(m, os.path.join(args.out, name), name, len(vocab), eot, vocab["<|im_end|>"])
    parity = export_util.check_parity(graphs, args.work)
    quality = evaluate(models["tiny-lm"], models["tiny-lm-draft"], held)
    samples = {p: sample_text(models["tiny-lm"], tok, p) for p in ["Once upon a time, there was a little girl named Lily.", "<|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n"]}
    report = {"docs": args.docs, "tokens": stream.numel(), "steps": args.steps, "draft_steps": args.draft_steps,
              "train_seconds": round(train_seconds), "total_seconds": round(time.time() - started),
              "params": {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()},
              "parity": parity, "quality": quality, "samples": samples}
    with open(os.path.join(args.work, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    export_util.print_table("tiny-lm", report)


if __name__ == "__main__":
    main()
