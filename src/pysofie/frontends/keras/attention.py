"""MultiHeadAttention."""
from __future__ import annotations

import numpy as np

from .builder import _Ctx, _LayerProblem, _int_dims, _shape


def _mha(ctx: _Ctx, cfg, inputs, kw):
    """MultiHeadAttention over the sequence axis (rank-3 inputs), lowered to MatMul and Softmax."""
    b = ctx.b
    if not isinstance(inputs, list) or len(inputs) < 2:
        raise _LayerProblem("expects query and value inputs")
    q, v = inputs[0], inputs[1]
    k = inputs[2] if len(inputs) > 2 and inputs[2] is not None else kw.get("key") or v
    if kw.get("attention_mask") is not None or kw.get("query_mask") is not None or \
            kw.get("value_mask") is not None or kw.get("key_mask") is not None:
        raise _LayerProblem("attention masks are not supported")
    if kw.get("return_attention_scores", False):
        raise _LayerProblem("return_attention_scores=True is not supported")
    if cfg.get("use_gate", False) or cfg.get("sliding_window") is not None:
        raise _LayerProblem("gated or sliding-window attention is not supported")
    axes = cfg.get("attention_axes")
    if any(len(_shape(t)) != 3 for t in (q, k, v)) or axes not in (None, [1], 1, [-2]):
        raise _LayerProblem("only attention over the sequence axis of [batch, time, features] inputs is "
                            "supported")
    if cfg.get("output_shape") not in (None, []) and not isinstance(cfg.get("output_shape"), int) and \
            len(cfg.get("output_shape")) != 1:
        raise _LayerProblem("a multi-dimensional output_shape is not supported")
    heads, kd = int(cfg["num_heads"]), int(cfg["key_dim"])
    vd = int(cfg.get("value_dim") or kd)
    bias = cfg.get("use_bias", True)
    step = 2 if bias else 1
    w = [ctx.weight(i, n) for i, n in enumerate(
        ["query kernel", "query bias", "key kernel", "key bias", "value kernel", "value bias", "output kernel",
         "output bias"][:: (1 if bias else 2)])]
    wq, wk, wv, wo = w[0], w[step], w[2 * step], w[3 * step]
    bq, bk, bv, bo = (w[1], w[3], w[5], w[7]) if bias else (None,) * 4
    scale = 1.0 / np.sqrt(float(kd))

    def project(x, kernel, bvec, width, s=1.0):
        y = b.op("MatMul", [x, b.const(kernel.reshape(kernel.shape[0], -1) * s)])
        if bvec is not None:
            y = b.op("Add", [y, b.const(bvec.reshape(-1) * s)])
        return b.reshape(y, [0, -1, heads, width])

    qh = b.transpose(project(q, wq, bq, kd, scale), [0, 2, 1, 3])  # [N, H, Tq, K]
    kh = b.transpose(project(k, wk, bk, kd), [0, 2, 3, 1])  # [N, H, K, Tk]
    vh = b.transpose(project(v, wv, bv, vd), [0, 2, 1, 3])  # [N, H, Tk, V]
    scores = b.op("MatMul", [qh, kh])
    if kw.get("use_causal_mask", False):
        tq = _int_dims(q, [1], "causal mask")[0]
        tk = _int_dims(k, [1], "causal mask")[0]
        allowed = np.arange(tq)[:, None] >= np.arange(tk)[None, :]
        scores = b.op("Add", [scores, b.const(np.where(allowed, 0.0, -1e9).astype(np.float32))])
    probs = b.op("Softmax", [scores], axis=-1)
    ctxv = b.transpose(b.op("MatMul", [probs, vh]), [0, 2, 1, 3])  # [N, Tq, H, V]
    flat = b.reshape(ctxv, [0, -1, heads * vd])
    y = b.op("MatMul", [flat, b.const(wo.reshape(heads * vd, -1))])
    if bo is not None:
        y = b.op("Add", [y, b.const(bo)])
    return [y]
