"""Builds models/tiny-llama: a tiny Llama-architecture decoder (RoPE, RMSNorm, grouped-query
attention, SwiGLU, untied output head) with a SentencePiece-style tokenizer (`▁` words, byte
fallback, `<s>` BOS), trained on the same generated stories and chats as tiny-lm and exported in
optimum's decoder layout (input_ids, attention_mask, position_ids, past_key_values.{i}.key/.value
→ logits, present.{i}.key/.value; keys and values have the 2 KV heads, not the 4 query heads).

It is the pipeline's second architecture: nothing in Easel is shaped around GPT-2.

    /usr/bin/python3 tools/model-factory/tiny_llama.py [--steps N]
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import export_util  # noqa: E402
import sp_bpe  # noqa: E402
import stories  # noqa: E402
import tiny_lm  # noqa: E402
import tool_chats  # noqa: E402

ADDED = ["<|im_start|>", "<|im_end|>"]
# A chat that offers all four functions is ~250 tokens: a 1024-token context holds a few turns of
# one. Training windows are 256 tokens (512 ran at a third of the speed on 2 cores).
MAX_POSITIONS = 1024
WINDOW, BATCH = 256, 16  # tokens per step as tiny-lm's 32 windows of 128
CONFIG = dict(dim=128, layers=4, heads=4, kv_heads=2, hidden=352, rope_theta=10000.0, eps=1e-5)
CHAT_TEMPLATE = "{{ bos_token }}" + stories.CHAT_TEMPLATE


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, hidden: int, eps: float):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.q_proj = nn.Linear(dim, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, dim, bias=False)
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        b, t, _ = x.shape
        h, kvh, hd = self.heads, self.kv_heads, self.head_dim
        y = self.input_layernorm(x)
        q = self.q_proj(y).reshape(b, t, h, hd).transpose(1, 2)
        k = self.k_proj(y).reshape(b, t, kvh, hd).transpose(1, 2)
        v = self.v_proj(y).reshape(b, t, kvh, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        # Grouped-query attention: each KV head serves heads // kv_heads query heads.
        total = k.shape[2]
        kk = k[:, :, None].expand(b, kvh, h // kvh, total, hd).reshape(b, h, total, hd)
        vv = v[:, :, None].expand(b, kvh, h // kvh, total, hd).reshape(b, h, total, hd)
        att = ((q @ kk.transpose(-1, -2)) * hd**-0.5 + bias).softmax(-1)
        x = x + self.o_proj((att @ vv).transpose(1, 2).reshape(b, t, h * hd))
        y = self.post_attention_layernorm(x)
        x = x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))
        return x, k, v


class TinyLlama(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, kv_heads: int, hidden: int, rope_theta: float, eps: float):
        super().__init__()
        self.dim, self.layers, self.heads, self.kv_heads, self.head_dim, self.hidden = dim, layers, heads, kv_heads, dim // heads, hidden
        self.rope_theta, self.eps = rope_theta, eps
        self.embed_tokens = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, kv_heads, hidden, eps) for _ in range(layers))
        self.norm = RMSNorm(dim, eps)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        self.register_buffer("inv_freq", 1.0 / rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim), persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        t = input_ids.shape[1]
        x = self.embed_tokens(input_ids)
        freqs = position_ids[:, None, :, None].float() * self.inv_freq  # [b, 1, t, hd/2]
        angles = torch.cat([freqs, freqs], dim=-1)
        cos, sin = angles.cos(), angles.sin()
        bias = tiny_lm.attention_bias(attention_mask, t)
        presents = []
        for i, blk in enumerate(self.blocks):
            x, k, v = blk(x, cos, sin, bias, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return (self.lm_head(self.norm(x)), *presents)

    def empty_past(self, batch: int, length: int = 0):
        return [torch.zeros(batch, self.kv_heads, length, self.head_dim) for _ in range(2 * self.layers)]

    def lm_logits(self, ids):
        b, t = ids.shape
        return self(ids, torch.ones(b, t, dtype=torch.int64), torch.arange(t)[None].expand(b, t), *self.empty_past(b))[0]


def write_configs(model: TinyLlama, out: str, vocab: dict[str, int], positions: int = MAX_POSITIONS) -> None:
    bos, eos, im_end = vocab[sp_bpe.BOS], vocab[sp_bpe.EOS], vocab["<|im_end|>"]
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": len(vocab),
        "hidden_size": model.dim, "intermediate_size": model.hidden, "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads, "num_key_value_heads": model.kv_heads, "head_dim": model.head_dim,
        "max_position_embeddings": positions, "rms_norm_eps": model.eps, "rope_theta": model.rope_theta,
        "rope_scaling": None, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": None, "tie_word_embeddings": False,
        "use_cache": True, "torch_dtype": "float32",
    }
    gen = {"bos_token_id": bos, "eos_token_id": [eos, im_end], "max_length": positions, "max_new_tokens": 64, "do_sample": False}
    tok_config = {
        "tokenizer_class": "LlamaTokenizerFast", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "bos_token": sp_bpe.BOS, "eos_token": sp_bpe.EOS, "unk_token": sp_bpe.UNK, "pad_token": None,
        "model_max_length": positions, "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
    }
    for name, value in (("config.json", config), ("generation_config.json", gen), ("tokenizer_config.json", tok_config)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(value, f, indent=2)


def tokenizer_parity(tok: sp_bpe.SpBpe, model_dir: str, texts: list[str], work: str) -> dict:
    """Encodes texts here and with @huggingface/tokenizers (what Easel loads): the ids must agree."""
    path = os.path.join(work, "tokenizer-parity.json")
    with open(path, "w") as f:
        json.dump([{"text": t, "ids": tok.encode(t, add_bos=True)} for t in texts], f)
    script = os.path.join(os.path.dirname(__file__), "tokenizer_parity.mjs")
    res = subprocess.run(["node", script, model_dir, path], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


@torch.no_grad()
def evaluate(model: TinyLlama, stream: torch.Tensor, chars_per_token: float) -> dict:
    g = torch.Generator().manual_seed(99)
    nll = n = 0
    for _ in range(20):
        x, y = tiny_lm.batches(stream, 16, g)
        nll += F.cross_entropy(model.lm_logits(x).flatten(0, 1), y.flatten(), reduction="sum").item()
        n += y.numel()
    ids, mask, pos, past = torch.tensor([[5]]), torch.ones(1, 65, dtype=torch.int64), torch.tensor([[64]]), model.empty_past(1, 64)
    for _ in range(20):
        model(ids, mask, pos, *past)
    t0 = time.perf_counter()
    for _ in range(200):
        model(ids, mask, pos, *past)
    return {"held-out perplexity (per token)": round(math.exp(nll / n), 3),
            "held-out bits per character": round(nll / n / math.log(2) / chars_per_token, 4),
            "characters per token": round(chars_per_token, 3),
            "ms per token (torch, cache 64)": round((time.perf_counter() - t0) / 200 * 1000, 3)}


def render_chats(chats: list[dict], work: str) -> list[str]:
    """The chats rendered by chat_render.mjs: the chat template through @huggingface/jinja, as Easel renders it."""
    path = os.path.join(work, "chats.json")
    with open(path, "w") as f:
        json.dump({"template": stories.CHAT_TEMPLATE, "chats": chats}, f)
    script = os.path.join(os.path.dirname(__file__), "chat_render.mjs")
    return json.loads(subprocess.run(["node", script, path], capture_output=True, text=True, check=True).stdout)


@torch.no_grad()
def tool_accuracy(model: TinyLlama, tok: sp_bpe.SpBpe, stops: set[int], work: str, n: int = 300) -> dict:
    """Greedy answers, unconstrained, to held-out asks (cities and number pairs no training chat
    has) with the functions offered in the system turn: whether the model calls the function the
    ask needs, with the right arguments, and answers in text when no offered function fits."""
    rng = random.Random(12345)
    cases = [tool_chats.example(rng, heldout=True) for _ in range(n)]
    prompts = render_chats([{"messages": c["messages"][:1], "tools": c["tools"], "add_generation_prompt": True} for c in cases], work)
    counts = {"call": 0, "call right": 0, "args right": 0, "text": 0, "text right": 0}
    for case, prompt in zip(cases, prompts):
        out = sample_text(model, tok, prompt, True, stops, 40)
        m = re.match(r"<tool_call>(.*)</tool_call>", out)
        try:
            call = json.loads(m.group(1)) if m else None
        except ValueError:
            call = None
        if case["expect"]:
            counts["call"] += 1
            if call and call.get("name") == case["expect"]:
                counts["call right"] += 1
                counts["args right"] += call.get("arguments") == case["arguments"]
        else:
            counts["text"] += 1
            counts["text right"] += "<tool_call>" not in out
    return {
        "held-out asks that need an offered function": counts["call"],
        "... the right function called": round(counts["call right"] / counts["call"], 3),
        "... the right function with the right arguments": round(counts["args right"] / counts["call"], 3),
        "held-out asks no offered function fits": counts["text"],
        "... answered in text": round(counts["text right"] / counts["text"], 3),
    }


@torch.no_grad()
def sample_text(model: TinyLlama, tok: sp_bpe.SpBpe, prompt: str, add_bos: bool, stops: set[int], n: int = 48) -> str:
    ids = tok.encode(prompt, add_bos=add_bos)
    start = len(ids)
    for _ in range(n):
        nxt = int(model.lm_logits(torch.tensor([ids]))[0, -1].argmax())
        if nxt in stops:
            break
        ids.append(nxt)
    return tok.decode(ids[start:])


def main() -> None:
    args, docs, heldout, started = tiny_lm.start("models/tiny-llama", "tools/model-factory/.work/tiny-llama", "steps")
    # Tool-use chats among the stories and chats (tool_chats.py), a quarter of the documents.
    rng = random.Random(args.seed + 7)
    tool_docs = render_chats([tool_chats.example(rng) for _ in range(len(docs) // 3)], args.work)
    docs = docs + tool_docs
    random.Random(args.seed + 8).shuffle(docs)
    vocab, merges = sp_bpe.train(docs[:8000], 1024, ADDED)
    tok = sp_bpe.SpBpe(vocab, merges, ADDED)
    tok_dir = os.path.join(args.work, "tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    sp_bpe.save_tokenizer_json(os.path.join(tok_dir, "tokenizer.json"), vocab, merges, ADDED)
    eos = vocab[sp_bpe.EOS]
    # Each document: <s> text </s>, as Llama is trained.
    encode = lambda texts: torch.tensor([i for d in texts for i in tok.encode(d) + [eos]], dtype=torch.int64)  # noqa: E731
    stream, held = encode(docs), encode(heldout)
    chars_per_token = sum(len(d) for d in heldout) / held.numel()
    tiny_lm.log(f"tiny-llama: vocab {len(vocab)}, {stream.numel()} training tokens, {held.numel()} held-out tokens")

    torch.manual_seed(args.seed)
    model = TinyLlama(len(vocab), **CONFIG)
    tiny_lm.train(model, stream, args.steps, args.seed, "tiny-llama", BATCH, WINDOW)
    train_seconds = time.time() - started

    graphs = tiny_lm.export(model, args.out, "tiny-llama", len(vocab), tok_dir)
    write_configs(model, args.out, vocab)
    parity = export_util.check_parity(graphs, args.work)
    parity.update(tokenizer_parity(tok, args.out, heldout[:500] + ["  two  spaces", "café ☕ naïve", "tabs\tand\nnewlines", CHAT_TEMPLATE], args.work))
    quality = evaluate(model, held, chars_per_token)
    stops = {eos, vocab["<|im_end|>"]}
    quality.update(tool_accuracy(model, tok, stops, args.work))
    samples = {
        "Once upon a time, there was a little girl named Lily.": sample_text(model, tok, "Once upon a time, there was a little girl named Lily.", True, stops),
        "(chat) What color is the sky?": sample_text(model, tok, "<s><|im_start|>user\nWhat color is the sky?<|im_end|>\n<|im_start|>assistant\n", False, stops),
    }
    report = {"docs": args.docs, "tool_docs": len(tool_docs), "tokens": stream.numel(), "steps": args.steps, "vocab": len(vocab), "config": CONFIG,
              "train_seconds": round(train_seconds), "total_seconds": round(time.time() - started),
              "params": sum(p.numel() for p in model.parameters()), "parity": parity, "quality": quality, "samples": samples}
    with open(os.path.join(args.work, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    export_util.print_table("tiny-llama", report)


if __name__ == "__main__":
    main()
