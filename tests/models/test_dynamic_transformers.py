"""Transformer exports with dynamic batch and sequence axes (issue 9): BERT-, GPT-2-, T5-, ViT-, Llama-,
Wav2Vec2- and BART-style models, and a ResNet with dynamic height and width, built here from HuggingFace
`transformers` configurations with random weights (tiny: hidden 32, 2 layers; nothing is downloaded), exported
with torch.onnx.export (the TorchScript exporter, and the dynamo exporter when onnxscript is installed). Each
export is compiled once (all of them into one library) and must match onnxruntime at three batch sizes and
lengths (audio: sample counts; ViT: batch only, its sequence is fixed by the image size; ResNet: height and
width). The text models take an attention mask as a second input, with padding at the end of the last sequence.

Tolerance: rtol 1e-4, atol 2e-5 (outputs are layer-normalized, of order 1).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-4, 2e-5
HIDDEN = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
VOCAB = 100


def _bert():
    T = transformers
    return T.BertModel(T.BertConfig(vocab_size=VOCAB, max_position_embeddings=64, **HIDDEN), add_pooling_layer=False)


def _gpt2():
    T = transformers
    return T.GPT2Model(T.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                    bos_token_id=0, eos_token_id=0))


def _t5():
    T = transformers
    return T.T5EncoderModel(T.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))


def _vit():
    T = transformers
    return T.ViTModel(T.ViTConfig(image_size=16, patch_size=4, num_channels=3, **HIDDEN), add_pooling_layer=False)


def _llama():
    T = transformers
    return T.LlamaModel(T.LlamaConfig(vocab_size=VOCAB, max_position_embeddings=64, num_key_value_heads=2, **HIDDEN))


def _wav2vec2():
    T = transformers
    return T.Wav2Vec2Model(T.Wav2Vec2Config(
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True, **HIDDEN))


def _bart():  # encoder and decoder; the decoder's inputs are the shifted input ids (computed in the graph)
    T = transformers
    return T.BartModel(T.BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, max_position_embeddings=64))


def _resnet():  # convolutions and pooling over a symbolic height and width
    T = transformers
    return T.ResNetModel(T.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                        layer_type="basic"))


# name: (builder, input kind)
MODELS = {"bert": (_bert, "ids"), "gpt2": (_gpt2, "ids"), "t5": (_t5, "ids"), "vit": (_vit, "image"),
          "llama": (_llama, "ids"), "wav2vec2": (_wav2vec2, "audio"), "bart": (_bart, "ids"),
          "resnet": (_resnet, "image_hw")}


def _have_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


EXPORTERS = ["torchscript"] + (["dynamo"] if _have_onnxscript() else [])
# the six models through both exporters; BART and ResNet through the TorchScript one (test time)
CASES = [(m, e) for m in MODELS for e in EXPORTERS if e == "torchscript" or m not in ("bart", "resnet")]


def example_input(kind: str, batch: int, length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 97 * batch + length)
    if kind == "ids":
        return rng.integers(0, VOCAB, (batch, length)).astype(np.int64)
    if kind == "image":
        return rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
    if kind == "image_hw":
        return rng.standard_normal((batch, 3, 16 + length, 40 - length)).astype(np.float32)
    return rng.standard_normal((batch, 400 + 37 * length)).astype(np.float32)  # audio samples


def example_feeds(kind: str, batch: int, length: int) -> dict:
    x = example_input(kind, batch, length)
    if kind != "ids":
        return {"x": x}
    mask = np.ones((batch, length), np.int64)
    mask[-1, length - 2:] = 0
    return {"x": x, "mask": mask}


class LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).last_hidden_state


class LastHiddenMasked(LastHidden):
    def forward(self, x, mask):
        return self.model(input_ids=x, attention_mask=mask).last_hidden_state


def export(name: str, exporter: str, path: str) -> None:
    build, kind = MODELS[name]
    torch.manual_seed(0)
    model = build()
    model.config._attn_implementation = "eager"
    wrapped = (LastHiddenMasked if kind == "ids" else LastHidden)(model.eval()).eval()
    feeds = example_feeds(kind, 2, 7)
    args = tuple(torch.from_numpy(a) for a in feeds.values())
    axes = {"image": {0: "batch"}, "image_hw": {0: "batch", 2: "height", 3: "width"}, "ids": {0: "batch", 1: "seq"},
            "audio": {0: "batch", 1: "samples"}}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {k: torch.export.Dim(v) for k, v in axes.items()}
            prog = torch.onnx.export(wrapped, args, input_names=list(feeds), output_names=["y"],
                                     dynamic_shapes={n: dims for n in feeds}, dynamo=True)
            prog.save(path)  # weights inside the file
        else:
            torch.onnx.export(wrapped, args, path, input_names=list(feeds), output_names=["y"],
                              dynamic_axes={**{n: axes for n in feeds}, "y": {0: "batch"}}, dynamo=False,
                              opset_version=17)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every export, compiled together (one compiler run): {(model, exporter): (path, session or exception)}."""
    from pysofie.build.batch import compile_many
    d = tmp_path_factory.mktemp("dyn_transformers")
    paths, failed = {}, {}
    for name, exporter in CASES:
        path = os.path.join(d, f"{name}_{exporter}.onnx")
        try:
            export(name, exporter, path)
            paths[(name, exporter)] = path
        except Exception as e:  # the exporter itself refused: reported by the test of that case
            failed[(name, exporter)] = (None, e)
    sessions = compile_many(list(paths.values()))
    return {**failed, **{k: (p, s) for (k, p), s in zip(paths.items(), sessions)}}


@pytest.mark.parametrize("name,exporter", CASES)
def test_matches_onnxruntime_at_two_lengths_and_batches(name, exporter, compiled):
    path, sess = compiled[(name, exporter)]
    if path is None:
        pytest.skip(f"torch.onnx.export ({exporter}) could not export {name}: {sess}")
    if isinstance(sess, Exception):
        raise sess
    kind = MODELS[name][1]
    # the inputs' axes stay symbolic: one library serves every size
    shape = sess.get_inputs()[0].shape
    assert all(isinstance(shape[a], str) for a in
               {"image": [0], "image_hw": [0, 2, 3], "ids": [0, 1], "audio": [0, 1]}[kind]), shape
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for batch, length in [(1, 5), (3, 9), (2, 12)]:
        feeds = example_feeds(kind, batch, length)
        (want,) = ref.run(None, feeds)
        (got,) = sess.run(None, feeds)
        assert got.shape == want.shape, (batch, length)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"batch {batch}, length {length}")
