"""Custom operators registered from Python with C++ code: models using them emit, compile and run.

Each result is compared with a numpy computation of the same function (rtol 1e-5 / atol 1e-6: float32 code
against numpy float32/float64 arithmetic of the same formula)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import pysofie
from pysofie.backends.cpp.emitter import GENERATORS
from pysofie.errors import ShapeInferenceError, UnsupportedOperatorError
from pysofie.ops.base import OPS, REQUIRED

from .util import rand

RTOL, ATOL = 1e-5, 1e-6
DOMAIN = "my.domain"


def custom_model(nodes, inputs, outputs, name="custom_test"):
    graph = helper.make_graph(nodes, name, inputs, outputs)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(DOMAIN, 1)])
    m.ir_version = 10
    return m


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def same_shape(inputs):
    return [inputs[0]]


@pytest.fixture
def scale_op():
    reg = pysofie.register_custom_op(
        "MyScale", domain=DOMAIN, shape_fn=same_shape, attrs={"alpha": 2.0, "beta": 0.5},
        cpp="for (size_t i = 0; i < X_size; ++i) Y[i] = T(alpha) * X[i] + T(beta);")
    yield reg
    reg.unregister()


def test_body_custom_op_in_a_model(scale_op):
    # Relu -> MyScale(alpha=3) -> Add: the custom node sits between built-in ones
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("MyScale", ["r"], ["s"], domain=DOMAIN, alpha=3.0),
             helper.make_node("Add", ["s", "x"], ["y"])]
    m = custom_model(nodes, [vi("x", [2, 3, 4])], [vi("y", [2, 3, 4])])
    x = rand(2, 3, 4, seed=1)
    sess = pysofie.InferenceSession(m)
    (y,) = sess.run(None, {"x": x})
    expected = (3.0 * np.maximum(x, 0) + 0.5) + x
    assert y.dtype == np.float32 and y.shape == (2, 3, 4)
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)
    assert "MyScale" in sess.header and pysofie.check(m) == []  # emitted like any other op


def test_function_custom_op_two_inputs_shape_fn_and_attrs():
    # a complete function template; parameters are picked by name; the output shape differs from the inputs
    src = """
template <typename T>
void row_dot(const T* A, const T* B, T* Y, const size_t* A_shape, double scale) {
   for (size_t r = 0; r < A_shape[0]; ++r) {
      T acc = 0;
      for (size_t c = 0; c < A_shape[1]; ++c) acc += A[r * A_shape[1] + c] * B[c];
      Y[r] = T(scale) * acc;
   }
}
"""

    def shape_fn(inputs, attrs):
        (dt, a_shape), (_, b_shape) = inputs
        assert len(a_shape) == 2 and b_shape == (a_shape[1],)
        return [(dt, (a_shape[0],))]

    with pysofie.register_custom_op("RowDot", domain=DOMAIN, inputs=("A", "B"), outputs=("Y",),
                                    attrs={"scale": REQUIRED}, shape_fn=shape_fn, cpp=src,
                                    function="row_dot") as reg:
        assert reg.active
        for dt, npdt in ((TensorProto.FLOAT, np.float32), (TensorProto.DOUBLE, np.float64)):
            node = helper.make_node("RowDot", ["a", "b"], ["y"], domain=DOMAIN, scale=0.25)
            m = custom_model([node], [vi("a", [5, 7], dt), vi("b", [7], dt)], [vi("y", [5], dt)])
            a, b = rand(5, 7, dtype=npdt, seed=2), rand(7, dtype=npdt, seed=3)
            (y,) = pysofie.InferenceSession(m).run(None, {"a": a, "b": b})
            assert y.dtype == npdt and y.shape == (5,)
            np.testing.assert_allclose(y, 0.25 * (a @ b), rtol=RTOL, atol=ATOL)
    assert not reg.active and (DOMAIN, "RowDot") not in OPS


def test_symbolic_batch_and_default_attrs(scale_op):
    node = helper.make_node("MyScale", ["x"], ["y"], domain=DOMAIN)  # alpha, beta: defaults
    m = custom_model([node], [vi("x", ["N", 6])], [vi("y", ["N", 6])])
    sess = pysofie.InferenceSession(m)
    for n in (1, 4):
        x = rand(n, 6, seed=n)
        (y,) = sess.run(None, {"x": x})
        np.testing.assert_allclose(y, 2.0 * x + 0.5, rtol=RTOL, atol=ATOL)


def test_batch_compile_with_custom_op(scale_op):
    from pysofie.build.batch import compile_many
    models, xs = [], []
    for k in range(2):
        node = helper.make_node("MyScale", ["x"], ["y"], domain=DOMAIN, alpha=float(k + 1))
        models.append(custom_model([node], [vi("x", [3 + k])], [vi("y", [3 + k])], name=f"m{k}"))
        xs.append(rand(3 + k, seed=10 + k))
    sessions = compile_many(models)
    for k, (s, x) in enumerate(zip(sessions, xs)):
        assert not isinstance(s, Exception), s
        np.testing.assert_allclose(s.run(None, {"x": x})[0], (k + 1) * x + 0.5, rtol=RTOL, atol=ATOL)


def test_unregister_restores_registries():
    before_ops, before_gen = dict(OPS), dict(GENERATORS)
    reg = pysofie.register_custom_op("Tmp", domain=DOMAIN, cpp="Y[0] = X[0];")
    assert (DOMAIN, "Tmp") in OPS and f"{DOMAIN}.Tmp" in GENERATORS
    assert reg in pysofie.custom_ops()
    assert pysofie.unregister_custom_op("Tmp", DOMAIN)
    assert not pysofie.unregister_custom_op("Tmp", DOMAIN)
    reg.unregister()  # harmless twice
    assert dict(OPS) == before_ops and dict(GENERATORS) == before_gen
    # after unregistering, a model using it is unsupported again, naming the op
    node = helper.make_node("Tmp", ["x"], ["y"], domain=DOMAIN)
    m = custom_model([node], [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(UnsupportedOperatorError, match="Tmp"):
        pysofie.InferenceSession(m)


def test_builtin_name_needs_replace_and_is_restored():
    relu_cls, relu_gen = OPS[("", "Relu")], GENERATORS["Relu"]
    with pytest.raises(ValueError, match="built into pysofie"):
        pysofie.register_custom_op("Relu", cpp="Y[0] = X[0];")
    # same op type in a custom domain does not touch the built-in
    with pysofie.register_custom_op("Relu", domain=DOMAIN, cpp="for (size_t i = 0; i < X_size; ++i) Y[i] = -X[i];"):
        assert OPS[("", "Relu")] is relu_cls and GENERATORS["Relu"] is relu_gen
        nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Relu", ["r"], ["y"], domain=DOMAIN)]
        m = custom_model(nodes, [vi("x", [8])], [vi("y", [8])])
        x = rand(8, seed=4)
        np.testing.assert_allclose(pysofie.InferenceSession(m).run(None, {"x": x})[0], -np.maximum(x, 0),
                                   rtol=RTOL, atol=ATOL)
    with pysofie.register_custom_op("Relu", cpp="for (size_t i = 0; i < X_size; ++i) Y[i] = X[i] * X[i];",
                                    replace=True):
        assert OPS[("", "Relu")] is not relu_cls
    assert OPS[("", "Relu")] is relu_cls and GENERATORS["Relu"] is relu_gen


def test_bad_registrations_and_bad_nodes(scale_op):
    with pytest.raises(ValueError, match="nothing known"):
        pysofie.register_custom_op("Bad", domain=DOMAIN, function="f", cpp="void f(const float* X, float* Z) {}")
    with pytest.raises(ValueError, match="not defined"):
        pysofie.register_custom_op("Bad", domain=DOMAIN, function="g", cpp="void f(const float* X) {}")
    with pytest.raises(ValueError, match="identifier"):
        pysofie.register_custom_op("Bad", domain=DOMAIN, inputs=("my input",), cpp="Y[0] = 0;")
    with pytest.raises(ValueError, match="already registered"):
        pysofie.register_custom_op("MyScale", domain=DOMAIN, cpp="Y[0] = 0;")
    assert (DOMAIN, "Bad") not in OPS
    # unknown attribute on the node: reported as unsupported, naming the op
    node = helper.make_node("MyScale", ["x"], ["y"], domain=DOMAIN, gamma=1.0)
    m = custom_model([node], [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(UnsupportedOperatorError, match="MyScale"):
        pysofie.InferenceSession(m)


def test_shape_fn_errors_are_reported():
    def broken(inputs):
        raise RuntimeError("no idea")

    with pysofie.register_custom_op("Broken", domain=DOMAIN, shape_fn=broken, cpp="Y[0] = X[0];"):
        node = helper.make_node("Broken", ["x"], ["y"], domain=DOMAIN)
        m = custom_model([node], [vi("x", [2])], [vi("y", [2])])
        with pytest.raises(ShapeInferenceError, match="shape function.*no idea"):
            pysofie.load(m)


def test_generated_code_is_warning_free(scale_op, tmp_path):
    import subprocess
    from pysofie.build.compiler import find_cxx
    node = helper.make_node("MyScale", ["x"], ["y"], domain=DOMAIN)
    m = custom_model([node], [vi("x", ["N", 3])], [vi("y", ["N", 3])])
    paths = pysofie.emit(m, str(tmp_path), name="scaled", weights="embed")
    main = tmp_path / "main.cpp"
    main.write_text(f'#include "{paths["header"]}"\nint main() {{ {paths["namespace"]}::Session s; '
                    'float x[3] = {1, 2, 3}; float y[3]; s.infer(1, x, y); return y[0] == 2.5f ? 0 : 1; }\n')
    from pysofie.build import find_blas
    blas = find_blas()
    r = subprocess.run(find_cxx().split() + ["-std=c++17", "-Wall", "-Wextra", "-Werror", *blas.cflags,
                                              "-fsyntax-only", str(main)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_dtype_restriction():
    with pysofie.register_custom_op("F32Only", domain=DOMAIN, dtypes=[np.float32],
                                    cpp="for (size_t i = 0; i < X_size; ++i) Y[i] = X[i];"):
        node = helper.make_node("F32Only", ["x"], ["y"], domain=DOMAIN)
        m = custom_model([node], [vi("x", [2], TensorProto.DOUBLE)], [vi("y", [2], TensorProto.DOUBLE)])
        with pytest.raises(UnsupportedOperatorError, match="F32Only.*accepts"):
            pysofie.InferenceSession(m)


def test_broken_cpp_fails_only_its_model_in_a_batch(scale_op):
    """A custom op whose C++ does not compile: compile_many reports a CompileError for that model alone
    (the compiler names its header) and the other models of the batch still compile and run."""
    from pysofie.build.batch import compile_many
    from pysofie.errors import CompileError
    with pysofie.register_custom_op("Broken", domain=DOMAIN, cpp="Y[0] = this_is_not_declared(X[0]);"):
        models = []
        for k, op in enumerate(["MyScale", "Broken", "MyScale", "MyScale"]):
            node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN, **({"alpha": float(k)} if op == "MyScale" else {}))
            models.append(custom_model([node], [vi("x", [3])], [vi("y", [3])], name=f"b{k}"))
        sessions = compile_many(models)
    assert isinstance(sessions[1], CompileError) and "this_is_not_declared" in str(sessions[1])
    x = rand(3, seed=9)
    for k in (0, 2, 3):
        assert not isinstance(sessions[k], Exception), sessions[k]
        np.testing.assert_allclose(sessions[k].run(None, {"x": x})[0], k * x + 0.5, rtol=RTOL, atol=ATOL)


def test_function_mode_code_is_warning_free(tmp_path):
    import subprocess
    from pysofie.build import find_blas
    from pysofie.build.compiler import find_cxx
    src = ("template <typename T>\nvoid shift(const T* X, T* Y, size_t X_size, const size_t* X_shape, double by) {\n"
           "   for (size_t i = 0; i < X_size; ++i) Y[i] = X[i] + T(by) * T(X_shape[0]);\n}\n")
    with pysofie.register_custom_op("Shift", domain=DOMAIN, attrs={"by": 1.5, "tags": [1, 2]}, cpp=src,
                                    function="shift"):
        node = helper.make_node("Shift", ["x"], ["y"], domain=DOMAIN)
        m = custom_model([node], [vi("x", [2, 3])], [vi("y", [2, 3])])
        x = rand(2, 3, seed=11)
        np.testing.assert_allclose(pysofie.InferenceSession(m).run(None, {"x": x})[0], x + 1.5 * 2,
                                   rtol=RTOL, atol=ATOL)
        paths = pysofie.emit(m, str(tmp_path), name="shifted", weights="embed")
    main = tmp_path / "main.cpp"
    main.write_text(f'#include "{paths["header"]}"\nint main() {{ {paths["namespace"]}::Session s; '
                    'float x[6] = {0}; float y[6]; s.infer(x, y); return y[0] == 3.0f ? 0 : 1; }\n')
    r = subprocess.run(find_cxx().split() + ["-std=c++17", "-Wall", "-Wextra", "-Werror", *find_blas().cflags,
                                              "-fsyntax-only", str(main)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
