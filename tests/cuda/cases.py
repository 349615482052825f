"""One model per GPU operator family (SOFIE's GPU table: Gemm, Conv/ConvTranspose 1-3D, activations, pooling,
BatchNorm/LayerNorm, binary/unary ops, Reshape/Flatten/Concat/Reduce/Gather/Transpose/Slice/Squeeze/Unsqueeze;
Split, which the transformer exports need), shared by the nvcc compile check (CI, no GPU) and the numerical GPU
tests against onnxruntime."""
from __future__ import annotations

import zlib

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ..util import Case, Cases, rand


def _cases() -> Cases:
    c = Cases(opset=21)
    x4 = rand(2, 3, 9, 9, seed=1)
    # Gemm / MatMul
    c.add("gemm_bias_t", "Gemm", {"A": rand(5, 7, seed=2), "B": rand(6, 7, seed=3), "C": rand(6, seed=4)},
          {"transB": 1, "alpha": 0.5, "beta": 2.0}, init=("B", "C"), oracle="ort")
    c.add("gemm_ta_cmat", "Gemm", {"A": rand(7, 5, seed=5), "B": rand(7, 6, seed=6), "C": rand(5, 1, seed=7)},
          {"transA": 1}, oracle="ort")
    c.add("matmul_batched", "MatMul", {"A": rand(2, 3, 4, 5, seed=8), "B": rand(2, 3, 5, 6, seed=9)}, oracle="ort")
    c.add("matmul_bcast", "MatMul", {"A": rand(2, 1, 4, 5, seed=10), "B": rand(3, 5, 6, seed=11)}, oracle="ort")
    c.add("matmul_shared_b", "MatMul", {"A": rand(3, 4, 5, seed=12), "B": rand(5, 6, seed=13)}, init=("B",),
          oracle="ort")
    # Conv 1-3D, strides, pads, dilations, groups
    c.add("conv1d", "Conv", {"X": rand(2, 3, 17, seed=14), "W": rand(4, 3, 3, seed=15), "B": rand(4, seed=16)},
          {"pads": [1, 2], "strides": [2]}, init=("W", "B"), oracle="ort")
    c.add("conv2d", "Conv", {"X": x4, "W": rand(5, 3, 3, 3, seed=17), "B": rand(5, seed=18)},
          {"pads": [1, 1, 1, 1], "dilations": [2, 1]}, init=("W", "B"), oracle="ort")
    c.add("conv2d_pointwise", "Conv", {"X": x4, "W": rand(4, 3, 1, 1, seed=19)}, init=("W",), oracle="ort")
    c.add("conv2d_group", "Conv", {"X": rand(2, 4, 8, 8, seed=20), "W": rand(6, 2, 3, 3, seed=21)},
          {"group": 2, "strides": [2, 2], "auto_pad": "SAME_UPPER"}, init=("W",), oracle="ort")
    c.add("conv3d", "Conv", {"X": rand(1, 2, 5, 6, 7, seed=22), "W": rand(3, 2, 2, 3, 3, seed=23)},
          {"pads": [0, 1, 1, 1, 0, 1]}, init=("W",), oracle="ort")
    c.add("convt1d", "ConvTranspose", {"X": rand(2, 3, 7, seed=24), "W": rand(3, 2, 4, seed=25)},
          {"strides": [2], "pads": [1, 0]}, init=("W",), oracle="ort")
    c.add("convt2d", "ConvTranspose", {"X": rand(1, 4, 5, 5, seed=26), "W": rand(4, 3, 3, 3, seed=27),
                                       "B": rand(6, seed=28)},
          {"group": 2, "strides": [2, 2], "output_padding": [1, 0], "pads": [1, 1, 0, 0]}, init=("W", "B"),
          oracle="ort")
    c.add("convt3d", "ConvTranspose", {"X": rand(1, 2, 3, 4, 3, seed=29), "W": rand(2, 2, 2, 2, 2, seed=30)},
          {"strides": [1, 2, 1], "dilations": [2, 1, 1]}, init=("W",), oracle="ort")
    # activations and unary math
    for op, attrs in [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("Tanh", {}), ("Elu", {}),
                      ("Selu", {}), ("Softplus", {}), ("HardSigmoid", {}), ("Gelu", {}), ("Exp", {}), ("Abs", {}),
                      ("Neg", {}), ("Sqrt", {}), ("Erf", {}), ("Floor", {}), ("Round", {})]:
        lo = 0.0 if op == "Sqrt" else -3.0
        c.add(f"unary_{op.lower()}", op, {"X": rand(3, 40, seed=31, low=lo, high=3.0)}, attrs, oracle="ort")
    c.add("clip", "Clip", {"X": rand(4, 9, seed=32), "lo": np.float32(-0.3), "hi": np.float32(0.5)},
          init=("lo", "hi"), oracle="ort")
    # binary ops with broadcasting, variadic, comparisons, Where
    c.add("add_bcast", "Add", {"A": rand(2, 3, 4, seed=33), "B": rand(3, 1, seed=34)}, oracle="ort")
    c.add("mul_scalar", "Mul", {"A": rand(2, 3, 4, seed=35), "B": rand(1, seed=36)}, oracle="ort")
    c.add("div_bcast", "Div", {"A": rand(4, 1, 5, seed=37), "B": rand(3, 1, low=0.5, high=2.0, seed=38)},
          oracle="ort")
    c.add("sub_int", "Sub", {"A": np.arange(12, dtype=np.int64).reshape(3, 4), "B": np.arange(4, dtype=np.int64)},
          oracle="ort")
    c.add("pow", "Pow", {"X": rand(3, 4, low=0.1, high=2.0, seed=39), "Y": rand(4, seed=40)}, oracle="ort")
    c.add("max3", "Max", {"a": rand(2, 3, seed=41), "b": rand(3, seed=42), "c": rand(2, 1, seed=43)}, oracle="ort")
    c.add("greater", "Greater", {"A": rand(3, 4, seed=44), "B": rand(4, seed=45)}, oracle="ort")
    c.add("where", "Where", {"C": rand(3, 4, seed=46) > 0, "X": rand(3, 4, seed=47), "Y": rand(4, seed=48)},
          oracle="ort")
    # pooling
    c.add("maxpool2d", "MaxPool", {"X": x4}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
          oracle="ort")
    c.add("maxpool1d_ceil", "MaxPool", {"X": rand(2, 3, 10, seed=49)}, {"kernel_shape": [3], "strides": [2],
                                                                        "ceil_mode": 1}, oracle="ort")
    c.add("avgpool2d_pad", "AveragePool", {"X": x4}, {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1],
                                                       "count_include_pad": 1}, oracle="ort")
    c.add("avgpool3d", "AveragePool", {"X": rand(1, 2, 5, 6, 4, seed=50)}, {"kernel_shape": [2, 2, 2],
                                                                            "strides": [2, 2, 2]}, oracle="ort")
    c.add("globalavgpool", "GlobalAveragePool", {"X": x4}, oracle="ort")
    c.add("globalmaxpool", "GlobalMaxPool", {"X": x4}, oracle="ort")
    # normalizations, softmax
    c.add("batchnorm", "BatchNormalization", {"X": x4, "s": rand(3, seed=51), "b": rand(3, seed=52),
                                              "m": rand(3, seed=53), "v": rand(3, low=0.5, high=1.5, seed=54)},
          init=("s", "b", "m", "v"), oracle="ort")
    c.add("layernorm", "LayerNormalization", {"X": rand(2, 5, 8, seed=55), "S": rand(8, seed=56),
                                              "B": rand(8, seed=57)}, {"axis": -1}, init=("S", "B"), oracle="ort")
    c.add("softmax", "Softmax", {"X": rand(2, 5, 7, seed=58)}, {"axis": 1}, oracle="ort")
    c.add("logsoftmax", "LogSoftmax", {"X": rand(3, 11, seed=59)}, oracle="ort")
    # layout: Reshape, Flatten, Concat, Gather, Transpose, Slice, Squeeze, Unsqueeze, Cast; reductions
    c.add("reshape", "Reshape", {"X": rand(2, 3, 4, seed=60), "shape": np.array([4, -1], np.int64)},
          init=("shape",), oracle="ort")
    c.add("flatten", "Flatten", {"X": rand(2, 3, 4, seed=61)}, {"axis": 2}, oracle="ort")
    c.add("concat", "Concat", {"a": rand(2, 3, 4, seed=62), "b": rand(2, 1, 4, seed=63), "c": rand(2, 2, 4, seed=64)},
          {"axis": 1}, oracle="ort")
    c.add("gather", "Gather", {"X": rand(5, 4, 3, seed=65), "I": np.array([[0, -1], [3, 2]], np.int64)},
          {"axis": 1}, oracle="ort")
    c.add("transpose", "Transpose", {"X": rand(2, 3, 4, 5, seed=66)}, {"perm": [0, 3, 1, 2]}, oracle="ort")
    c.add("slice", "Slice", {"X": rand(6, 8, seed=67), "s": np.array([1, -1], np.int64),
                             "e": np.array([5, 0], np.int64), "a": np.array([0, 1], np.int64),
                             "st": np.array([2, -2], np.int64)}, init=("s", "e", "a", "st"), oracle="ort")
    c.add("squeeze", "Squeeze", {"X": rand(3, 1, 4, seed=68), "axes": np.array([1], np.int64)}, init=("axes",),
          oracle="ort")
    c.add("unsqueeze", "Unsqueeze", {"X": rand(3, 4, seed=69), "axes": np.array([0, 3], np.int64)},
          init=("axes",), oracle="ort")
    c.add("split", "Split", {"X": rand(2, 7, 4, seed=72), "split": np.array([2, 5], np.int64)}, {"axis": 1},
          init=("split",), n_outputs=2, oracle="ort")
    c.add("split_equal_last", "Split", {"X": rand(3, 2, 9, seed=73)}, {"axis": -1, "num_outputs": 3}, n_outputs=3,
          oracle="ort")
    c.add("cast", "Cast", {"X": rand(3, 4, low=-5, high=5, seed=70)}, {"to": TensorProto.INT32}, oracle="ort")
    for op in ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceL2"]:
        c.add(f"{op.lower()}", op, {"X": rand(3, 4, 5, seed=71), "axes": np.array([0, 2], np.int64)},
              {"keepdims": 0}, init=("axes",), oracle="ort")
    return c


def _dense(id_, *, matmul: bool, a_shape, n: int, bias_shape=None, act=None, trans_b=False, alpha=1.0, beta=1.0,
           c_input=False, epilogue=None, opset=21) -> Case:
    """A product then a bias (Gemm's C, or an Add after a MatMul) then an activation node, as exports write
    them: the CUDA passes fuse what they can, ops/gemm.py's table picks a cuBLASLt epilogue or the cuBLAS path.
    `epilogue`: the cublasLtEpilogue_t the generated code should name (None: the cuBLAS path only)."""
    k = a_shape[-1]
    rng = np.random.default_rng(zlib.crc32(id_.encode()))
    w = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W")]
    inputs = {"A": rng.uniform(-1, 1, a_shape).astype(np.float32)}
    vin = [helper.make_tensor_value_info("A", TensorProto.FLOAT, list(a_shape))]
    nodes, y = [], "P"
    if bias_shape is not None:
        c = rng.uniform(-1, 1, bias_shape).astype(np.float32)
        if c_input:
            inputs["C"] = c
            vin.append(helper.make_tensor_value_info("C", TensorProto.FLOAT, list(bias_shape)))
        else:
            inits.append(numpy_helper.from_array(c, "C"))
    if matmul:
        nodes.append(helper.make_node("MatMul", ["A", "W"], ["P"]))
        if bias_shape is not None:
            nodes.append(helper.make_node("Add", ["P", "C"], ["Q"]))
            y = "Q"
    else:
        ins = ["A", "W"] + (["C"] if bias_shape is not None else [])
        nodes.append(helper.make_node("Gemm", ins, ["P"], transB=int(trans_b), alpha=alpha, beta=beta))
    if act is not None:
        kind, attrs = act
        nodes.append(helper.make_node(kind, [y], ["Y"], **attrs))
        y = "Y"
    out_shape = list(a_shape[:-1]) + [n]
    g = helper.make_graph(nodes, id_, vin, [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    case = Case(id_, m, inputs, oracle="ort")
    case.epilogue = epilogue
    return case


def _epilogue_cases() -> list:
    """Products with a bias and / or activation: each cuBLASLt epilogue of ops/gemm.py's EPILOGUES, and cases the
    table sends to the cuBLAS path (other activations, exact Gelu, beta != 1, a [M, 1] C, a batch-varying B)."""
    tanh = ("Gelu", {"approximate": "tanh"})
    return [
        _dense("ep_gemm_bias", matmul=False, a_shape=(6, 9), n=5, bias_shape=(5,), trans_b=True, alpha=0.5,
               epilogue="CUBLASLT_EPILOGUE_BIAS"),
        _dense("ep_gemm_relu_bias", matmul=False, a_shape=(7, 4), n=6, bias_shape=(1, 6), act=("Relu", {}),
               epilogue="CUBLASLT_EPILOGUE_RELU_BIAS"),
        _dense("ep_gemm_gelu_tanh_bias", matmul=False, a_shape=(5, 8), n=7, bias_shape=(7,), act=tanh,
               epilogue="CUBLASLT_EPILOGUE_GELU_BIAS"),
        _dense("ep_gemm_relu_bias_input", matmul=False, a_shape=(3, 8), n=4, bias_shape=(4,), act=("Relu", {}),
               c_input=True, epilogue="CUBLASLT_EPILOGUE_RELU_BIAS"),
        _dense("ep_matmul3d_bias", matmul=True, a_shape=(2, 3, 8), n=6, bias_shape=(6,),
               epilogue="CUBLASLT_EPILOGUE_BIAS"),
        _dense("ep_matmul3d_bias_gelu_tanh", matmul=True, a_shape=(2, 5, 8), n=12, bias_shape=(1, 1, 12),
               act=tanh, epilogue="CUBLASLT_EPILOGUE_GELU_BIAS"),
        _dense("ep_matmul3d_relu", matmul=True, a_shape=(3, 2, 5), n=4, act=("Relu", {}),
               epilogue="CUBLASLT_EPILOGUE_RELU"),
        _dense("ep_matmul2d_gelu_tanh", matmul=True, a_shape=(4, 5), n=3, act=tanh,
               epilogue="CUBLASLT_EPILOGUE_GELU"),
        _dense("ep_matmul_vector_bias_relu", matmul=True, a_shape=(9,), n=6, bias_shape=(6,), act=("Relu", {}),
               epilogue="CUBLASLT_EPILOGUE_RELU_BIAS"),
        # the cuBLAS path: activations without a cuBLASLt epilogue, the exact Gelu, beta != 1, a per-row C
        _dense("ep_gemm_sigmoid_bias", matmul=False, a_shape=(5, 6), n=4, bias_shape=(4,), act=("Sigmoid", {})),
        _dense("ep_matmul3d_bias_gelu_erf", matmul=True, a_shape=(2, 3, 8), n=5, bias_shape=(5,), act=("Gelu", {})),
        _dense("ep_matmul3d_bias_leaky", matmul=True, a_shape=(2, 3, 4), n=5, bias_shape=(5,),
               act=("LeakyRelu", {"alpha": 0.1})),
        _dense("ep_gemm_beta2_relu", matmul=False, a_shape=(4, 6), n=5, bias_shape=(5,), beta=2.0, act=("Relu", {})),
        _dense("ep_matmul_vector_bias_leaky", matmul=True, a_shape=(7,), n=1, bias_shape=(1,),
               act=("LeakyRelu", {"alpha": 0.01})),
        _dense("ep_gemm_rowbias_relu", matmul=False, a_shape=(4, 6), n=5, bias_shape=(4, 1), act=("Relu", {})),
    ]


CASES = _cases()
EPILOGUE_CASES = _epilogue_cases()


def chain_model():
    """A small network with a symbolic batch: Conv+BatchNorm+Relu (folded and fused), MaxPool, Flatten, Gemm,
    Softmax; exercises the arena's growth for larger batches."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "s"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "m"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "v"),
             numpy_helper.from_array(rng.normal(0, 0.3, (10, 64)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1),
             helper.make_node("Softmax", ["g"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m
