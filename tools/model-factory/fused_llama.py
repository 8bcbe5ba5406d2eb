"""A Llama decoder written straight to ONNX with ONNX Runtime's fused CPU operators, in the optimum
layout Easel serves (input_ids, attention_mask, position_ids, past_key_values.{i}.key/value in;
logits, present.{i}.key/value out), as onnxruntime-genai's model builder writes its graphs:

- GroupQueryAttention (com.microsoft) over the 4 KV heads as they are (no repeat to the query
  heads), its past and present in the same [batch, kv_heads, positions, head_dim] layout;
- RotaryEmbedding (com.microsoft) on queries and keys at each token's own position id;
- SimplifiedLayerNormalization and SkipSimplifiedLayerNormalization (the residual add and the next
  RMSNorm in one node);
- one MatMul for the query, key and value projections and one for gate and up (split after).

The attention mask becomes GroupQueryAttention's additive attention_bias (causal, and 0 where the
mask is 0), and every row's sequence length is the whole window: padding on the left and holes
are masked by the bias, as the plain graph masks them, so Easel's batch cache (left-padded rows
with holes) means the same to both. ONNX Runtime's CPU GroupQueryAttention takes several new
tokens after a past only for a batch of one: Easel runs such calls (speculative verification,
prompts after a cached prefix) row by row on a graph that has it.

A decode step is ~14 nodes a layer instead of the plain export's ~60 (rotate-half slices, the KV
heads repeated to the query heads, the mask built per layer): on a 102M model at one stream most of
the time outside the matmuls was those nodes' dispatch.
"""
import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper

MS = "com.microsoft"


def write(model, path: str, positions: int) -> None:
    """`model`: tiny_llama.TinyLlama (any size). Writes the fused graph to `path` (one file)."""
    N, KV, D, layers = model.heads, model.kv_heads, model.head_dim, model.layers
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(a, name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs) -> list[str]:
        nodes.append(h.make_node(op, inputs, outputs, name=outputs[0] if outputs[0] else f"{op}_{len(nodes)}", domain=domain, **attrs))
        return outputs

    def weight(name: str, linear) -> str:
        # MatMul takes [in, out]: nn.Linear keeps [out, in].
        return const(name, linear.weight.detach().numpy().T.copy())

    # Rotary caches: [positions, head_dim / 2].
    inv = 1.0 / model.rope_theta ** (np.arange(0, D, 2, dtype=np.float32) / D)
    freqs = np.arange(positions, dtype=np.float32)[:, None] * inv[None]
    cos, sin = const("cos_cache", np.cos(freqs).astype(np.float32)), const("sin_cache", np.sin(freqs).astype(np.float32))

    # Shapes: B, T new tokens, S = past + T positions in the window.
    const("zero_i", np.array(0, np.int64))
    const("one_i", np.array(1, np.int64))
    const("axes0", np.array([0], np.int64))
    const("axes01", np.array([0, 1], np.int64))
    const("axes12", np.array([1, 2], np.int64))
    const("idx0", np.array([0], np.int64))
    const("idx1", np.array([1], np.int64))
    node("Shape", ["input_ids"], ["ids_shape"])
    node("Gather", ["ids_shape", "idx0"], ["B1"], axis=0)
    node("Gather", ["ids_shape", "idx1"], ["T1"], axis=0)
    node("Shape", ["attention_mask"], ["mask_shape"])
    node("Gather", ["mask_shape", "idx1"], ["S1"], axis=0)
    node("Squeeze", ["S1", "axes0"], ["S"])
    node("Squeeze", ["T1", "axes0"], ["T"])
    node("Sub", ["S", "T"], ["L"])
    # The bias: key j is visible to the i-th new token when j <= L + i and the mask has j.
    node("Range", ["zero_i", "S", "one_i"], ["kpos"])
    node("Range", ["L", "S", "one_i"], ["qpos"])
    node("Unsqueeze", ["kpos", "axes0"], ["kpos_row"])
    node("Unsqueeze", ["qpos", "idx1"], ["qpos_col"])
    node("LessOrEqual", ["kpos_row", "qpos_col"], ["causal"])
    node("Unsqueeze", ["causal", "axes01"], ["causal4"])
    node("Cast", ["attention_mask"], ["mask_b"], to=TP.BOOL)
    node("Unsqueeze", ["mask_b", "axes12"], ["mask4"])
    node("And", ["causal4", "mask4"], ["allowed"])
    const("bias_on", np.array(0.0, np.float32))
    const("bias_off", np.array(-1e9, np.float32))
    node("Where", ["allowed", "bias_on", "bias_off"], ["attention_bias"])
    # Every row spans the whole window (the bias masks what it does not hold).
    node("Sub", ["S1", "idx1"], ["S_minus_1"])
    node("Expand", ["S_minus_1", "B1"], ["seqlens64"])
    node("Cast", ["seqlens64"], ["seqlens_k"], to=TP.INT32)
    node("Cast", ["S"], ["total_sequence_length"], to=TP.INT32)

    node("Gather", [const("embed_tokens", model.embed_tokens.weight.detach().numpy()), "input_ids"], ["x0"], axis=0)
    residual = "x0"
    mlp_out = None
    qkv_split = const("qkv_split", np.array([N * D, KV * D, KV * D], np.int64))
    gu_split = const("gu_split", np.array([model.hidden, model.hidden], np.int64))
    for i, blk in enumerate(model.blocks):
        p = f"l{i}"
        w_in = const(f"{p}.input_layernorm", blk.input_layernorm.weight.detach().numpy())
        if mlp_out is None:
            node("SimplifiedLayerNormalization", [residual, w_in], [f"{p}.y"], axis=-1, epsilon=model.eps, stash_type=1)
        else:
            node("SkipSimplifiedLayerNormalization", [mlp_out, residual, w_in], [f"{p}.y", "", "", f"{p}.x"], domain=MS, epsilon=model.eps)
            residual = f"{p}.x"
        qkv_w = np.concatenate([blk.q_proj.weight.detach().numpy(), blk.k_proj.weight.detach().numpy(), blk.v_proj.weight.detach().numpy()], 0).T.copy()
        node("MatMul", [f"{p}.y", const(f"{p}.qkv_proj", qkv_w)], [f"{p}.qkv"])
        node("Split", [f"{p}.qkv", qkv_split], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=-1)
        node("RotaryEmbedding", [f"{p}.q", "position_ids", cos, sin], [f"{p}.q_rot"], domain=MS, interleaved=0, num_heads=N)
        node("RotaryEmbedding", [f"{p}.k", "position_ids", cos, sin], [f"{p}.k_rot"], domain=MS, interleaved=0, num_heads=KV)
        node("GroupQueryAttention",
             [f"{p}.q_rot", f"{p}.k_rot", f"{p}.v", f"past_key_values.{i}.key", f"past_key_values.{i}.value", "seqlens_k", "total_sequence_length", "", "", "", "attention_bias"],
             [f"{p}.attn", f"present.{i}.key", f"present.{i}.value"], domain=MS, num_heads=N, kv_num_heads=KV)
        node("MatMul", [f"{p}.attn", weight(f"{p}.o_proj", blk.o_proj)], [f"{p}.o"])
        w_post = const(f"{p}.post_attention_layernorm", blk.post_attention_layernorm.weight.detach().numpy())
        node("SkipSimplifiedLayerNormalization", [f"{p}.o", residual, w_post], [f"{p}.y2", "", "", f"{p}.x2"], domain=MS, epsilon=model.eps)
        residual = f"{p}.x2"
        gu_w = np.concatenate([blk.gate_proj.weight.detach().numpy(), blk.up_proj.weight.detach().numpy()], 0).T.copy()
        node("MatMul", [f"{p}.y2", const(f"{p}.gate_up_proj", gu_w)], [f"{p}.gu"])
        node("Split", [f"{p}.gu", gu_split], [f"{p}.g", f"{p}.u"], axis=-1)
        node("Sigmoid", [f"{p}.g"], [f"{p}.g_sig"])
        node("Mul", [f"{p}.g", f"{p}.g_sig"], [f"{p}.silu"])
        node("Mul", [f"{p}.silu", f"{p}.u"], [f"{p}.m"])
        node("MatMul", [f"{p}.m", weight(f"{p}.down_proj", blk.down_proj)], [f"{p}.mlp"])
        mlp_out = f"{p}.mlp"
    node("SkipSimplifiedLayerNormalization", [mlp_out, residual, const("norm", model.norm.weight.detach().numpy())], ["final", "", "", ""], domain=MS, epsilon=model.eps)
    node("MatMul", ["final", weight("lm_head", model.lm_head)], ["logits"])

    vocab = model.lm_head.weight.shape[0]
    inputs = [h.make_tensor_value_info("input_ids", TP.INT64, ["batch_size", "sequence_length"]),
              h.make_tensor_value_info("attention_mask", TP.INT64, ["batch_size", "total_sequence_length"]),
              h.make_tensor_value_info("position_ids", TP.INT64, ["batch_size", "sequence_length"])]
    outputs = [h.make_tensor_value_info("logits", TP.FLOAT, ["batch_size", "sequence_length", vocab])]
    for i in range(layers):
        for kv in ("key", "value"):
            inputs.append(h.make_tensor_value_info(f"past_key_values.{i}.{kv}", TP.FLOAT, ["batch_size", KV, "past_sequence_length", D]))
            outputs.append(h.make_tensor_value_info(f"present.{i}.{kv}", TP.FLOAT, ["batch_size", KV, "total_sequence_length", D]))
    graph = h.make_graph(nodes, "fused-llama", inputs, outputs, initializer=inits)
    # IR 10 and opset 17: what ONNX Runtime 1.30 reads (the onnx package would write a newer IR).
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid(MS, 1)], ir_version=10, producer_name="easel-model-factory")
    onnx.save(m, path)


def parity(plain: str, fused: str) -> tuple[float, bool]:
    """The two graphs on a left-padded batch of two prompts, then a step with a hole in one row:
    the largest logit difference where a position sees something, and whether 16 greedy tokens
    after a prompt agree."""
    import onnxruntime as ort
    from decode_speed import cache_shape, decoder_run as run

    sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (plain, fused)]
    layers, kv, d = cache_shape(sessions[0])

    empty = [np.zeros((2, kv, 0, d), np.float32)] * (2 * layers)
    ids = np.array([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]], np.int64)
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)
    pos = np.array([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]], np.int64)
    outs = [run(s, ids, mask, pos, empty) for s in sessions]
    worst = max(float(np.abs(outs[0][0][0, 2:] - outs[1][0][0, 2:]).max()), float(np.abs(outs[0][0][1] - outs[1][0][1]).max()))
    step_mask = np.array([[0, 0, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1]], np.int64)  # a hole at position 3 of row 0
    outs = [run(s, np.array([[13], [14]], np.int64), step_mask, np.array([[2], [5]], np.int64), o[1]) for s, o in zip(sessions, outs)]
    worst = max(worst, float(np.abs(outs[0][0] - outs[1][0]).max()))
    greedy = []
    for s in sessions:
        seq = [1] + list(range(10, 26))
        for _ in range(16):
            n = len(seq)
            logits, _ = run(s, np.array([seq], np.int64), np.ones((1, n), np.int64), np.arange(n)[None], [a[:1] for a in empty])
            seq.append(int(logits[0, -1].argmax()))
        greedy.append(seq)
    return worst, greedy[0] == greedy[1]


def main() -> None:
    """The fused graph of a model folder in tiny-llama's layout, with its configs and tokenizer:
    what Easel's tests serve beside the plain graph (test/fixtures/models/tiny-llama-fused)."""
    import argparse
    import json
    import os
    import shutil

    import bench_llama

    ap = argparse.ArgumentParser()
    ap.add_argument("--from-onnx", required=True, help="a model folder in tiny-llama's layout (models/tiny-llama)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="tiny-llama-fused")
    args = ap.parse_args()
    model = bench_llama.from_onnx(args.from_onnx)
    os.makedirs(os.path.join(args.out, "onnx"), exist_ok=True)
    for f in os.listdir(args.from_onnx):
        if os.path.isfile(os.path.join(args.from_onnx, f)) and f not in ("easel.yaml", "MODEL_CARD.md", "README.md"):
            shutil.copy(os.path.join(args.from_onnx, f), os.path.join(args.out, f))
    with open(os.path.join(args.from_onnx, "config.json")) as f:
        positions = json.load(f)["max_position_embeddings"]
    dst = os.path.join(args.out, "onnx", "model.onnx")
    write(model, dst, positions)
    with open(os.path.join(args.out, "easel.yaml"), "w") as f:
        f.write(f"# Made by tools/model-factory/fused_llama.py from {args.from_onnx}: its weights in ONNX Runtime's fused operators.\n"
                f"name: {args.name}\nhandler: text-generation\nbatching:\n  batchSize: 16\n")
    worst, same = parity(os.path.join(args.from_onnx, "onnx", "model.onnx"), dst)
    print(f"{dst}: {os.path.getsize(dst) / 1e6:.1f} MB; logits within {worst:.1e} of the plain graph's; 16 greedy tokens {'equal' if same else 'DIFFER'}")
    if worst > 1e-3 or not same:
        raise SystemExit("the fused graph does not compute what the plain one does")


if __name__ == "__main__":
    main()
