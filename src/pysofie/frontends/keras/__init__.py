"""Keras front end: ``.h5`` (Keras 2 / tf.keras HDF5, Keras 3 legacy HDF5) and ``.keras`` (Keras 3 zip) -> IR.

The files are read with h5py, zipfile and json only: neither TensorFlow nor Keras is imported. Sequential and
Functional models (several inputs and outputs, shared layers) are supported. The IR follows ONNX semantics; every
tensor keeps Keras' own layout (channels_last), so the model's inputs and outputs look exactly as in Keras.
Layers that ONNX defines channels first (convolutions, pooling, resizing) are wrapped in Transposes, and weights
are rearranged at load time. The batch dimension becomes the size parameter ``N``.

The package: files (reading), convert (model configuration -> graph), registry (class name -> converter),
converters by family: core, conv, recurrent, attention, applications (layers keras.applications defines).
"""
from .convert import graph_from_keras

__all__ = ["graph_from_keras"]
