"""Writes test/fixtures/models/sd-signatures: a miniature diffusers/optimum ONNX pipeline with
the input signatures that recent exports use and tiny-sd does not, so that Easel's pipeline is
tested against them: int64 `input_ids`, a scalar int64 `timestep`, LCM's `timestep_cond`, an
LCMScheduler config, and an fp16 UNet variant (`unet/model.fp16.onnx`) beside the fp32 one.
Its weights are random: the images mean nothing, the shapes and dtypes are the point.

    /usr/bin/python3 tools/model-factory/sd_signatures.py
"""
import json
import os
import shutil
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(__file__)
OUT = os.path.join(HERE, "..", "..", "test", "fixtures", "models", "sd-signatures")
TINY_SD = os.path.join(HERE, "..", "..", "models", "tiny-sd")
OPSET = [helper.make_opsetid("", 17)]
TEXT_LENGTH, HIDDEN, COND = 8, 16, 32


def weight(name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
    """Random weights seeded by name, so the fp16 UNet carries the fp32 one's weights."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value), name)


def save(model: onnx.ModelProto, component: str, file: str = "model.onnx") -> None:
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(OUT, component), exist_ok=True)
    onnx.save(model, os.path.join(OUT, component, file))


def model(nodes, name, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=OPSET, producer_name="easel-model-factory")


def text_encoder(vocab: int) -> onnx.ModelProto:
    return model(
        [helper.make_node("Gather", ["embedding", "input_ids"], ["last_hidden_state"])],
        "text_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", TEXT_LENGTH])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", TEXT_LENGTH, HIDDEN])],
        [weight("embedding", vocab, HIDDEN)],
    )


def unet(dtype: int) -> onnx.ModelProto:
    """out = 0.5 * sample + W1·mean(text) + W2·timestep_cond + timestep / 1000, per channel."""
    half = dtype == TensorProto.FLOAT16
    nodes = []
    names = {"sample": "sample", "ehs": "encoder_hidden_states", "cond": "timestep_cond"}
    if half:
        for key, name in names.items():
            nodes.append(helper.make_node("Cast", [name], [f"{key}32"], to=TensorProto.FLOAT))
            names[key] = f"{key}32"
    nodes += [
        helper.make_node("Cast", ["timestep"], ["t"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["t", "milli"], ["t_scaled"]),
        helper.make_node("ReduceMean", [names["ehs"]], ["text_mean"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["text_mean", "w_text"], ["text_proj"]),
        helper.make_node("Unsqueeze", ["text_proj", "hw_axes"], ["text_map"]),
        helper.make_node("MatMul", [names["cond"], "w_cond"], ["cond_proj"]),
        helper.make_node("Unsqueeze", ["cond_proj", "hw_axes"], ["cond_map"]),
        helper.make_node("Mul", [names["sample"], "half"], ["sample_half"]),
        helper.make_node("Add", ["sample_half", "text_map"], ["a"]),
        helper.make_node("Add", ["a", "cond_map"], ["b"]),
        helper.make_node("Add", ["b", "t_scaled"], ["out32" if half else "out_sample"]),
    ]
    if half:
        nodes.append(helper.make_node("Cast", ["out32"], ["out_sample"], to=TensorProto.FLOAT16))
    return model(
        nodes,
        "unet",
        [
            helper.make_tensor_value_info("sample", dtype, ["batch", 4, "height", "width"]),
            helper.make_tensor_value_info("timestep", TensorProto.INT64, []),
            helper.make_tensor_value_info("encoder_hidden_states", dtype, ["batch", TEXT_LENGTH, HIDDEN]),
            helper.make_tensor_value_info("timestep_cond", dtype, ["batch", COND]),
        ],
        [helper.make_tensor_value_info("out_sample", dtype, ["batch", 4, "height", "width"])],
        [
            weight("w_text", HIDDEN, 4, scale=0.2),
            weight("w_cond", COND, 4, scale=0.2),
            const("hw_axes", np.array([2, 3], dtype=np.int64)),
            const("half", np.float32(0.5)),
            const("milli", np.float32(0.001)),
        ],
    )


def vae_decoder() -> onnx.ModelProto:
    """A 1x1 convolution to 3 * 8 * 8 channels, then DepthToSpace: 8x upsampling, as SD's VAE."""
    return model(
        [
            helper.make_node("Conv", ["latent_sample", "w"], ["wide"]),
            helper.make_node("DepthToSpace", ["wide"], ["pixels"], blocksize=8, mode="CRD"),
            helper.make_node("Tanh", ["pixels"], ["sample"]),
        ],
        "vae_decoder",
        [helper.make_tensor_value_info("latent_sample", TensorProto.FLOAT, ["batch", 4, "height", "width"])],
        [helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", 3, "out_height", "out_width"])],
        [weight("w", 3 * 64, 4, 1, 1)],
    )


def write_json(path: str, value: dict) -> None:
    os.makedirs(os.path.dirname(os.path.join(OUT, path)), exist_ok=True)
    with open(os.path.join(OUT, path), "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for name in ["merges.txt", "special_tokens_map.json", "vocab.json"]:
        os.makedirs(os.path.join(OUT, "tokenizer"), exist_ok=True)
        shutil.copy(os.path.join(TINY_SD, "tokenizer", name), os.path.join(OUT, "tokenizer", name))
    with open(os.path.join(TINY_SD, "tokenizer", "tokenizer_config.json")) as f:
        tokenizer_config = json.load(f)
    # transformers writes this for "no limit": the text encoder's input shape decides.
    write_json("tokenizer/tokenizer_config.json", {**tokenizer_config, "model_max_length": 1000000000000000019884624838656})
    with open(os.path.join(TINY_SD, "tokenizer", "vocab.json")) as f:
        vocab = len(json.load(f))
    save(text_encoder(vocab), "text_encoder")
    save(unet(TensorProto.FLOAT), "unet")
    save(unet(TensorProto.FLOAT16), "unet", "model.fp16.onnx")
    save(vae_decoder(), "vae_decoder")
    write_json("model_index.json", {
        "_class_name": "ORTLatentConsistencyModelPipeline",
        "scheduler": ["diffusers", "LCMScheduler"],
        "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
    })
    write_json("scheduler/scheduler_config.json", {
        "_class_name": "LCMScheduler",
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "original_inference_steps": 50, "prediction_type": "epsilon",
        "set_alpha_to_one": True, "steps_offset": 1, "timestep_scaling": 10.0, "clip_sample": False,
    })
    write_json("unet/config.json", {"_class_name": "UNet2DConditionModel", "sample_size": 4, "in_channels": 4, "time_cond_proj_dim": COND})
    write_json("vae_decoder/config.json", {"_class_name": "AutoencoderKL", "latent_channels": 4, "block_out_channels": [8, 8, 8, 8], "scaling_factor": 0.18215})


if __name__ == "__main__":
    main()
