"""ResNet-18 v1 (torchvision layout) as an ONNX graph built with onnx.helper, random weights, fixed seed.

Conv (no bias) + BatchNormalization + Relu blocks, as a PyTorch export gives them before any folding, so the
benchmark also exercises pysofie's Conv+BatchNorm folding and activation fusion.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def resnet18(batch: int = 1, seed: int = 0, num_classes: int = 1000, width: int = 64) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    counter = [0]

    def name(base):
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def const(base, arr):
        n = name(base)
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), n))
        return n

    def conv_bn(x, cin, cout, k, stride, relu=True):
        fan_in = cin * k * k
        w = const("conv_w", rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin, k, k)))
        y = name("conv")
        nodes.append(helper.make_node("Conv", [x, w], [y], kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4, name=y))
        scale = const("bn_scale", rng.uniform(0.5, 1.5, cout))
        bias = const("bn_bias", rng.normal(0, 0.1, cout))
        mean = const("bn_mean", rng.normal(0, 0.1, cout))
        var = const("bn_var", rng.uniform(0.5, 1.5, cout))
        z = name("bn")
        nodes.append(helper.make_node("BatchNormalization", [y, scale, bias, mean, var], [z], epsilon=1e-5, name=z))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [z], [r], name=r))
            return r
        return z

    def basic_block(x, cin, cout, stride):
        h = conv_bn(x, cin, cout, 3, stride)
        h = conv_bn(h, cout, cout, 3, 1, relu=False)
        sc = conv_bn(x, cin, cout, 1, stride, relu=False) if (stride != 1 or cin != cout) else x
        s = name("add")
        nodes.append(helper.make_node("Add", [h, sc], [s], name=s))
        r = name("relu")
        nodes.append(helper.make_node("Relu", [s], [r], name=r))
        return r

    x = conv_bn("input", 3, width, 7, 2)
    p = name("maxpool")
    nodes.append(helper.make_node("MaxPool", [x], [p], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                  name=p))
    x, c = p, width
    for stage, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
        for blk in range(2):
            stride = 2 if (stage > 0 and blk == 0) else 1
            x = basic_block(x, c, cout, stride)
            c = cout
    g = name("gap")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [g], name=g))
    f = name("flatten")
    nodes.append(helper.make_node("Flatten", [g], [f], axis=1, name=f))
    fw = const("fc_w", rng.normal(0, np.sqrt(1.0 / c), (num_classes, c)))
    fb = const("fc_b", rng.normal(0, 0.01, num_classes))
    nodes.append(helper.make_node("Gemm", [f, fw, fb], ["output"], transB=1, name="fc"))
    graph = helper.make_graph(nodes, "resnet18", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               [batch, 3, 224, 224])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, num_classes])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
