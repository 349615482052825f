"""Exceptions raised by pysofie. Every message names the file, node, operator or tensor concerned."""
from __future__ import annotations


class PysofieError(Exception):
    """Base class of pysofie's errors."""


class ModelLoadError(PysofieError):
    """The model file cannot be read or is not a valid model."""


class UnsupportedOperatorError(PysofieError, NotImplementedError):
    """One or more operators (or attribute values) are not supported. ``.problems`` lists them all."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = list(problems)
        where = f" in {source}" if source else ""
        msg = f"{len(self.problems)} unsupported operator(s){where}:\n  " + "\n  ".join(self.problems)
        super().__init__(msg)


class ShapeInferenceError(PysofieError):
    """A node's inputs have types or shapes that the operator cannot accept."""


class CompileError(PysofieError):
    """The C++ compiler rejected the generated code."""


class InvalidInputError(PysofieError, ValueError):
    """An input given to InferenceSession.run has a wrong name, shape or dtype."""


class WeightFileError(PysofieError, ValueError):
    """A weight file (.dat / .bin) is missing, truncated, corrupted or belongs to another model."""


class InvalidModelError(ModelLoadError):
    """The model breaks the ONNX specification (structure, attribute types or ranges, element types). ``.problems``
    lists every problem found."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = list(problems)
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{len(self.problems)} problem(s) with the model:\n  " + "\n  ".join(self.problems))


class GeneratedCodeError(CompileError):
    """The C++ compiler rejected code that pysofie generated: a bug in pysofie, not in the model. The message keeps
    the path of the generated sources for the report."""
