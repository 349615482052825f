"""PyTorch front end: nn.Modules and TorchScript files, compared with the module's own output.

All models are exported and compiled in one batch; outputs are compared at the project's tolerance
(rtol 1e-4, atol 1e-5) unless a case says otherwise.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import pysofie  # noqa: E402
from pysofie.errors import ModelLoadError  # noqa: E402
from tests.util import ATOL, RTOL, assert_close  # noqa: E402


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, groups=2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 1 * 1, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = self.pool(torch.sigmoid(self.c2(x)))
        return self.fc(torch.flatten(x, 1))


class RecurrentNet(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](5, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


class Attention(nn.Module):
    """Hand-written single-head attention: matmul, scaling, softmax."""

    def __init__(self, d=8):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.d = d

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.d), dim=-1)
        return w @ v


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.att(x, x, x, need_weights=False)[0]


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, left, right):
        s = self.a(left) + self.b(right)
        return torch.tanh(s), s * 2


def _seeded(make):
    def build():
        torch.manual_seed(0)
        m = make()
        for p in m.buffers():  # non-trivial batch-norm statistics
            if p.dtype.is_floating_point:
                p.data.uniform_(0.5, 1.5)
        return m.eval()
    return build


# (id, module builder, input shapes, as TorchScript file?, rtol, atol)
CASES = [
    ("convnet", _seeded(ConvNet), [(2, 1, 8, 8)], False, RTOL, ATOL),
    ("convnet_script", _seeded(ConvNet), [(3, 1, 8, 8)], True, RTOL, ATOL),
    ("rnn", _seeded(lambda: RecurrentNet("rnn")), [(2, 6, 5)], False, RTOL, ATOL),
    ("gru", _seeded(lambda: RecurrentNet("gru")), [(2, 6, 5)], False, RTOL, ATOL),
    ("lstm", _seeded(lambda: RecurrentNet("lstm")), [(2, 6, 5)], False, RTOL, ATOL),
    ("lstm_script", _seeded(lambda: RecurrentNet("lstm")), [(2, 6, 5)], True, RTOL, ATOL),
    ("attention", _seeded(Attention), [(2, 5, 8)], False, RTOL, ATOL),
    ("attention_script", _seeded(Attention), [(2, 5, 8)], True, RTOL, ATOL),
    ("multihead_attention", _seeded(MHA), [(2, 5, 8)], False, RTOL, ATOL),
    ("two_inputs", _seeded(TwoInputs), [(3, 4), (3, 6)], False, RTOL, ATOL),
    ("dynamic_batch", _seeded(lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))),
     [("N", 4)], False, RTOL, ATOL),
]


def _concrete(shape):
    return tuple(3 if isinstance(d, str) else d for d in shape)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pysofie.build.batch import compile_many
    d = tmp_path_factory.mktemp("torch_models")
    graphs, refs = [], {}
    for cid, make, shapes, script, rtol, atol in CASES:
        module = make()
        rng = np.random.default_rng(len(refs))
        xs = [rng.uniform(-1, 1, _concrete(s)).astype(np.float32) for s in shapes]
        with torch.no_grad():
            out = module(*[torch.from_numpy(x) for x in xs])
        outs = list(out) if isinstance(out, tuple) else [out]
        refs[cid] = (xs, [o.numpy() for o in outs])
        src = module
        if script:
            path = str(d / f"{cid}.pt")
            torch.jit.save(torch.jit.trace(module, tuple(torch.from_numpy(x) for x in xs)), path)
            src = path
        try:
            graphs.append(pysofie.api.load(src, input_shapes=shapes))
        except Exception as e:
            graphs.append(e)
    ok = iter(compile_many([g for g in graphs if not isinstance(g, Exception)]))
    return {c[0]: (g if isinstance(g, Exception) else next(ok)) for c, g in zip(CASES, graphs)}, refs


@pytest.mark.parametrize("cid,rtol,atol", [(c[0], c[4], c[5]) for c in CASES], ids=[c[0] for c in CASES])
def test_torch_model(built, cid, rtol, atol):
    sessions, refs = built
    sess = sessions[cid]
    if isinstance(sess, Exception):
        raise sess
    xs, expected = refs[cid]
    names = [i.name for i in sess.get_inputs()]
    got = sess.run(None, dict(zip(names, xs)))
    assert_close(got, expected, rtol, atol, what=cid)


def test_names_follow_forward_arguments(built):
    sessions, _ = built
    assert [i.name for i in sessions["two_inputs"].get_inputs()] == ["left", "right"]
    assert [i.name for i in sessions["convnet_script"].get_inputs()] == ["x"]


def test_inference_session_with_module():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Tanh()).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 2, 7)).astype(np.float32)
    sess = pysofie.InferenceSession(m, input_shapes=[(2, 2, 7)])
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        exp = m(torch.from_numpy(x)).numpy()
    assert_close(got, [exp], what="InferenceSession(nn.Module)")
    assert m.training is False


def test_emit_torchscript(tmp_path):
    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(3, 2)).eval()
    path = str(tmp_path / "lin.pt")
    torch.jit.save(torch.jit.script(m), path)
    files = pysofie.emit(path, str(tmp_path / "out"), input_shapes=[(1, 3)])
    text = open(files["header"]).read()
    assert "SOFIE_lin" in text and "struct Session" in text


def test_example_tensor_gives_dtype():
    """An example tensor instead of a shape: its dtype (int64 indices here) is the input's dtype."""
    torch.manual_seed(3)
    m = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)).eval()
    idx = torch.tensor([[1, 5, 9], [0, 2, 2]], dtype=torch.int64)
    sess = pysofie.InferenceSession(m, input_shapes=[idx])
    got = sess.run(None, {sess.get_inputs()[0].name: idx.numpy()})
    with torch.no_grad():
        exp = m(idx).numpy()
    assert_close(got, [exp], what="embedding with example tensor")


def test_missing_input_shapes(tmp_path):
    with pytest.raises(ModelLoadError, match="input_shapes"):
        pysofie.api.load(nn.Linear(2, 2))


def test_corrupt_and_non_torchscript_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 50)
    with pytest.raises(ModelLoadError, match="bad.pt"):
        pysofie.api.load(str(bad), input_shapes=[(1, 2)])
    sd = tmp_path / "state.pt"
    torch.save(nn.Linear(2, 2).state_dict(), str(sd))
    with pytest.raises(ModelLoadError, match="torch.jit.save"):
        pysofie.api.load(str(sd), input_shapes=[(1, 2)])
    with pytest.raises(ModelLoadError, match="no such file"):
        pysofie.api.load(str(tmp_path / "none.pt"), input_shapes=[(1, 2)])


def test_export_failure_is_clear():
    class Bad(nn.Module):
        def forward(self, x):
            return torch.linalg.eigh(x)[0]
    with pytest.raises(ModelLoadError, match="export to ONNX failed"):
        pysofie.api.load(Bad(), input_shapes=[(3, 3)])
