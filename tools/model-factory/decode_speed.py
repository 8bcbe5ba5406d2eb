"""Raw ONNX Runtime decode steps of LLM graphs in the optimum layout, side by side: a prompt of 32
tokens for each of B rows, then 64 one-token steps with the presents fed back; tokens/s of the
steps alone (no prefill), interleaved over rounds, medians. For comparing graphs of the same
weights (bench_llama.py's fused graph and its --graph plain export) without the rest of the bench.

    <venv>/bin/python tools/model-factory/decode_speed.py --rows 1,16 --threads 1,2 \\
        /tmp/bench-llama-plain/onnx/model_q4.onnx /tmp/bench-llama/onnx/model_q4.onnx
"""
import argparse
import time

import numpy as np
import onnxruntime as ort


def cache_shape(session: ort.InferenceSession) -> tuple[int, int, int]:
    """A decoder graph's layers, KV heads and head size, from its past_key_values inputs."""
    inputs = {i.name: i for i in session.get_inputs()}
    shape = inputs["past_key_values.0.key"].shape
    return sum(1 for n in inputs if n.startswith("past_key_values") and n.endswith(".key")), shape[1], shape[3]


def decoder_run(session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list) -> tuple[np.ndarray, list]:
    """One call of a decoder in the optimum layout (past: keys and values by layer, in turn): its logits and presents."""
    feeds = {"input_ids": ids, "attention_mask": mask}
    if any(i.name == "position_ids" for i in session.get_inputs()):
        feeds["position_ids"] = positions
    for i in range(len(past) // 2):
        feeds[f"past_key_values.{i}.key"], feeds[f"past_key_values.{i}.value"] = past[2 * i], past[2 * i + 1]
    out = session.run(None, feeds)
    return out[0], out[1:]


def tokens_per_second(session: ort.InferenceSession, rows: int, steps: int = 64) -> float:
    layers, heads, dim = cache_shape(session)

    def run(ids, past, at):
        t = ids.shape[1]
        return decoder_run(session, ids, np.ones((rows, at + t), np.int64), np.tile(np.arange(at, at + t, dtype=np.int64), (rows, 1)), past)[1]

    past = run(np.ones((rows, 32), np.int64), [np.zeros((rows, heads, 0, dim), np.float32)] * (2 * layers), 0)
    started = time.perf_counter()
    for i in range(steps):
        past = run(np.ones((rows, 1), np.int64), past, 32 + i)
    return rows * steps / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--rows", default="1,16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for rows in map(int, args.rows.split(",")):
        for threads in map(int, args.threads.split(",")):
            results: dict[str, list[float]] = {g: [] for g in args.graphs}
            for _ in range(args.rounds):
                for g in args.graphs:
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = threads
                    results[g].append(tokens_per_second(ort.InferenceSession(g, options, providers=["CPUExecutionProvider"]), rows))
            print(f"{rows} rows, {threads} thread(s): " + "; ".join(f"{g} {sorted(r)[len(r) // 2]:.1f} tokens/s" for g, r in results.items()), flush=True)


if __name__ == "__main__":
    main()
