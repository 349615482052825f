"""Recurrent layers: RNN, GRU and LSTM (ONNX opsets 7 to 22; the opset 1 forms are read too).

One family class holds what the three share: directions, ``layout`` (0: time major, 1: batch major, opset 14
on), the optional inputs (B, sequence_lens, initial_h, and for LSTM initial_c and P), the optional outputs
(Y, Y_h, and for LSTM Y_c), ``clip`` and the activation functions with their alpha / beta parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir import DType
from ..ir.shapes import Dim, dims_equal
from .base import Op, register

# Activation functions a recurrent layer may use: canonical name -> (uses alpha, uses beta, default alpha,
# default beta). The defaults are those of the ONNX operators of the same name (LeakyRelu, ThresholdedRelu,
# HardSigmoid, Elu; the experimental Affine and ScaledTanh), as the specification asks. onnxruntime uses 0
# instead for Affine, ScaledTanh and ThresholdedRelu when alpha / beta run out.
ACTIVATIONS: dict[str, tuple[bool, bool, float, float]] = {
    "Relu": (False, False, 0.0, 0.0),
    "Tanh": (False, False, 0.0, 0.0),
    "Sigmoid": (False, False, 0.0, 0.0),
    "Affine": (True, True, 1.0, 0.0),
    "LeakyRelu": (True, False, 0.01, 0.0),
    "ThresholdedRelu": (True, False, 1.0, 0.0),
    "ScaledTanh": (True, True, 1.0, 1.0),
    "HardSigmoid": (True, True, 0.2, 0.5),
    "Elu": (True, False, 1.0, 0.0),
    "Softsign": (False, False, 0.0, 0.0),
    "Softplus": (False, False, 0.0, 0.0),
}
_CANONICAL = {k.lower(): k for k in ACTIVATIONS}

DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


@dataclass(frozen=True)
class Activation:
    name: str  # canonical name, a key of ACTIVATIONS
    alpha: float
    beta: float


@dataclass(frozen=True)
class RecurrentDims:
    seq: Dim  # sequence length
    batch: Dim
    input: int
    hidden: int
    dirs: int


class RecurrentBase(Op):
    """What RNN, GRU and LSTM share. Subclasses set the number of gates and activation functions."""
    GATES: ClassVar[int] = 1  # blocks of hidden_size rows in W and R
    DEFAULT_ACTIVATIONS: ClassVar[tuple[str, ...]] = ("Tanh",)
    ATTRS = {"activation_alpha": None, "activation_beta": None, "activations": None, "clip": None,
             "direction": "forward", "hidden_size": None, "layout": 0,
             "output_sequence": None}  # output_sequence: opset 1 only, Y is optional anyway
    INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h")
    OUTPUTS = ("Y", "Y_h")

    def folds(self, node) -> bool:
        # onnx's reference evaluator ignores sequence_lens and most activations: never fold with it
        return False

    # -- attributes ------------------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return DIRECTIONS.get(self.direction, 1)

    def activation_problems(self, node) -> list[str]:
        p = []
        names = list(self.activations) if self.activations else []
        for a in names:
            if a.lower() not in _CANONICAL:
                p.append(f"{node.describe()}: activation '{a}' is not supported (supported: "
                         f"{', '.join(ACTIVATIONS)})")
        k, d = len(self.DEFAULT_ACTIVATIONS), self.num_directions
        if names and len(names) not in self._accepted_counts():
            p.append(f"{node.describe()}: {len(names)} activations given, {self.op_type} with direction "
                     f"'{self.direction}' takes {k * d}")
        return p

    def _accepted_counts(self) -> set[int]:
        k, d = len(self.DEFAULT_ACTIVATIONS), self.num_directions
        counts = {k * d, k}  # one list per direction, or one list for both directions
        if self.op_type == "RNN" and d == 1:
            counts.add(2)  # RNN-1 / RNN-7 documented the default as "Tanh, Tanh" whatever the direction
        return counts

    def activation_functions(self) -> list[list[Activation]]:
        """Per direction, the activation functions (f, g, h order) with their resolved alpha and beta.

        alpha / beta values are consumed in the order of the functions, only by the functions that take
        them (as onnxruntime does); when they run out, the defaults of ACTIVATIONS apply.
        """
        k, d = len(self.DEFAULT_ACTIVATIONS), self.num_directions
        names = list(self.activations) if self.activations else list(self.DEFAULT_ACTIVATIONS) * d
        if len(names) == k and d == 2:
            names = names * 2
        names = names[:k * d]
        alphas = list(self.activation_alpha or [])
        betas = list(self.activation_beta or [])
        out: list[Activation] = []
        for nm in names:
            canon = _CANONICAL[nm.lower()]
            use_a, use_b, def_a, def_b = ACTIVATIONS[canon]
            a = (alphas.pop(0) if alphas else def_a) if use_a else 0.0
            b = (betas.pop(0) if betas else def_b) if use_b else 0.0
            out.append(Activation(canon, float(a), float(b)))
        return [out[i * k:(i + 1) * k] for i in range(d)]

    # -- checks and shapes -----------------------------------------------------------------------------
    def check(self, node) -> list[str]:
        p = []
        x = node.inputs[0]
        if x.dtype not in (DType.FLOAT, DType.DOUBLE):
            p.append(f"{node.describe()}: element type {x.dtype.name.lower()} is not supported "
                     "(float and double are)")
        if self.direction not in DIRECTIONS:
            p.append(f"{node.describe()}: direction='{self.direction}' is not one of forward, reverse, "
                     "bidirectional")
        if self.layout not in (0, 1):
            p.append(f"{node.describe()}: layout={self.layout} is not 0 or 1")
        elif self.layout and 0 < self.opset < 14:
            p.append(f"{node.describe()}: the layout attribute exists from opset 14 on (model has opset "
                     f"{self.opset})")
        if self.direction in DIRECTIONS:
            p += self.activation_problems(node)
        if self.clip is not None and not self.clip > 0:
            p.append(f"{node.describe()}: clip={self.clip} must be positive")
        if len(node.outputs) > len(self.OUTPUTS):
            p.append(f"{node.describe()}: {len(node.outputs)} outputs, {self.op_type} has at most "
                     f"{len(self.OUTPUTS)}")
        if len(node.inputs) > len(self.INPUTS):
            p.append(f"{node.describe()}: {len(node.inputs)} inputs, {self.op_type} takes at most "
                     f"{len(self.INPUTS)}")
        for i, v in enumerate(node.inputs):
            if v is None or i == 0:
                continue
            if i == 4:
                if v.dtype not in (DType.INT32, DType.INT64):
                    p.append(f"{node.describe()}: sequence_lens must be int32, not {v.dtype.name.lower()}")
            elif v.dtype is not x.dtype:
                p.append(f"{node.describe()}: input {self.INPUTS[i]} is {v.dtype.name.lower()}, X is "
                         f"{x.dtype.name.lower()}")
        for i in (1, 2):
            v = node.input(i)
            if v is None:
                p.append(f"{node.describe()}: input {self.INPUTS[i]} is required")
            elif not all(isinstance(d, int) for d in v.shape):
                p.append(f"{node.describe()}: input {self.INPUTS[i]} ('{v.name}') must have a static shape, "
                         f"has {list(v.shape)}")
        if x.rank == 3 and not isinstance(x.shape[2], int):
            p.append(f"{node.describe()}: the input size (last dim of X) must be static, is {x.shape[2]}")
        return p

    def dims(self, node) -> RecurrentDims:
        """Sizes of the layer, after checking every input's shape against them."""
        x, r = node.inputs[0], node.inputs[2]
        if x.rank != 3:
            raise self.fail(node, f"X ('{x.name}') must be 3-D, has shape {list(x.shape)}")
        seq, batch = (x.shape[0], x.shape[1]) if self.layout == 0 else (x.shape[1], x.shape[0])
        inp = x.shape[2]
        for what, n in (("sequence length", seq), ("batch size", batch), ("input size", inp)):
            if isinstance(n, int) and n < 1:
                raise self.fail(node, f"X ('{x.name}') has shape {list(x.shape)}: {what} {n} is not supported")
        D, G = self.num_directions, self.GATES
        if r.rank != 3:
            raise self.fail(node, f"R ('{r.name}') must be 3-D, has shape {list(r.shape)}")
        H = int(r.shape[2])
        if self.hidden_size is not None and int(self.hidden_size) != H:
            raise self.fail(node, f"hidden_size={self.hidden_size} but R ('{r.name}') has shape {list(r.shape)}")
        if H <= 0:
            raise self.fail(node, f"hidden size {H} must be positive")

        def expect(i: int, shape: tuple) -> None:
            v = node.input(i)
            if v is None:
                return
            if len(v.shape) != len(shape) or not all(dims_equal(a, b) for a, b in zip(v.shape, shape)):
                want = "[" + ", ".join(str(d) for d in shape) + "]"
                raise self.fail(node, f"input {self.INPUTS[i]} ('{v.name}') has shape {list(v.shape)}, expected "
                                      f"{want} (direction '{self.direction}', hidden size {H}, layout {self.layout})")

        expect(1, (D, G * H, inp))
        expect(2, (D, G * H, H))
        expect(3, (D, 2 * G * H))
        expect(4, (batch,))
        state = (D, batch, H) if self.layout == 0 else (batch, D, H)
        expect(5, state)
        self.expect_extra(node, expect, state, D, H)
        return RecurrentDims(seq, batch, int(inp), H, D)

    def expect_extra(self, node, expect, state, D, H) -> None:
        """Shape checks of inputs beyond initial_h (LSTM)."""

    def infer(self, node):
        d = self.dims(node)
        dt = node.inputs[0].dtype
        if self.layout == 0:
            y, state = (d.seq, d.dirs, d.batch, d.hidden), (d.dirs, d.batch, d.hidden)
        else:
            y, state = (d.batch, d.seq, d.dirs, d.hidden), (d.batch, d.dirs, d.hidden)
        shapes = [y] + [state] * (len(self.OUTPUTS) - 1)
        return [(dt, shapes[k]) for k in range(len(node.outputs))]


@register()
class RNN(RecurrentBase):
    """Ht = f(Xt*W^T + Ht-1*R^T + Wb + Rb)"""
    GATES = 1
    DEFAULT_ACTIVATIONS = ("Tanh",)


@register()
class GRU(RecurrentBase):
    """Gates z, r, h (in that order in W, R and B)."""
    GATES = 3
    DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh")
    ATTRS = dict(RecurrentBase.ATTRS, linear_before_reset=0)


@register()
class LSTM(RecurrentBase):
    """Gates i, o, f, c (in that order in W, R and B); peepholes P in the order i, o, f."""
    GATES = 4
    DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")
    ATTRS = dict(RecurrentBase.ATTRS, input_forget=0)
    INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
    OUTPUTS = ("Y", "Y_h", "Y_c")

    def expect_extra(self, node, expect, state, D, H) -> None:
        expect(6, state)
        expect(7, (D, 3 * H))
