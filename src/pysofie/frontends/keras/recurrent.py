"""SimpleRNN, GRU, LSTM and Bidirectional."""
from __future__ import annotations

from typing import Any, Optional
import numpy as np

from ...ir import Value
from .builder import INT64_MAX, _Builder, _Ctx, _LayerProblem, _rnn_act


# -- recurrent layers -------------------------------------------------------------------------------------------
_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def _rnn_core(ctx: _Ctx, cls: str, cfg, x: Value, weights: list[np.ndarray], reverse: bool,
              init: list[Value]) -> tuple[Value, list[Value]]:
    """Run one direction. Returns (Y as [batch, time, units] in time order, final states [batch, units])."""
    b = ctx.b
    if cfg.get("stateful", False):
        raise _LayerProblem("stateful recurrent layers are not supported")
    bias = None
    units = int(cfg["units"])
    g = _GATES[cls]
    if len(weights) < 2:
        raise _LayerProblem(f"expected kernel and recurrent kernel weights, found {len(weights)}")
    kernel, rec = np.asarray(weights[0]), np.asarray(weights[1])
    if cfg.get("use_bias", True):
        if len(weights) < 3:
            raise _LayerProblem("the bias weight is missing from the file")
        bias = np.asarray(weights[2])

    def reorder(m: np.ndarray) -> np.ndarray:  # last axis holds the gates
        if cls != "LSTM":
            return m
        i, f, c, o = np.split(m, 4, axis=-1)
        return np.concatenate([i, o, f, c], axis=-1)

    W = reorder(kernel).T[None]  # [1, g*units, input]
    R = reorder(rec).T[None]
    attrs: dict[str, Any] = {"hidden_size": units}
    if cls == "GRU":
        reset_after = cfg.get("reset_after", True)
        attrs["linear_before_reset"] = 1 if reset_after else 0
        if bias is not None:
            if reset_after:
                bias = np.asarray(bias).reshape(2, g * units)
                B = np.concatenate([bias[0], bias[1]])
            else:
                B = np.concatenate([bias.reshape(-1), np.zeros(g * units, bias.dtype)])
    elif bias is not None:
        B = np.concatenate([reorder(bias.reshape(-1)), np.zeros(g * units, bias.dtype)])
    act = cfg.get("activation", "tanh")
    if cls == "SimpleRNN":
        a, al, be = _rnn_act(act, ctx.major)
        acts, alphas, betas = [a], [al], [be]
    else:
        rec_act = cfg.get("recurrent_activation", "sigmoid")
        names = [rec_act, act] + ([act] if cls == "LSTM" else [])
        trip = [_rnn_act(n, ctx.major) for n in names]
        acts = [t[0] for t in trip]
        alphas = [t[1] for t in trip]
        betas = [t[2] for t in trip]
    defaults = {"SimpleRNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[cls]
    if acts != defaults:
        attrs["activations"] = acts
        if any(v is not None for v in alphas):
            attrs["activation_alpha"] = [float(v) if v is not None else 0.0 for v in alphas]
            attrs["activation_beta"] = [float(v) if v is not None else 0.0 for v in betas]
    if reverse:
        attrs["direction"] = "reverse"
    xt = b.transpose(x, [1, 0, 2])  # [time, batch, input]
    op = {"SimpleRNN": "RNN", "GRU": "GRU", "LSTM": "LSTM"}[cls]
    ins: list[Optional[Value]] = [xt, b.const(W), b.const(R), b.const(B[None]) if bias is not None else None, None]
    n_states = 2 if cls == "LSTM" else 1
    if init:
        if len(init) != n_states:
            raise _LayerProblem(f"expected {n_states} initial state tensor(s), got {len(init)}")
        ins.append(b.unsqueeze(init[0], [0]))
        if cls == "LSTM":
            ins.append(b.unsqueeze(init[1], [0]))
    while ins and ins[-1] is None:
        ins.pop()
    outs = b.op(op, ins, n_out=1 + n_states, **attrs)
    y = b.transpose(b.squeeze(outs[0], [1]), [1, 0, 2])  # [batch, time, units]
    states = [b.squeeze(s, [0]) for s in outs[1:]]
    return y, states


def _reverse_time(b: _Builder, y: Value) -> Value:
    return b.slice(y, [-1], [-INT64_MAX], [1], [-1])


def _init_states(inputs, kw) -> tuple[Value, list[Value]]:
    init = []
    if isinstance(inputs, list):
        x, init = inputs[0], list(inputs[1:])
    else:
        x = inputs
    st = kw.get("initial_state")
    if st is not None:
        init = st if isinstance(st, list) else [st]
    if kw.get("mask") is not None:
        raise _LayerProblem("masking is not supported")
    return x, init


def _rnn(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x, init = _init_states(inputs, kw)
    back = bool(cfg.get("go_backwards", False))
    y, states = _rnn_core(ctx, ctx.cls, cfg, x, ctx.w, back, init)
    if cfg.get("return_sequences", False):
        out = _reverse_time(b, y) if back else y
    else:
        out = states[0]
    return [out] + (states if cfg.get("return_state", False) else [])


def _bidirectional(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x, init = _init_states(inputs, kw)
    inner = cfg["layer"]
    icls = inner.get("class_name")
    if icls not in _GATES:
        raise _LayerProblem(f"Bidirectional around {icls} is not supported")
    icfg = inner["config"]
    bcfg = (cfg.get("backward_layer") or {}).get("config", icfg)
    half = len(ctx.w) // 2
    n_states = 2 if icls == "LSTM" else 1
    fi, bi = (init[:n_states], init[n_states:]) if init else ([], [])
    fy, fs = _rnn_core(ctx, icls, icfg, x, ctx.w[:half], bool(icfg.get("go_backwards", False)), fi)
    by, bs = _rnn_core(ctx, icls, bcfg, x, ctx.w[half:], not bool(icfg.get("go_backwards", False)), bi)
    if icfg.get("return_sequences", False):
        fo, bo = fy, by
    else:
        fo, bo = fs[0], bs[0]
    mode = cfg.get("merge_mode", "concat")
    if mode == "concat":
        outs = [b.op("Concat", [fo, bo], axis=-1)]
    elif mode == "sum":
        outs = [b.op("Add", [fo, bo])]
    elif mode == "mul":
        outs = [b.op("Mul", [fo, bo])]
    elif mode == "ave":
        outs = [b.op("Mul", [b.op("Add", [fo, bo]), b.const(np.float32(0.5))])]
    elif mode is None:
        outs = [fo, bo]
    else:
        raise _LayerProblem(f"merge_mode '{mode}' is not supported")
    if icfg.get("return_state", False):
        outs += fs + bs
    return outs
