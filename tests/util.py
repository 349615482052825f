"""Test helpers: build single-node ONNX models, compile many at once, compare with independent references."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import numpy as np
import onnx
from onnx import helper

# The rootbench models: $PYSOFIE_ROOTBENCH, else ../shared/models/rootbench next to the project; tests that need
# them skip when neither exists.
ROOTBENCH = os.environ.get("PYSOFIE_ROOTBENCH") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "models", "rootbench")



def rootbench_model(name: str) -> str:
    """Path of a rootbench model; the calling test is skipped when the models are not there."""
    import pytest
    path = os.path.join(ROOTBENCH, name if name.endswith(".onnx") else f"{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"rootbench model {name} not found in {ROOTBENCH} (set PYSOFIE_ROOTBENCH)")
    return path


RTOL, ATOL = 1e-4, 1e-5  # the project's default tolerance against a reference


def node_model(op_type: str, inputs: dict[str, np.ndarray], attrs: Optional[dict] = None, *,
               n_outputs: int = 1, opset: int = 21, initializers: tuple = (), domain: str = "",
               symbolic: Optional[dict[str, list]] = None) -> onnx.ModelProto:
    """A model of one node. Inputs named in `initializers` become initializers (constant weights);
    `symbolic` maps an input name to a shape with str entries for symbolic dims."""
    attrs = attrs or {}
    ins, inits = [], []
    for name, arr in inputs.items():
        if arr is None:
            continue
        arr = np.asarray(arr)
        if name in initializers:
            inits.append(onnx.numpy_helper.from_array(arr, name))
        else:
            shape = (symbolic or {}).get(name, list(arr.shape))
            ins.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), shape))
    node = helper.make_node(op_type, [n if inputs[n] is not None else "" for n in inputs],
                            [f"y{k}" for k in range(n_outputs)], domain=domain or None, **attrs)
    outs = [helper.make_empty_tensor_value_info(f"y{k}") for k in range(n_outputs)]
    graph = helper.make_graph([node], f"{op_type.lower()}_test", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    # declare the output types as onnx infers them (onnxruntime needs them)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {o.name: o.type for o in inferred.graph.output}
        for o in model.graph.output:
            if types.get(o.name) is not None and types[o.name].tensor_type.elem_type:
                o.type.CopyFrom(types[o.name])
                o.type.tensor_type.ClearField("shape")
    except Exception:
        pass
    return model


def graph_model(name: str, nodes: list, inputs: list[tuple], outputs: list[tuple], opset: int = 18
                ) -> onnx.ModelProto:
    """A checked model of `nodes`; inputs and outputs as make_tensor_value_info argument tuples."""
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def compile_cpp_main(tmp_path, src: str):
    """Writes src to tmp_path/main.cpp and compiles it against the headers in tmp_path and pysofie's BLAS with
    -Wall -Wextra -Werror (generated headers must compile warning-free); the executable's path."""
    import shlex
    import subprocess
    from pysofie.build.blas import find_blas
    from pysofie.build.compiler import find_cxx
    (tmp_path / "main.cpp").write_text(src)
    blas = find_blas()
    exe = tmp_path / "main"
    cmd = (shlex.split(find_cxx()) + ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path}",
                                      str(tmp_path / "main.cpp"), "-o", str(exe), *blas.cflags, *blas.libs])
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return exe


def run_emitted_cpp(models: dict, main_src: str, tmp_path) -> list[str]:
    """Emits every model of {name: model} (embedded weights) into tmp_path, compiles main_src after their
    headers (compile_cpp_main), runs it; its stdout lines."""
    import subprocess
    import pysofie
    for name, m in models.items():
        pysofie.emit(m, str(tmp_path), weights="embed", name=name)
    exe = compile_cpp_main(tmp_path, "".join(f'#include "{n}.hxx"\n' for n in models) + main_src)
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout.split("\n")


def feeds_of(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    init = {i.name for i in model.graph.initializer}
    return {k: v for k, v in inputs.items() if v is not None and k not in init}


def reference(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    """onnx's reference evaluator: the independent oracle."""
    from onnx.reference import ReferenceEvaluator
    return [np.asarray(x) for x in ReferenceEvaluator(model).run(None, feeds)]


def ort(model: onnx.ModelProto | str, feeds: dict) -> list[np.ndarray]:
    import onnxruntime
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    src = model if isinstance(model, str) else model.SerializeToString()
    return onnxruntime.InferenceSession(src, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_close(actual, expected, rtol=RTOL, atol=ATOL, what=""):
    assert len(actual) == len(expected), f"{what}: {len(actual)} outputs, expected {len(expected)}"
    for k, (a, e) in enumerate(zip(actual, expected)):
        e = np.asarray(e)
        assert a.shape == e.shape, f"{what} output {k}: shape {a.shape} != {e.shape}"
        assert a.dtype == e.dtype, f"{what} output {k}: dtype {a.dtype} != {e.dtype}"
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(a, e, err_msg=f"{what} output {k}")
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"{what} output {k}")


@dataclasses.dataclass
class Case:
    """One operator test: a model, its inputs, and the reference to compare with."""
    id: str
    model: onnx.ModelProto
    inputs: dict[str, Any]
    rtol: float = RTOL
    atol: float = ATOL
    oracle: str = "reference"  # or "ort"

    def feeds(self):
        return feeds_of(self.model, self.inputs)

    def expected(self):
        return (ort if self.oracle == "ort" else reference)(self.model, self.feeds())


def compile_cases(cases: list[Case]) -> dict[str, Any]:
    """Compile all cases into one shared library; returns {case id: InferenceSession or exception}."""
    from pysofie.build.batch import compile_many
    sessions = compile_many([c.model for c in cases])
    return {c.id: s for c, s in zip(cases, sessions)}


def run_case(case: Case, sessions: dict) -> None:
    sess = sessions[case.id]
    if isinstance(sess, Exception):
        raise sess
    got = sess.run(None, case.feeds())
    assert_close(got, case.expected(), case.rtol, case.atol, what=case.id)


def rand(*shape, dtype=np.float32, low=-1.0, high=1.0, seed=None):
    rng = np.random.default_rng(seed if seed is not None else abs(hash(shape)) % (2 ** 31))
    return rng.uniform(low, high, size=shape).astype(dtype)


class Cases(list):
    """A test module's single-node cases (ids unique), compiled together by `selected_sessions`."""

    def __init__(self, opset: int = 21):
        super().__init__()
        self.opset = opset

    def add(self, id_, op, inputs, attrs=None, init=(), opset=None, rtol=RTOL, atol=ATOL, oracle="reference", **kw):
        assert all(c.id != id_ for c in self), f"duplicate case id {id_}"
        model = node_model(op, inputs, attrs, initializers=init, opset=opset or self.opset, **kw)
        self.append(Case(id_, model, inputs, rtol=rtol, atol=atol, oracle=oracle))


def selected_sessions(request, cases) -> dict:
    """Compile the cases of the requesting module that this run selected (all of them in a full run) in one
    batch; use from a module-scoped fixture."""
    mine = [it for it in request.session.items if getattr(it, "module", None) is request.module]
    wanted = {it.callspec.params["c"].id for it in mine if hasattr(it, "callspec") and "c" in it.callspec.params}
    return compile_cases([c for c in cases if c.id in wanted])
