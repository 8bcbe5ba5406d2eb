"""Makes a bench-size LLM on demand: a Llama-architecture decoder with seeded random weights
(default ~100M parameters: hidden 768, 16 layers, 12 query / 4 KV heads, SwiGLU 2048, context
2048) in tiny-llama's layout and tokenizer, in every precision the benches compare:

    <out>/onnx/model.onnx        float32, in optimum's decoder layout (tiny-llama's inputs and outputs)
                                 written with ONNX Runtime's fused operators (fused_llama.py: GroupQuery-
                                 Attention, RotaryEmbedding, SkipSimplifiedLayerNormalization), checked
                                 against the plain export of the same weights; --graph plain keeps that
    <out>/onnx/model_q8.onnx     MatMulNBits, 8-bit weights, blocks of 32 (`runtime: {variant: q8}`)
    <out>/onnx/model_q4.onnx     MatMulNBits, 4-bit weights, blocks of 32 (`runtime: {variant: q4}`)
    <out>/onnx/model_int8.onnx   int8 weights per output channel, activations quantized per call
                                 (MatMulInteger: ONNX Runtime's dynamic quantization; `variant: int8`)
    <out>/gguf/model-f32.gguf    the same weights for llama.cpp, F32
    <out>/gguf/model-q8_0.gguf   and Q8_0

Nothing here is committed: it writes outside the repository (it refuses a folder inside it).
The weights mean nothing, so its text is noise; what it is for is the cost of a token at a size
users serve, where decoding reads every weight once per step and memory bandwidth bounds it.

MatMulNBits is ONNX Runtime's weight-only quantized matmul (quantize.py's matmul_nbits, ONNX
Runtime's own quantizer). The GGUF files follow llama.cpp's own conversion:
the query and key projections' rows permuted from rotate-half pairs to interleaved pairs.

    <venv>/bin/pip install torch onnx onnxruntime gguf numpy       # the local package index has them
    <venv>/bin/python tools/model-factory/bench_llama.py --out /tmp/bench-llama [--layers 16 ...]

With --from-onnx models/tiny-llama it makes no weights: it copies that model folder to --out and
adds the GGUF files of its own weights (read back from its ONNX graph; PyTorch's logits on them
must equal ONNX Runtime's), so that llama.cpp runs the same model as Easel.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import fused_llama  # noqa: E402
import tiny_lm  # noqa: E402
import tiny_llama  # noqa: E402
from quantize import matmul_nbits, quantise  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKENIZER = os.path.join(REPO, "models", "tiny-llama")


def log(msg: str) -> None:
    print(f"[bench-llama {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def vocabulary(tok_dir: str) -> dict[str, int]:
    with open(os.path.join(tok_dir, "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = dict(tj["model"]["vocab"])
    vocab.update({t["content"]: t["id"] for t in tj["added_tokens"]})
    return vocab


def permute_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a query/key projection from rotate-half order (HF Llama) to llama.cpp's interleaved pairs."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model: tiny_llama.TinyLlama, vocab: dict[str, int], positions: int, path: str, q8: bool) -> None:
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_name("easel-bench-llama")
    w.add_context_length(positions)
    w.add_embedding_length(model.dim)
    w.add_block_count(model.layers)
    w.add_feed_forward_length(model.hidden)
    w.add_head_count(model.heads)
    w.add_head_count_kv(model.kv_heads)
    w.add_rope_dimension_count(model.head_dim)
    w.add_rope_freq_base(model.rope_theta)
    w.add_layer_norm_rms_eps(model.eps)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.ALL_F32)
    # The vocabulary, for llama.cpp to load; the benches feed token ids, never text.
    by_id = {i: t for t, i in vocab.items()}
    tokens = [by_id.get(i, f"<unused{i}>") for i in range(len(vocab))]
    kinds = [gguf.TokenType.CONTROL if t in ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
             else gguf.TokenType.BYTE if t.startswith("<0x") else gguf.TokenType.NORMAL for t in tokens]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(len(tokens))])
    w.add_token_types(kinds)
    w.add_bos_token_id(vocab["<s>"])
    w.add_eos_token_id(vocab["</s>"])

    def tensor(name: str, t: torch.Tensor) -> None:
        a = t.detach().float().numpy()
        if q8 and a.ndim == 2:
            w.add_tensor(name, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, a)

    tensor("token_embd.weight", model.embed_tokens.weight)
    for i, b in enumerate(model.blocks):
        tensor(f"blk.{i}.attn_norm.weight", b.input_layernorm.weight)
        tensor(f"blk.{i}.attn_q.weight", torch.from_numpy(permute_rotary(b.q_proj.weight.detach().numpy(), model.heads)))
        tensor(f"blk.{i}.attn_k.weight", torch.from_numpy(permute_rotary(b.k_proj.weight.detach().numpy(), model.kv_heads)))
        tensor(f"blk.{i}.attn_v.weight", b.v_proj.weight)
        tensor(f"blk.{i}.attn_output.weight", b.o_proj.weight)
        tensor(f"blk.{i}.ffn_norm.weight", b.post_attention_layernorm.weight)
        tensor(f"blk.{i}.ffn_gate.weight", b.gate_proj.weight)
        tensor(f"blk.{i}.ffn_up.weight", b.up_proj.weight)
        tensor(f"blk.{i}.ffn_down.weight", b.down_proj.weight)
    tensor("output_norm.weight", model.norm.weight)
    tensor("output.weight", model.lm_head.weight)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def from_onnx(model_dir: str) -> tiny_llama.TinyLlama:
    """A Llama model folder of tiny-llama's layout as a TinyLlama with its weights: the named ones
    by name, the matmuls' (exported unnamed) in the graph's order, as the block computes them."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    model = tiny_llama.TinyLlama(c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                                 c["num_key_value_heads"], c["intermediate_size"], c["rope_theta"], c["rms_norm_eps"])
    graph = onnx.load(os.path.join(model_dir, "onnx", "model.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = {n: torch.from_numpy(a.copy()) for n, a in inits.items() if not n.startswith("onnx::")}
    matmuls = [inits[n.input[1]] for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    if len(matmuls) != len(PROJECTIONS) * model.layers + 1:
        sys.exit(f"{model_dir}: {len(matmuls)} weight matmuls, not {len(PROJECTIONS)} per block and the LM head")
    for i in range(model.layers):
        for j, p in enumerate(PROJECTIONS):
            state[f"blocks.{i}.{p}.weight"] = torch.from_numpy(matmuls[i * len(PROJECTIONS) + j].T.copy())
    state["lm_head.weight"] = torch.from_numpy(matmuls[-1].T.copy())
    model.load_state_dict(state)
    model.eval()
    # The weights are where PyTorch computes what ONNX Runtime computes.
    ids = np.array([[1] + list(range(10, 40))], dtype=np.int64)
    session = ort.InferenceSession(os.path.join(model_dir, "onnx", "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(ids.shape[1])[None]}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values."):
            feeds[i.name] = np.zeros((1, model.kv_heads, 0, model.head_dim), dtype=np.float32)
    onnx_logits = session.run(["logits"], feeds)[0]
    with torch.no_grad():
        torch_logits = model.lm_logits(torch.from_numpy(ids)).numpy()
    diff = float(np.abs(onnx_logits - torch_logits).max())
    if diff > 1e-3:
        sys.exit(f"{model_dir}: the weights read back give logits {diff} from ONNX Runtime's")
    log(f"{model_dir}: weights read back from the ONNX graph, logits within {diff:.1e} of ONNX Runtime's")
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="a folder outside the repository")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-gguf", action="store_true", help="skip the llama.cpp files")
    ap.add_argument("--graph", choices=("fused", "plain"), default="fused",
                    help="fused: ONNX Runtime's fused operators (fused_llama.py, as onnxruntime-genai writes LLMs); plain: the optimum-style export")
    ap.add_argument("--from-onnx", help="a model folder (models/tiny-llama): copy it to --out and add the GGUF of its own weights")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    if out == REPO or out.startswith(REPO + os.sep):
        sys.exit(f"--out {args.out} is inside the repository: the bench model is large and never committed")
    started = time.time()
    if args.from_onnx:
        model = from_onnx(args.from_onnx)
        shutil.copytree(args.from_onnx, out, dirs_exist_ok=True)
        with open(os.path.join(out, "config.json")) as f:
            positions = json.load(f)["max_position_embeddings"]
        vocab = vocabulary(args.from_onnx)
        write_all_gguf(model, vocab, positions, out)
        write_greedy(model, vocab, out, sum(p.numel() for p in model.parameters()))
        log(f"done in {time.time() - started:.0f}s: {out}")
        return
    torch.manual_seed(args.seed)
    vocab = vocabulary(TOKENIZER)
    model = tiny_llama.TinyLlama(len(vocab), args.dim, args.layers, args.heads, args.kv_heads, args.hidden, 10000.0, 1e-5)
    # Random weights at the scale trained ones have (std 0.02, as transformers initialises Llama).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.02)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    log(f"{params / 1e6:.1f}M parameters, vocabulary {len(vocab)}, context {args.context}")

    tok_dir = os.path.join(out, ".tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    for f in ("tokenizer.json",):
        shutil.copy(os.path.join(TOKENIZER, f), os.path.join(tok_dir, f))
    tiny_lm.export(model, out, "bench-llama", len(vocab), tok_dir)
    shutil.rmtree(tok_dir)
    if args.graph == "fused":
        plain, fused = os.path.join(out, "onnx", "model.onnx"), os.path.join(out, "onnx", "model_fused.onnx")
        fused_llama.write(model, fused, args.context)
        worst, same = fused_llama.parity(plain, fused)
        log(f"fused graph: logits within {worst:.1e} of the plain export's; 16 greedy tokens {'equal' if same else 'DIFFER'}")
        if worst > 1e-3 or not same:
            sys.exit("the fused graph does not compute what the plain export does")
        os.replace(fused, plain)
    tiny_llama.write_configs(model, out, vocab, args.context)
    with open(os.path.join(out, "easel.yaml"), "w") as f:
        f.write("# Made by tools/model-factory/bench_llama.py: random weights, for benchmarks only.\n"
                "name: bench-llama\nhandler: text-generation\nbatching:\n  batchSize: 16\n")
    log(f"float32 graph: {os.path.getsize(os.path.join(out, 'onnx', 'model.onnx')) / 1e6:.0f} MB")
    for bits in (8, 4):
        dst = os.path.join(out, "onnx", f"model_q{bits}.onnx")
        matmul_nbits(os.path.join(out, "onnx", "model.onnx"), dst, bits)
        log(f"MatMulNBits {bits}-bit graph: {os.path.getsize(dst) / 1e6:.0f} MB")
    dst = os.path.join(out, "onnx", "model_int8.onnx")
    quantise(os.path.join(out, "onnx", "model.onnx"), dst)
    log(f"int8 (MatMulInteger) graph: {os.path.getsize(dst) / 1e6:.0f} MB")
    if not args.no_gguf:
        write_all_gguf(model, vocab, args.context, out)
    write_greedy(model, vocab, out, params)
    log(f"done in {time.time() - started:.0f}s: {out}")


def write_all_gguf(model: tiny_llama.TinyLlama, vocab: dict[str, int], positions: int, out: str) -> None:
    os.makedirs(os.path.join(out, "gguf"), exist_ok=True)
    for q8, name in ((False, "model-f32.gguf"), (True, "model-q8_0.gguf")):
        write_gguf(model, vocab, positions, os.path.join(out, "gguf", name), q8)
        log(f"{name}: {os.path.getsize(os.path.join(out, 'gguf', name)) / 1e6:.0f} MB")


def write_greedy(model: tiny_llama.TinyLlama, vocab: dict[str, int], out: str, params: int) -> None:
    """The prompt and greedy tokens of the float32 model, for the benches to check llama.cpp against."""
    with torch.no_grad():
        ids = [vocab["<s>"]] + list(range(10, 26))
        for _ in range(16):
            ids.append(int(model.lm_logits(torch.tensor([ids]))[0, -1].argmax()))
    with open(os.path.join(out, "greedy.json"), "w") as f:
        json.dump({"prompt": ids[:17], "greedy": ids[17:], "params": params}, f)


if __name__ == "__main__":
    main()
