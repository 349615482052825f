"""Type and shape inference with constant folding, in one walk over the (topologically sorted) graph.

A node whose inputs are all constant is evaluated now (with onnx's reference evaluator as the numerical
oracle), and a node on shape tensors that depend on symbolic sizes is folded symbolically. Either way the
node disappears from the graph and costs nothing at run time.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidModelError, PysofieError, ShapeInferenceError, UnsupportedOperatorError
from ..ir import Graph, Node
from ..ir.shapes import Sym, dims_equal
from .lowp import promote as promote_lowp
from .manager import Pass


def evaluate_node(node: Node) -> list[np.ndarray]:
    """Evaluate a node on constant inputs with onnx.reference (used only at generation time)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    ins = [f"i{k}" if v is not None else "" for k, v in enumerate(node.inputs)]
    outs = [f"o{k}" for k in range(len(node.outputs))]
    onode = helper.make_node(node.op_type, ins, outs, domain=node.op.domain or None,
                             **_onnx_attrs(node.op_type, node.op.domain, node.op.onnx_attrs()))
    feeds = {n: v.const for n, v in zip(ins, node.inputs) if v is not None}
    try:
        return [np.asarray(r) for r in ReferenceEvaluator(onode).run(None, feeds)]
    except Exception:
        if not node.op.opset or node.op.domain:
            raise
    # in the node's own opset (Unsqueeze's axes are an attribute before opset 13)
    graph = helper.make_graph([onode], "fold", [helper.make_empty_tensor_value_info(n) for n in ins if n],
                              [helper.make_empty_tensor_value_info(n) for n in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", node.op.opset)])
    return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, feeds)]


def _onnx_attrs(op_type: str, domain: str, attrs: dict) -> dict:
    """Attributes ready for helper.make_node: tensor-typed ones (held as numpy arrays, like ConstantOfShape's
    value) become TensorProtos again, or make_node would turn them into lists."""
    import onnx
    from onnx import numpy_helper
    try:
        schema = onnx.defs.get_schema(op_type, domain=domain or "")
    except Exception:
        return attrs
    out = dict(attrs)
    for k, v in attrs.items():
        a = schema.attributes.get(k)
        if a is not None and a.type == onnx.defs.OpSchema.AttrType.TENSOR and isinstance(v, np.ndarray):
            out[k] = numpy_helper.from_array(v)
    return out


# what an operator's shape rules raise when a node's inputs or attributes are not what the operator takes (an
# input missing, an attribute of the wrong size or range, an element type pysofie has no name for): reported as
# a shape error of that node rather than as a Python exception from inside pysofie
_MALFORMED = (TypeError, ValueError, IndexError, KeyError, AttributeError, ZeroDivisionError, OverflowError,
              MemoryError)


def _malformed(node, e: Exception) -> str:
    return (f"{node.describe()}: its inputs or attributes do not fit the operator "
            f"({type(e).__name__}: {str(e)[:300] or 'no message'})")


class InferShapesAndFold(Pass):
    name = "infer"

    def __init__(self, fold: bool = True, check_types: bool = False):
        self.fold = fold
        # front ends ask for the element types of the model's own nodes to be checked against the ONNX schemas
        # (passes later build nodes that the schemas do not describe)
        self.check_types = check_types

    def __call__(self, graph: Graph) -> bool:
        graph.toposort()
        changed = False
        problems: list[str] = []
        invalid: list[str] = []
        for node in list(graph.nodes):
            op = node.op
            if any(v is not None and (v.dtype is None or v.shape is None) for v in node.inputs):
                # follows an unsupported node: only problems that need no input types can be found
                if not getattr(op, "CHECK_NEEDS_INPUTS", True):
                    problems += op.check(node)
                continue
            if self.check_types:
                from .validate import type_problems
                bad = type_problems(node)
                if bad:
                    invalid += bad
                    for v in node.outputs:
                        v.dtype = v.shape = None
                    continue
            finish = promote_lowp(graph, node)  # float16/bfloat16 into an op that computes in float only
            try:
                issues = op.check(node)
            except ShapeInferenceError as e:
                issues = [str(e)]
            except PysofieError:
                raise
            except _MALFORMED as e:
                issues = [_malformed(node, e)]
            if issues:
                problems += issues
                for v in node.outputs:
                    v.dtype = v.shape = None
                continue
            if self.fold and self._try_fold(graph, node):
                if finish:
                    finish()
                changed = True
                continue
            try:
                results = op.infer(node)
            except PysofieError:
                raise
            except _MALFORMED as e:
                raise ShapeInferenceError(_malformed(node, e)) from None
            for v, (dt, shape) in zip(node.outputs, results):
                v.dtype, v.shape = dt, tuple(shape)
            for expr, msg in op.guards(node):
                if not isinstance(expr, Sym):
                    if int(expr) < 0:
                        problems.append(msg)
                elif not any(dims_equal(expr, e) for e, _ in graph.guards):
                    graph.guards.append((expr, msg))
            if finish:
                finish()
            if self.fold:
                syms = op.fold_symbolic(node)
                if syms is not None:
                    for v, elems in zip(node.outputs, syms):
                        if all(isinstance(e, int) for e in elems):
                            arr = np.asarray(elems, dtype=v.dtype.np).reshape(v.shape)
                            v.set_const(arr)
                        else:
                            v.sym = [e if isinstance(e, Sym) else int(e) for e in elems]
                    if all(v.const is not None for v in node.outputs):
                        graph.remove_node(node)
                        changed = True
                    elif len(node.outputs) == 1 and node.op_type != "SymbolicValue":
                        _replace_by_symbolic_value(graph, node)
                        changed = True
        if invalid:
            raise InvalidModelError(invalid + problems, graph.source)
        if problems:
            raise UnsupportedOperatorError(problems, graph.source)
        return changed

    def _try_fold(self, graph: Graph, node: Node) -> bool:
        ins = [v for v in node.inputs if v is not None]
        if not ins or not all(v.const is not None for v in ins) or not node.op.folds(node):
            return False
        try:
            results = evaluate_node(node)
        except Exception as e:  # the reference evaluator rejects it: keep the node, infer normally
            if isinstance(e, (KeyboardInterrupt, MemoryError)):
                raise
            return False
        for v, r in zip(node.outputs, results):
            v.set_const(r)
        graph.remove_node(node)
        return True


def _replace_by_symbolic_value(graph: Graph, node: Node) -> None:
    """A node whose output is known as size expressions becomes a SymbolicValue: its inputs (Shape of a
    tensor, ...) are no longer read at run time."""
    from ..ops.shape import SymbolicValue
    (v,) = node.outputs
    op = SymbolicValue(values=list(v.sym), dtype=v.dtype, shape=tuple(v.shape))
    idx = graph.nodes.index(node)
    graph.remove_node(node)
    graph.add_node(op, [], [v], node.name, index=idx)
