"""Writes the small ONNX graphs that Easel's own tests use (test/fixtures/models), with onnx.helper:

  add-one  y = x + 1 over a float32 vector of any length (the no-op model of bench/overhead)
  slow     y = x + 1 after `iterations` 64x64 matmuls in a Loop: a request that takes as long as asked

    /usr/bin/python3 tools/model-factory/fixtures.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "models")
OPSET = [helper.make_opsetid("", 17)]


def save(model: onnx.ModelProto, name: str) -> None:
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(ROOT, name), exist_ok=True)
    onnx.save(model, os.path.join(ROOT, name, "model.onnx"))


def add_one() -> onnx.ModelProto:
    one = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], [one])
    return helper.make_model(graph, opset_imports=OPSET, producer_name="easel-model-factory")


def slow() -> onnx.ModelProto:
    w = numpy_helper.from_array((np.eye(64, dtype=np.float32) * 0.5), "w")
    body = helper.make_graph(
        [helper.make_node("MatMul", ["acc_in", "w_outer"], ["mm"]),
         helper.make_node("Add", ["mm", "acc_in"], ["acc_sum"]),
         helper.make_node("Mul", ["acc_sum", "half"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [64, 64])],
        [numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half")])
    # The body reads the outer `w` as w_outer via Identity, since Loop bodies see outer names.
    nodes = [
        helper.make_node("Identity", ["w"], ["w_outer"]),
        helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
        helper.make_node("Constant", [], ["acc0"], value=numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), "a0")),
        helper.make_node("Loop", ["iterations", "cond", "acc0"], ["acc"], body=body),
        helper.make_node("ReduceSum", ["acc"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["x", "nothing"], ["x0"]),
        helper.make_node("Add", ["x0", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("iterations", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        [w, numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"), numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")])
    return helper.make_model(graph, opset_imports=OPSET, producer_name="easel-model-factory")


if __name__ == "__main__":
    save(add_one(), "add-one")
    save(slow(), "slow")
    print("wrote", os.path.abspath(ROOT))
