"""pysofie inside ROOT: models declared to cling, evaluated per event in RDataFrame, on distributed RDataFrame.

    import ROOT, pysofie.root
    m = pysofie.root.declare("model.onnx")             # SOFIE_model::Session now exists in cling
    df2 = pysofie.root.define(df, "score", "model.onnx", columns=["pt", "eta", "phi"])

ROOT is imported only when a function here is called (``import pysofie`` never imports it).

Two ways to bring a model to cling:

- compiled (the default): pysofie builds (or takes from its cache) the shared library with g++/clang at -O3
  -march=native, ROOT loads it by absolute path, and cling gets only a thin ``<namespace>::Session`` wrapper
  (wrapper.py) with the generated API calling into it. Fast, and bit-identical to ``InferenceSession``.
- ``jit=True``: the generated header itself is included in cling. cling compiles it with its own flags: without
  ``-march``, so the AVX2/FMA kernels give way to their portable fallbacks (several times slower). To give cling
  more, set ``EXTRA_CLING_ARGS`` before ROOT is imported, e.g. ``EXTRA_CLING_ARGS="-O3 -mavx2 -mfma"``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
from typing import Optional, Sequence

from ..errors import InvalidInputError, PysofieError

__all__ = ["declare", "define", "declare_function", "DeclaredModel", "include_dir", "load_root"]

_lock = threading.RLock()
_declared: dict[str, "DeclaredModel"] = {}
_defines: dict[str, tuple] = {}
_functions: dict[str, tuple] = {}


def include_dir() -> str:
    """The directory to add to the include path for ``#include "pysofie/SofieFunctor.hxx"``."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "include")


def load_root():
    """import ROOT, with a clear error when it is not installed."""
    try:
        import ROOT
    except ImportError as e:
        raise PysofieError(f"pysofie.root needs ROOT (pip install root, or a ROOT installation): {e}") from None
    return ROOT


@dataclasses.dataclass
class DeclaredModel:
    """A model declared to cling. ``session_class`` is the C++ class (``SOFIE_<name>::Session``)."""
    name: str
    namespace: str
    mode: str  # "compiled" or "jit"
    code_hash: str
    weight_file: str  # absolute path ("" when the weights are in the code)
    library: str  # the shared library ROOT loaded ("" in jit mode)
    session: object  # the InferenceSession behind it (same code, same weights)
    in_type: str
    out_type: str
    n_in: int  # input values per event
    n_out: int  # output values per event

    @property
    def session_class(self) -> str:
        return f"{self.namespace}::Session"

    def make_session(self, *args):
        """A new C++ Session (a cppyy object): its weight file by default."""
        ROOT = load_root()
        cls = getattr(getattr(ROOT, self.namespace), "Session")
        return cls(*(args or ((self.weight_file,) if self.weight_file else ())))


_sessions: dict[tuple, object] = {}


def _model_key(model, session_options):
    """A key for a model given again (a file unchanged since, the same serialized ONNX), or None."""
    try:
        opts = repr(sorted(session_options.items()))
        if isinstance(model, (str, os.PathLike)):
            st = os.stat(model)
            return ("path", os.path.abspath(os.fspath(model)), st.st_mtime_ns, st.st_size, opts)
        if isinstance(model, (bytes, bytearray)):
            return ("bytes", hashlib.sha256(model).hexdigest(), opts)
        if type(model).__name__ == "ModelProto":
            return ("onnx", hashlib.sha256(model.SerializeToString()).hexdigest(), opts)
    except (OSError, TypeError, ValueError):
        pass
    return None


def _as_session(model, session_options):
    """The InferenceSession for `model`: the same object for a model given again (define() is called per
    RDataFrame, and code generation should not run each time)."""
    from ..session import InferenceSession
    if isinstance(model, InferenceSession):
        if session_options:
            raise TypeError("session options go with a model, not with an InferenceSession")
        return model
    key = _model_key(model, session_options)
    if key is not None and key in _sessions:
        return _sessions[key]
    sess = InferenceSession(model, **session_options)
    if key is not None:
        _sessions[key] = sess
    return sess


def _per_event(shape, what: str, model: str) -> int:
    """Values per event of an input/output of shape [batch, ...] (or fixed shape with batch 1)."""
    from ..ir.shapes import Sym
    env_dims = []
    for k, d in enumerate(shape):
        if isinstance(d, Sym):
            if k != 0:
                raise InvalidInputError(f"model '{model}': {what} has shape {shape}: only the first (batch) "
                                        "dimension may be symbolic for per-event evaluation")
            continue
        if k == 0 and len(shape) > 1 and d != 1:
            raise InvalidInputError(f"model '{model}': {what} has a fixed batch of {d} (shape {shape}): per-event "
                                    "evaluation needs a batch of 1 or a symbolic batch")
        if k > 0 or len(shape) == 1:
            env_dims.append(d)
    n = 1
    for d in env_dims:
        n *= d
    return n


def declare(model, *, jit: bool = False, **session_options) -> DeclaredModel:
    """Declare the model's ``<namespace>::Session`` to cling (see the module docstring); returns a DeclaredModel.

    model: anything InferenceSession takes, or an InferenceSession (its library and weights are used).
    Idempotent per process: declaring the same code again returns the first declaration; another model under
    an already declared namespace is an error (pass ``namespace=`` or ``name=`` to tell them apart)."""
    from ..session_state import code_hash
    sess = _as_session(model, session_options)
    gm = sess._gm
    h = code_hash(gm.header)
    mode = "jit" if jit else "compiled"
    with _lock:
        old = _declared.get(gm.namespace)
        if old is not None:
            if old.code_hash == h and old.mode == mode:
                return old
            raise PysofieError(f"namespace '{gm.namespace}' is already declared to cling for "
                               f"{'another model' if old.code_hash != h else 'the ' + old.mode + ' mode'}: "
                               "give this one another name= or namespace=")
        ROOT = load_root()
        g = sess._graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            n_in = n_out = 0  # the Session is declared; the per-event helpers need one input and one output
        else:
            n_in = _per_event(g.inputs[0].shape, f"input '{g.inputs[0].name}'", gm.name)
            n_out = _per_event(g.outputs[0].shape, f"output '{g.outputs[0].name}'", gm.name)
        weight_file = os.path.abspath(sess._weight_path) if sess._weight_path else ""
        library = ""
        if jit:
            _declare_jit(ROOT, gm)
        else:
            library = os.path.abspath(sess._native.lib._name)
            if ROOT.gSystem.Load(library) < 0:
                raise PysofieError(f"model '{gm.name}': ROOT could not load {library}")
            from .wrapper import compiled_wrapper
            _cling_declare(ROOT, compiled_wrapper(gm, weight_file), gm.name)
        dm = DeclaredModel(gm.name, gm.namespace, mode, h, weight_file, library, sess,
                           g.inputs[0].dtype.ctype if g.inputs else "float",
                           g.outputs[0].dtype.ctype if g.outputs else "float", n_in, n_out)
        _declared[gm.namespace] = dm
        return dm


# cling compiles declared code without optimization unless told otherwise (measured with the PyPI ROOT 6.40: a
# loop over a std::vector ran at g++ -O0 speed); the pragma raises the level for one declaration (transaction),
# which includes the templates it instantiates: the functor and RDataFrame's per-event code for it. Not for the
# jit mode: there the model's own code (from the header, which cling compiles when first used) ran twice as slow
# under it (medium MLP in RDataFrame: 6.0 instead of 3.1 us per event).
CLING_OPTIMIZE = "#pragma cling optimize(2)\n"


def _cling_declare(ROOT, code: str, what: str, optimize: bool = True) -> None:
    if not ROOT.gInterpreter.Declare((CLING_OPTIMIZE if optimize else "") + code):
        raise PysofieError(f"{what}: cling did not accept the declaration (see ROOT's messages above)")


def _declare_jit(ROOT, gm) -> None:
    from ..build.blas import find_blas
    from ..build.fs import atomic_write, cache_dir
    blas = find_blas()
    # the BLAS the header calls (scipy-openblas32: -L<dir> -lscipy_openblas)
    libdirs = [f[2:] for f in blas.libs if f.startswith("-L")]
    libs = [f[2:] for f in blas.libs if f.startswith("-l")]
    for lib in libs:
        for d in libdirs:
            path = os.path.join(d, f"lib{lib}.so")
            if os.path.exists(path):
                ROOT.gSystem.Load(path)
                break
    key = hashlib.sha256(gm.header.encode()).hexdigest()
    path = os.path.join(cache_dir(), "include", key[:2], key, f"{gm.namespace}.hxx")
    if not os.path.exists(path):
        atomic_write(path, gm.header)
    defines = "".join(f"#define {f[2:].replace('=', ' ', 1)}\n" for f in blas.cflags if f.startswith("-D"))
    _cling_declare(ROOT, f'{defines}#include "{path}"\n', gm.name, optimize=False)


def _functor_prelude(ROOT) -> None:
    with _lock:
        if not _functions.get("__prelude__"):
            ROOT.gInterpreter.AddIncludePath(include_dir())
            _cling_declare(ROOT, '#include "ROOT/RDataFrame.hxx"\n#include "pysofie/SofieFunctor.hxx"\n',
                           "pysofie/SofieFunctor.hxx")
            _functions["__prelude__"] = ()


def _column_types(df, columns) -> list[str]:
    types = []
    for c in columns:
        try:
            t = str(df.GetColumnType(c))
        except Exception as e:
            raise InvalidInputError(f"column '{c}': not in the RDataFrame ({e})") from None
        if "RVec" in t or "vector" in t or "[" in t:
            raise InvalidInputError(f"column '{c}' has type {t}: only scalar columns (one value per event) are "
                                    "taken as model inputs")
        types.append(t)
    return types


def _check_columns(dm: DeclaredModel, columns) -> None:
    if dm.n_in == 0:
        raise InvalidInputError(f"model '{dm.name}': per-event evaluation needs a model with one input and one "
                                "output")
    if len(columns) != dm.n_in:
        raise InvalidInputError(f"model '{dm.name}': its input takes {dm.n_in} values per event, "
                                f"{len(columns)} columns given ({list(columns)})")


def define(df, name: str, model, columns: Sequence[str], *, nslots: Optional[int] = None, jit: bool = False,
           **session_options):
    """``df`` with a new column ``name``: the model's output for each event (a ``ROOT::RVec`` of its values),
    computed from ``columns`` (in the order of the model's input features) by ``pysofie::SofieFunctor`` with one
    Session per slot (works with ROOT.EnableImplicitMT). Returns the new RDataFrame node."""
    ROOT = load_root()
    dm = declare(model, jit=jit, **session_options)
    columns = list(columns)
    _check_columns(dm, columns)
    types = _column_types(df, columns)
    n = int(nslots if nslots is not None else df.GetNSlots())
    if n < int(df.GetNSlots()):
        raise InvalidInputError(f"model '{dm.name}': nslots={n}, but the RDataFrame runs {df.GetNSlots()} slots "
                                "(leave nslots out: df.GetNSlots())")
    try:
        return _define_slots(ROOT, df, name, dm.session_class, dm.out_type, dm.in_type, columns, types, n,
                             dm.n_out, dm.weight_file, optimize=dm.mode != "jit")
    except PysofieError:
        raise
    except Exception as e:  # RDataFrame's own refusal through cppyy (a column name that is taken or not valid C++)
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        why = (lines[-1] if lines else type(e).__name__).split("runtime_error: ", 1)[-1]
        raise InvalidInputError(f"model '{dm.name}': RDataFrame cannot define column '{name}': {why}") from None


def _define_slots(ROOT, df, name: str, session_class: str, out_type: str, in_type: str, columns, types, nslots: int,
                  nout: int, weight_file: str, optimize: bool = True):
    """df.DefineSlot(name, pysofie::SofieFunctor<session_class, ...>, columns) through a C++ function declared once
    per functor type. benchmarks/rdf.py calls it with a Session that does nothing: its baseline then goes through
    exactly this code, compiled alike."""
    _functor_prelude(ROOT)
    functor = f"pysofie::SofieFunctor<{session_class}, {out_type}, {in_type}, {', '.join(types)}>"
    with _lock:
        call = _defines.get(functor)
        if call is None:
            fn = f"pysofie_define_{len(_defines)}"
            _cling_declare(ROOT, f"""
ROOT::RDF::RNode {fn}(ROOT::RDF::RNode df, const std::string& name, const std::vector<std::string>& columns,
                      unsigned nslots, std::size_t nout, const std::string& weights) {{
   {functor} f = weights.empty() ? {functor}(nslots, nout) : {functor}(nslots, nout, weights);
   return df.DefineSlot(name, f, columns);
}}""", f"define '{name}' ({session_class})", optimize)
            import cppyy  # ROOT's attribute lookup of a new global takes milliseconds: once per function
            call = _defines[functor] = (getattr(cppyy.gbl, fn), cppyy.gbl.std.vector["std::string"],
                                        cppyy.gbl.ROOT.RDF.AsRNode)
    fn, vec, as_node = call
    return fn(as_node(df), name, vec(list(columns)), nslots, nout, weight_file)


# what a column type may hold in the declared C++ (identifiers, scopes, template arguments, const, *, &): no
# parentheses, braces, semicolons or quotes, so a type cannot carry code
_CPP_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_:<>,*& ]*")


def declare_function(model, function: str, column_types: Sequence[str], *, jit: bool = False,
                     **session_options) -> DeclaredModel:
    """Declare a C++ function ``ROOT::RVec<Out> function(Cols... values)`` evaluating the model for one event, for
    RDataFrame string expressions: ``df.Define("score", "function(pt, eta, phi)")``. This is the way in for
    distributed RDataFrame, whose workers build the graph from strings (see the README's recipe: run this on every
    worker through ``ROOT.RDF.Experimental.Distributed.initialize``). One Session per calling thread
    (``pysofie::SofieFunction``). Declaring the same function again for the same model and types does nothing."""
    from ..backends.cpp.names import c_string, sanitize
    ROOT = load_root()
    dm = declare(model, jit=jit, **session_options)
    types = [str(t) for t in column_types]
    _check_columns(dm, types)
    if sanitize(function) != function:
        raise InvalidInputError(f"'{function}' is not a valid C++ function name")
    bad = [t for t in types if not _CPP_TYPE.fullmatch(t)]
    if bad:  # the types are written into the declared C++: a type name, not code
        raise InvalidInputError(f"function '{function}': not C++ type names: {bad}")
    _functor_prelude(ROOT)
    sig = (dm.namespace, dm.code_hash, tuple(types))
    with _lock:
        old = _functions.get(function)
        if old is not None:
            if old != sig:
                raise PysofieError(f"C++ function '{function}' is already declared for another model or column types")
            return dm
        fn_type = f"pysofie::SofieFunction<{dm.session_class}, {dm.out_type}, {dm.in_type}, {', '.join(types)}>"
        args = ", ".join(f"{t} v{k}" for k, t in enumerate(types))
        vals = ", ".join(f"v{k}" for k in range(len(types)))
        ctor = f"{dm.n_out}u" + (f", {c_string(dm.weight_file)}" if dm.weight_file else "")
        _cling_declare(ROOT, f"""
ROOT::RVec<{dm.out_type}> {function}({args}) {{
   static {fn_type} f({ctor});
   return f({vals});
}}""", f"function '{function}' ({dm.name})", dm.mode != "jit")
        _functions[function] = sig
    return dm
