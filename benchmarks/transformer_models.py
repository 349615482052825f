"""Transformer and depthwise-convolution models with random weights, built from small configurations as the
widely used libraries lay them out (BERT, GPT-2, T5, ViT, ConvNeXt), exported to ONNX by torch.onnx.export
(dynamo=False) at fixed shapes. No downloads: every weight comes from a seeded generator.

    from transformer_models import MODELS, build
    model = build("bert")          # onnx.ModelProto
    feeds = MODELS["bert"].feeds() # {input name: array}
"""
from __future__ import annotations

import dataclasses
import io
import math
from typing import Callable

import numpy as np


def _torch():
    import torch
    return torch


def _modules():
    torch = _torch()
    nn = torch.nn
    F = nn.functional

    class LayerNorm(nn.LayerNorm):
        pass

    class RMSNorm(nn.Module):  # T5's layer norm: no mean, no bias
        def __init__(self, d, eps=1e-6):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d) + 0.1 * torch.randn(d))
            self.eps = eps

        def forward(self, x):
            var = x.pow(2).mean(-1, keepdim=True)
            return self.weight * (x * torch.rsqrt(var + self.eps))

    class Attention(nn.Module):
        def __init__(self, d, heads, bias=True, causal=False, scale=True):
            super().__init__()
            self.h, self.dk, self.causal, self.scale = heads, d // heads, causal, scale
            self.qkv = nn.Linear(d, 3 * d, bias=bias)
            self.out = nn.Linear(d, d, bias=bias)

        def forward(self, x, mask=None):
            B, S, D = x.shape
            q, k, v = self.qkv(x).split(D, dim=-1)
            q = q.view(B, S, self.h, self.dk).transpose(1, 2)
            k = k.view(B, S, self.h, self.dk).transpose(1, 2)
            v = v.view(B, S, self.h, self.dk).transpose(1, 2)
            s = q @ k.transpose(-2, -1)
            if self.scale:
                s = s / math.sqrt(self.dk)
            if self.causal:
                keep = torch.tril(torch.ones(S, S, dtype=torch.bool))
                s = s.masked_fill(~keep, float("-inf"))
            if mask is not None:
                s = s + mask
            p = torch.softmax(s, dim=-1)
            o = (p @ v).transpose(1, 2).reshape(B, S, D)
            return self.out(o)

    class Block(nn.Module):
        """pre-norm (GPT-2, ViT, T5) or post-norm (BERT) encoder/decoder block"""

        def __init__(self, d, heads, ff, act="gelu", pre=True, norm="ln", bias=True, causal=False, scale=True):
            super().__init__()
            mk = (lambda: LayerNorm(d, eps=1e-5)) if norm == "ln" else (lambda: RMSNorm(d))
            self.n1, self.n2 = mk(), mk()
            self.att = Attention(d, heads, bias=bias, causal=causal, scale=scale)
            self.fc1 = nn.Linear(d, ff, bias=bias)
            self.fc2 = nn.Linear(ff, d, bias=bias)
            self.pre = pre
            self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "relu": nn.ReLU()}[act]

        def forward(self, x, mask=None):
            if self.pre:
                x = x + self.att(self.n1(x), mask)
                return x + self.fc2(self.act(self.fc1(self.n2(x))))
            x = self.n1(x + self.att(x, mask))
            return self.n2(x + self.fc2(self.act(self.fc1(x))))

    class Bert(nn.Module):
        def __init__(self, vocab=1000, d=128, layers=2, heads=4, ff=512, seq=64):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(0.02 * torch.randn(seq, d))
            self.ln = LayerNorm(d, eps=1e-12)
            self.blocks = nn.ModuleList(Block(d, heads, ff, pre=False) for _ in range(layers))
            self.pool = nn.Linear(d, d)

        def forward(self, ids, attention_mask):
            x = self.ln(self.tok(ids) + self.pos)
            mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
            for b in self.blocks:
                x = b(x, mask)
            return torch.tanh(self.pool(x[:, 0]))

    class GPT2(nn.Module):
        def __init__(self, vocab=4000, d=128, layers=2, heads=4, seq=64):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(0.02 * torch.randn(seq, d))
            self.blocks = nn.ModuleList(Block(d, heads, 4 * d, act="gelu_tanh", causal=True) for _ in range(layers))
            self.lnf = LayerNorm(d)
            self.head = nn.Linear(d, vocab, bias=False)

        def forward(self, ids):
            x = self.tok(ids) + self.pos
            for b in self.blocks:
                x = b(x)
            return self.head(self.lnf(x))

    class T5Encoder(nn.Module):
        def __init__(self, vocab=1000, d=128, layers=2, heads=4, ff=512, seq=64):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.bias = nn.Parameter(0.1 * torch.randn(1, heads, seq, seq))  # stands for the relative position bias
            self.blocks = nn.ModuleList(Block(d, heads, ff, act="relu", norm="rms", bias=False, scale=False)
                                        for _ in range(layers))
            self.nf = RMSNorm(d)

        def forward(self, ids):
            x = self.tok(ids)
            for b in self.blocks:
                x = b(x, self.bias)
            return self.nf(x)

    class ViT(nn.Module):
        def __init__(self, image=64, patch=8, d=128, layers=2, heads=4, classes=100):
            super().__init__()
            n = (image // patch) ** 2
            self.patch = nn.Conv2d(3, d, patch, patch)
            self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d))
            self.pos = nn.Parameter(0.02 * torch.randn(1, n + 1, d))
            self.blocks = nn.ModuleList(Block(d, heads, 4 * d) for _ in range(layers))
            self.ln = LayerNorm(d, eps=1e-6)
            self.head = nn.Linear(d, classes)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln(x)[:, 0])

    class ConvNeXtBlock(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.dw = nn.Conv2d(d, d, 7, padding=3, groups=d)
            self.ln = LayerNorm(d, eps=1e-6)
            self.fc1 = nn.Linear(d, 4 * d)
            self.fc2 = nn.Linear(4 * d, d)
            self.gamma = nn.Parameter(0.1 * torch.randn(d))

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.fc2(F.gelu(self.fc1(self.ln(y))))
            return x + (self.gamma * y).permute(0, 3, 1, 2)

    class ConvNeXt(nn.Module):
        def __init__(self, dims=(32, 64, 128), depths=(1, 1, 1), classes=100):
            super().__init__()
            self.stem = nn.Conv2d(3, dims[0], 4, 4)
            self.stem_ln = LayerNorm(dims[0], eps=1e-6)
            stages = []
            for i, (d, n) in enumerate(zip(dims, depths)):
                layers = []
                if i > 0:
                    layers.append(nn.Conv2d(dims[i - 1], d, 2, 2))
                layers += [ConvNeXtBlock(d) for _ in range(n)]
                stages.append(nn.Sequential(*layers))
            self.stages = nn.ModuleList(stages)
            self.ln = LayerNorm(dims[-1], eps=1e-6)
            self.head = nn.Linear(dims[-1], classes)

        def forward(self, x):
            x = self.stem(x)
            x = self.stem_ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for s in self.stages:
                x = s(x)
            return self.head(self.ln(x.mean((2, 3))))

    class Depthwise(nn.Module):  # a 7x7 depthwise convolution alone
        def __init__(self, c=96, k=7):
            super().__init__()
            self.dw = nn.Conv2d(c, c, k, padding=k // 2, groups=c)

        def forward(self, x):
            return self.dw(x)

    return dict(bert=Bert, gpt2=GPT2, t5=T5Encoder, vit=ViT, convnext=ConvNeXt, depthwise=Depthwise)


@dataclasses.dataclass
class Spec:
    cls: str
    kwargs: dict
    inputs: Callable  # rng -> {name: array}

    def feeds(self, seed: int = 1) -> dict:
        return self.inputs(np.random.default_rng(seed))


def _ids(vocab, seq, batch=1):
    return lambda rng: {"ids": rng.integers(0, vocab, (batch, seq)).astype(np.int64)}


def _bert_inputs(rng, seq=64, batch=1):
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq * 3 // 4:] = 0  # padding at the end
    return {"ids": rng.integers(0, 1000, (batch, seq)).astype(np.int64), "attention_mask": mask}


def _image(size, batch=1, c=3):
    return lambda rng: {"x": rng.standard_normal((batch, c, size, size)).astype(np.float32)}


# name -> configuration (tiny-to-small sizes; fixed shapes)
MODELS = {
    "bert": Spec("bert", dict(d=256, layers=2, heads=4, ff=1024, seq=128), lambda r: _bert_inputs(r, 128)),
    "gpt2": Spec("gpt2", dict(vocab=8000, d=256, layers=2, heads=4, seq=64), _ids(8000, 64)),
    "t5": Spec("t5", dict(d=256, layers=2, heads=4, ff=1024, seq=128), _ids(1000, 128)),
    "vit": Spec("vit", dict(image=96, patch=8, d=192, layers=2, heads=3), _image(96)),
    "convnext": Spec("convnext", dict(dims=(48, 96, 192), depths=(2, 2, 2)), _image(128)),
    "depthwise7x7": Spec("depthwise", dict(c=96, k=7), _image(56, c=96)),
}

# small versions for the tests
TINY = {
    "bert": Spec("bert", dict(vocab=1000, d=64, layers=1, heads=4, ff=128, seq=16), lambda r: _bert_inputs(r, 16)),
    "gpt2": Spec("gpt2", dict(vocab=300, d=64, layers=1, heads=4, seq=16), _ids(300, 16)),
    "t5": Spec("t5", dict(vocab=1000, d=64, layers=1, heads=4, ff=128, seq=16), _ids(1000, 16)),
    "vit": Spec("vit", dict(image=32, patch=8, d=64, layers=1, heads=4, classes=10), _image(32)),
    "convnext": Spec("convnext", dict(dims=(16, 32), depths=(1, 1), classes=10), _image(32)),
    "depthwise7x7": Spec("depthwise", dict(c=24, k=7), _image(20, c=24)),
}


def build(name: str, seed: int = 0, tiny: bool = False):
    """The ONNX model (onnx.ModelProto) of configuration `name`, random weights from `seed`."""
    import onnx
    torch = _torch()
    spec = (TINY if tiny else MODELS)[name]
    torch.manual_seed(seed)
    module = _modules()[spec.cls](**spec.kwargs).eval()
    with torch.no_grad():  # weights of a trained-looking scale; LayerNorm affine params not all ones
        for n, p in module.named_parameters():
            if p.dim() == 1 and ("ln" in n or "n1" in n or "n2" in n or "nf" in n) and n.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.02 * torch.randn_like(p))
    feeds = spec.feeds()
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    buf = io.BytesIO()
    torch.onnx.export(module, args, buf, input_names=list(feeds), output_names=["y"], opset_version=17,
                      dynamo=False)
    return onnx.load_from_string(buf.getvalue())
