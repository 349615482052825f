"""A C ABI around generated Sessions, so that Python can create and run them.

Two ways in, both serialized per session by a mutex (a generated Session's work buffers are shared, so two
infer calls on one Session must never overlap):

- ``{prefix}_create / _run / _destroy``: plain C, called through ctypes with arrays of data pointers.
- ``{prefix}_py_runner`` (only when compiled with Python's and numpy's headers, ``PYSOFIE_PYTHON``): returns a
  Python builtin function ``run_fast(feed)`` that does the whole hot path of ``InferenceSession.run`` in C: looks
  up each input in the feed dict, checks it is an exactly typed, C-contiguous, aligned ndarray of the right rank
  and static dims, binds the symbolic sizes (a dynamic batch), allocates the outputs, runs the model with the GIL
  released and returns the list of outputs. For anything unusual it returns None, and Python falls back to the
  full check, which converts what it can and explains the rest.
- ``{prefix}_py_run(run_fast, fallback)``: a builtin with InferenceSession.run's signature that calls run_fast
  directly for run(None, feed) and `fallback` (the session's Python run) otherwise; the session installs it as
  its `run` attribute.

Several models can share one shared library (batch compilation); each gets its own symbol prefix.
"""
from __future__ import annotations

from ...ir.shapes import Sym, numel, shape_symbols
from . import GeneratedModel
from .writer import CodeWriter


def symbol_prefix(model: GeneratedModel) -> str:
    return f"pysofie_{model.namespace}"


def used_symbols(em) -> set:
    """Size symbols that mean something: those of values the generated code reads. An input whose data no node
    reads (CastLike's target_type, an unused input) may come with any size on its other symbolic axes."""
    g = em.graph
    unread = {id(v) for v in g.inputs if id(v) not in em.runtime_reads}
    used: set = set()
    for v in g.values():
        if id(v) not in unread and v.shape is not None:
            used |= shape_symbols(v.shape)
        if v.sym is not None:  # a value computed from sizes (ops.shape.SymbolicValue) needs them
            used |= shape_symbols(v.sym)
    return used | shape_symbols(e for e, _ in g.guards)  # and so do the checks of size assumptions


def bound_symbol(d, used: set):
    """The size parameter an input axis of dim `d` sets (a plain symbol such as N), else None."""
    if not isinstance(d, Sym) or not (d.symbols() & used) or len(d.terms) != 1:
        return None
    (mono, coef), = d.terms.items()
    return mono[0] if len(mono) == 1 and coef == 1 else None


def input_specs(em) -> list[tuple]:
    """Per graph input: (name, numpy dtype, static dims with -1 for symbolic ones, ((axis, symbol), ...) for the
    axes that set a size parameter). Axes with other symbolic dims are not checked (as in the full check)."""
    used = used_symbols(em)
    specs = []
    for v in em.graph.inputs:
        static = tuple(d if isinstance(d, int) else -1 for d in v.shape)
        syms = tuple((ax, s) for ax, s in ((ax, bound_symbol(d, used)) for ax, d in enumerate(v.shape)) if s)
        specs.append((v.name, v.dtype.np, static, syms))
    return specs


HELPERS = """\
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace pysofie_capi {
// A Session and the mutex that serializes the calls to it (its work buffers are shared by all calls).
template <class S>
struct Holder {
   S session;
   std::mutex mutex;
   template <class... A>
   explicit Holder(A&&... args) : session(std::forward<A>(args)...) {}
};
}  // namespace pysofie_capi

#ifdef PYSOFIE_PYTHON
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

namespace pysofie_py {
inline constexpr const char* kCapsule = "pysofie.runner";

// State of one model's run_fast function, held by the capsule that is the function's `self`. It owns the session
// holder once make_runner succeeded (the InferenceSession then no longer destroys it).
struct Runner {
   void* holder = nullptr;
   void (*destroy)(void*) = nullptr;
   std::vector<PyObject*> names;               // input names (str), looked up in the feed
   std::vector<PyArray_Descr*> in_types, out_types;
   PyObject* error = nullptr;                  // exception class for errors of the C++ code
   PyObject* index_error = nullptr;            // exception class for std::out_of_range (an index in the inputs)
   PyObject* label = nullptr;                  // the model's name, for messages
   Runner() = default;
   Runner(const Runner&) = delete;
   Runner& operator=(const Runner&) = delete;
   ~Runner() {
      for (PyObject* o : names) Py_DECREF(o);
      for (PyArray_Descr* d : in_types) Py_DECREF(d);
      for (PyArray_Descr* d : out_types) Py_DECREF(d);
      Py_XDECREF(error);
      Py_XDECREF(index_error);
      Py_XDECREF(label);
      if (holder && destroy) destroy(holder);
   }
};

inline void drop_runner(PyObject* capsule) {
   delete static_cast<Runner*>(PyCapsule_GetPointer(capsule, kCapsule));
}

inline bool numpy_ready() {
   return PyArray_API != nullptr || _import_array() >= 0;
}

inline bool descr_list(PyObject* tuple, std::vector<PyArray_Descr*>& out) {
   if (!PyTuple_Check(tuple)) {
      PyErr_SetString(PyExc_TypeError, "pysofie: expected a tuple of numpy dtypes");
      return false;
   }
   for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); ++i) {
      PyObject* d = PyTuple_GET_ITEM(tuple, i);
      if (!PyArray_DescrCheck(d)) {
         PyErr_SetString(PyExc_TypeError, "pysofie: expected a tuple of numpy dtypes");
         return false;
      }
      Py_INCREF(d);
      out.push_back(reinterpret_cast<PyArray_Descr*>(d));
   }
   return true;
}

// The run_fast builtin of a model; a Python exception is set when it returns nullptr.
inline PyObject* make_runner(PyMethodDef* def, void* holder, void (*destroy)(void*), PyObject* names,
                             PyObject* in_types, PyObject* out_types, PyObject* error, PyObject* label) {
   if (!numpy_ready()) return nullptr;
   auto* r = new Runner();
   PyObject* capsule = PyCapsule_New(r, kCapsule, drop_runner);
   if (!capsule) {
      delete r;
      return nullptr;
   }
   bool ok = PyTuple_Check(names) && PyUnicode_Check(label);
   if (!ok) PyErr_SetString(PyExc_TypeError, "pysofie: expected a tuple of input names and a model name");
   for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(names); ++i) {
      PyObject* n = PyTuple_GET_ITEM(names, i);
      if (!PyUnicode_Check(n)) {
         PyErr_SetString(PyExc_TypeError, "pysofie: input names must be str");
         ok = false;
         break;
      }
      Py_INCREF(n);
      PyUnicode_InternInPlace(&n);  // feeds keyed by literals then match by identity
      r->names.push_back(n);
   }
   ok = ok && descr_list(in_types, r->in_types) && descr_list(out_types, r->out_types);
   if (ok && r->in_types.size() != r->names.size()) {
      PyErr_SetString(PyExc_ValueError, "pysofie: one dtype per input expected");
      ok = false;
   }
   if (ok) {
      PyObject* index_error = error;  // error may be a pair (error class, class for indices out of range)
      if (PyTuple_Check(error) && PyTuple_GET_SIZE(error) == 2) {
         index_error = PyTuple_GET_ITEM(error, 1);
         error = PyTuple_GET_ITEM(error, 0);
      }
      Py_INCREF(error);
      r->error = error;
      Py_INCREF(index_error);
      r->index_error = index_error;
      Py_INCREF(label);
      r->label = label;
   }
   PyObject* fn = ok ? PyCFunction_NewEx(def, capsule, nullptr) : nullptr;
   Py_DECREF(capsule);  // the function holds it
   if (fn) {            // only now: on failure the caller still owns the session
      r->holder = holder;
      r->destroy = destroy;
   }
   return fn;
}

// InferenceSession.run(output_names, input_feed, run_options=None) in C, installed on a session as its `run`
// attribute: self is the tuple (run_fast, fallback), fallback the session's Python run (bound). The common call
// run(None, feed) goes straight to the model's run_fast; anything else, or a feed run_fast declines, goes to the
// fallback with the arguments as given. (A Python frame for run cost ~30 % of a tiny model's call.) The tuple
// is tracked by the garbage collector, so the cycle session -> run -> fallback -> session is collected.
inline PyObject* session_run(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
   const Py_ssize_t n = PyVectorcall_NARGS(nargsf);
   if (!kwnames && (n == 2 || (n == 3 && args[2] == Py_None)) && args[0] == Py_None) {
      PyObject* fast = PyTuple_GET_ITEM(self, 0);
      PyObject* r = PyCFunction_GET_FUNCTION(fast)(PyCFunction_GET_SELF(fast), args[1]);
      if (r != Py_None) return r;  // the outputs, or nullptr with a Python error set
      Py_DECREF(r);
   }
   return PyObject_Vectorcall(PyTuple_GET_ITEM(self, 1), args, nargsf, kwnames);
}

inline PyMethodDef session_run_def = {
   "run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(session_run)), METH_FASTCALL | METH_KEYWORDS,
   "run(output_names, input_feed, run_options=None) -> list of outputs (as onnxruntime's InferenceSession.run)"};

inline PyObject* make_session_run(PyObject* fast, PyObject* fallback) {
   if (!PyCFunction_Check(fast) || !(PyCFunction_GET_FLAGS(fast) & METH_O) || !PyCallable_Check(fallback)) {
      PyErr_SetString(PyExc_TypeError, "pysofie: expected a run_fast function and a callable");
      return nullptr;
   }
   PyObject* self = PyTuple_Pack(2, fast, fallback);
   if (!self) return nullptr;
   PyObject* fn = PyCFunction_NewEx(&session_run_def, self, nullptr);
   Py_DECREF(self);
   return fn;
}

// The feed's arrays when the feed is a dict with exactly the inputs, each an ndarray (not a subclass) of the
// expected dtype and rank, C-contiguous and aligned. false (no Python error set) for anything else.
inline bool gather(const Runner& r, PyObject* feed, const int* ranks, PyArrayObject** arrays) {
   const Py_ssize_t n = static_cast<Py_ssize_t>(r.names.size());
   if (!PyDict_CheckExact(feed) || PyDict_GET_SIZE(feed) != n) return false;
   for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* o = PyDict_GetItemWithError(feed, r.names[i]);
      if (!o) {
         PyErr_Clear();  // a key whose __eq__ raised: the full check reports it
         return false;
      }
      if (!PyArray_CheckExact(o)) return false;
      auto* a = reinterpret_cast<PyArrayObject*>(o);
      PyArray_Descr* d = PyArray_DESCR(a);
      if (d != r.in_types[i] && !PyArray_EquivTypes(d, r.in_types[i])) return false;
      if (PyArray_NDIM(a) != ranks[i] || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) return false;
      arrays[i] = a;
   }
   return true;
}

// New uninitialized output arrays. 1: done; 0: a negative dim (no Python error: the full path explains it);
// -1: a Python error (memory).
inline int allocate(const Runner& r, const int* ranks, npy_intp* const* dims, PyObject** outs) {
   const size_t n = r.out_types.size();
   for (size_t k = 0; k < n; ++k)
      for (int j = 0; j < ranks[k]; ++j)
         if (dims[k][j] < 0) return 0;
   for (size_t k = 0; k < n; ++k) {
      Py_INCREF(r.out_types[k]);  // stolen by the constructor
      outs[k] = PyArray_NewFromDescr(&PyArray_Type, r.out_types[k], ranks[k], dims[k], nullptr, nullptr, 0, nullptr);
      if (!outs[k]) {
         for (size_t j = 0; j < k; ++j) Py_DECREF(outs[j]);
         return -1;
      }
   }
   return 1;
}

// Runs `run` (the model call) with the GIL released and returns the outputs as a list. The inputs are kept
// alive meanwhile: another thread may change the feed dict while the GIL is released.
template <class F>
PyObject* finish(const Runner& r, PyArrayObject** ins, size_t nin, PyObject** outs, size_t nout, F&& run) {
   for (size_t i = 0; i < nin; ++i) Py_INCREF(ins[i]);
   bool failed = false, bad_index = false;
   std::string message;
   Py_BEGIN_ALLOW_THREADS
   try {
      run();
   } catch (const std::out_of_range& e) {
      failed = bad_index = true;
      message = e.what();
   } catch (const std::exception& e) {
      failed = true;
      message = e.what();
   } catch (...) {
      failed = true;
      message = "unknown C++ exception";
   }
   Py_END_ALLOW_THREADS
   for (size_t i = 0; i < nin; ++i) Py_DECREF(ins[i]);
   if (failed) {
      for (size_t k = 0; k < nout; ++k) Py_DECREF(outs[k]);
      PyErr_Format(bad_index ? r.index_error : r.error, "model '%U': %s", r.label, message.c_str());
      return nullptr;
   }
   PyObject* list = PyList_New(static_cast<Py_ssize_t>(nout));
   if (!list) {
      for (size_t k = 0; k < nout; ++k) Py_DECREF(outs[k]);
      return nullptr;
   }
   for (size_t k = 0; k < nout; ++k) PyList_SET_ITEM(list, static_cast<Py_ssize_t>(k), outs[k]);
   return list;
}
// Output k of `list` gets its true shape `dims` after a run with sizes the data decided: an array allocated for
// the bound is resized (the data lies contiguous at its start), or, when `grown` is given, a new array is filled
// from that vector. false (the list released, a Python error set) on failure.
inline bool true_shape(const Runner& r, PyObject* list, Py_ssize_t k, npy_intp* dims, int rank, const void* grown) {
   PyObject* a = nullptr;
   if (grown) {
      Py_INCREF(r.out_types[k]);  // stolen by the constructor
      a = PyArray_NewFromDescr(&PyArray_Type, r.out_types[k], rank, dims, nullptr, nullptr, 0, nullptr);
      if (a) {
         const size_t n = static_cast<size_t>(PyArray_NBYTES(reinterpret_cast<PyArrayObject*>(a)));
         if (n) std::memcpy(PyArray_DATA(reinterpret_cast<PyArrayObject*>(a)), grown, n);
         PyObject* placeholder = PyList_GET_ITEM(list, k);
         PyList_SET_ITEM(list, k, a);
         Py_DECREF(placeholder);
      }
   } else {
      PyArray_Dims shape = {dims, rank};
      a = PyArray_Resize(reinterpret_cast<PyArrayObject*>(PyList_GET_ITEM(list, k)), &shape, 0, NPY_CORDER);
      Py_XDECREF(a);  // None
   }
   if (!a) {
      Py_DECREF(list);
      return false;
   }
   return true;
}
}  // namespace pysofie_py
#endif
"""


def source_name(model: GeneratedModel) -> str:
    """File name of the header in a build directory: unique per namespace, so models can share a library."""
    return f"{model.namespace}.hxx"


def _size_expr(d, index: dict) -> str | None:
    """C expression (npy_intp) of an output dim: `index` maps each symbol to its C value (sz[k] for a size
    parameter, rtv[j] for a run-time size); None if it uses another symbol (or a compound factor)."""
    if not isinstance(d, Sym):
        return str(int(d))
    parts = []
    for mono, coef in d.terms.items():
        if any(s not in index for s in mono):
            return None
        factors = [index[s] for s in mono]
        parts.append("*".join(factors if coef == 1 and factors else [f"npy_intp({coef})"] + factors))
    return " + ".join(parts) or "0"


def _fast_entry(w: CodeWriter, m: GeneratedModel) -> None:
    """The model's run_fast function (see the module docstring), or nothing when an output dim uses a symbol
    that is not a size parameter (Python then keeps the ctypes path)."""
    em = m.emitter
    g = em.graph
    p = symbol_prefix(m)
    P = list(em.params)
    index = {s: k for k, s in enumerate(P)}
    csz = {s: f"sz[{k}]" for k, s in enumerate(P)}
    rts = list(getattr(em, "rt_sizes", {}))  # sizes the data decides: outputs get their true shapes after the run
    true_dims = [[_size_expr(d, {**csz, **{r: f"npy_intp(rtv[{j}])" for j, r in enumerate(rts)}}) for d in v.shape]
                 for v in g.outputs]
    grown = set(_grown_outputs(em))
    later = [k for k, v in enumerate(g.outputs) if shape_symbols(v.shape) & set(rts)]  # shaped after the run
    out_dims = []
    for k, v in enumerate(g.outputs):
        if k in grown:  # a placeholder, replaced by an array copied from the run's vector
            out_dims.append(["0"])
        elif k in later:  # the bound, as one axis; resized to the true shape after the run
            out_dims.append([_size_expr(em.bounded(numel(v.shape)), csz)])
        else:
            out_dims.append([_size_expr(d, csz) for d in v.shape])
    if any(e is None for dims in out_dims + true_dims for e in dims):
        return
    nin, nout = len(g.inputs), len(g.outputs)
    w.line("#ifdef PYSOFIE_PYTHON")
    with w.block("namespace", close="}  // namespace"):
        with w.block(f"PyObject* {p}_fast(PyObject* self, PyObject* feed)"):
            w.line("auto* r = static_cast<pysofie_py::Runner*>(PyCapsule_GetPointer(self, pysofie_py::kCapsule));")
            w.line("if (!r) return nullptr;")
            in_ranks = ", ".join(str(len(v.shape)) for v in g.inputs) or "0"
            w.line(f"static const int in_ranks[{max(1, nin)}] = {{{in_ranks}}};")
            w.line(f"PyArrayObject* in[{max(1, nin)}] = {{}};")
            w.line("if (!pysofie_py::gather(*r, feed, in_ranks, in)) Py_RETURN_NONE;")
            w.line(f"npy_intp sz[{max(1, len(P))}] = {{{', '.join('1' for _ in P) or '1'}}};  "
                   "// a size only an unread input has: irrelevant")
            w.line("(void)sz;")
            bound: set = set()
            for k, (_, _, static, syms) in enumerate(input_specs(em)):
                checks = [f"d[{ax}] != {d}" for ax, d in enumerate(static) if d >= 0]
                binds = []
                for ax, s in syms:
                    if s in bound:
                        checks.append(f"d[{ax}] != sz[{index[s]}]")
                    else:
                        if s not in getattr(g, "zero_size_params", ()):
                            checks.append(f"d[{ax}] < 1")
                        binds.append(f"sz[{index[s]}] = d[{ax}];")
                        bound.add(s)
                if not checks:
                    continue
                w.line("{")
                with w.indented():
                    w.line(f"const npy_intp* d = PyArray_DIMS(in[{k}]);")
                    w.line(f"if ({' || '.join(checks)}) Py_RETURN_NONE;")
                    w.lines(binds)
                w.line("}")
            for k, dims in enumerate(out_dims):
                w.line(f"npy_intp od{k}[{max(1, len(dims))}] = {{{', '.join(dims) or '0'}}};")
            out_ranks = ", ".join(str(len(d)) for d in out_dims) or "0"
            w.line(f"static const int out_ranks[{max(1, nout)}] = {{{out_ranks}}};")
            w.line(f"npy_intp* odims[{max(1, nout)}] = {{{', '.join(f'od{k}' for k in range(nout)) or 'nullptr'}}};")
            w.line(f"PyObject* out[{max(1, nout)}] = {{}};")
            w.line("const int made = pysofie_py::allocate(*r, out_ranks, odims, out);")
            w.line("if (made == 0) Py_RETURN_NONE;")
            w.line("if (made < 0) return nullptr;")
            w.line(f"auto* h = static_cast<pysofie_capi::Holder<{m.namespace}::Session>*>(r->holder);")
            for k in sorted(grown):
                w.line(f"std::vector<{_vt(g.outputs[k].dtype)}> grown{k};")
            if rts:
                w.line(f"size_t rtv[{len(rts)}] = {{}};")
            ret = "PyObject* list = " if later else "return "
            with w.block(f"{ret}pysofie_py::finish(*r, in, {nin}, out, {nout}, [&]", close="});"):
                args = [f"static_cast<size_t>(sz[{k}])" for k in range(len(P))]
                args += [f"static_cast<const {v.dtype.ctype}*>(PyArray_DATA(in[{k}]))" for k, v in enumerate(g.inputs)]
                args += [f"grown{k}" if k in grown else
                         f"static_cast<{v.dtype.ctype}*>(PyArray_DATA(reinterpret_cast<PyArrayObject*>(out[{k}])))"
                         for k, v in enumerate(g.outputs)]
                w.line("std::lock_guard<std::mutex> lock(h->mutex);")
                w.line(f"h->session.infer({', '.join(args)});")
                if rts:
                    w.line("const std::vector<size_t> v = h->session.last_sizes();")
                    w.line("for (size_t j = 0; j < v.size(); ++j) rtv[j] = v[j];")
            if later:
                w.line("if (!list) return nullptr;")
                for k in later:
                    dims = true_dims[k]
                    with w.block(""):
                        w.line(f"npy_intp d[{len(dims)}] = {{{', '.join(dims)}}};")
                        w.line(f"if (!pysofie_py::true_shape(*r, list, {k}, d, {len(dims)}, "
                               f"{f'grown{k}.data()' if k in grown else 'nullptr'})) return nullptr;")
                w.line("return list;")
        w.line(f'PyMethodDef {p}_def = {{"run_fast", {p}_fast, METH_O, '
               '"run_fast(feed) -> list of outputs, or None when the feed needs the full check"};')
    with w.block(f"PYSOFIE_API PyObject* {p}_py_run(PyObject* fast, PyObject* fallback)"):
        w.line("return pysofie_py::make_session_run(fast, fallback);")
    with w.block(f"PYSOFIE_API PyObject* {p}_py_runner(void* holder, PyObject* names, PyObject* in_types, "
                 "PyObject* out_types, PyObject* error, PyObject* label)"):
        w.line(f"return pysofie_py::make_runner(&{p}_def, holder, {p}_destroy, names, in_types, out_types, error, "
               "label);")
    w.line("#endif")


def _run_error_returns(w) -> None:
    """The catch clauses of a run entry point: 2 for std::out_of_range (an index in the inputs), else 1."""
    with w.block("catch (const std::out_of_range& e)"):
        w.line("set_error(err, errlen, e.what());")
        w.line("return 2;")
    with w.block("catch (const std::exception& e)"):
        w.line("set_error(err, errlen, e.what());")
    with w.block("catch (...)"):
        w.line('set_error(err, errlen, "unknown C++ exception");')
    w.line("return 1;")


def _grown_outputs(em) -> list[int]:
    """Indices of the outputs whose size has no bound before the run (std::vector in the caller-buffer infer)."""
    if not getattr(em, "rt_sizes", None):
        return []
    return [k for k in range(len(em.graph.outputs)) if em.grown_output(k)]


def _grown_entries(w: CodeWriter, m: GeneratedModel, holder: str, args: list[str]) -> None:
    """Entry points of a model with outputs sized by the run: ``{p}_run_grown`` runs the model into outs (the
    other outputs, sized by their bounds) and new vectors (those outputs), sets the run-time sizes, and returns
    the vectors' data pointers and a handle owning them, which ``{p}_free_grown`` frees once the caller copied
    them. ``{p}_run`` (fixed buffers only) reports that it cannot serve such a model."""
    from .names import c_string
    em = m.emitter
    g = em.graph
    p = symbol_prefix(m)
    grown = _grown_outputs(em)
    struct = f"{p}_grown"
    with w.block(f"struct {struct}", close="};"):
        for k in grown:
            w.line(f"std::vector<{_vt(g.outputs[k].dtype)}> out{k};")
    msg = c_string(f"model '{m.name}' has outputs whose size only the run decides: call {p}_run_grown")
    for entry in ("run", "run_unlocked"):
        with w.block(f"PYSOFIE_API int {p}_{entry}(void* session, const int64_t* sizes, const void* const* ins, "
                     "void* const* outs, char* err, size_t errlen)"):
            w.line("(void)session; (void)sizes; (void)ins; (void)outs;")
            w.line(f"set_error(err, errlen, {msg});")
            w.line("return 1;")
    with w.block(f"PYSOFIE_API int {p}_run_grown(void* session, const int64_t* sizes, const void* const* ins, "
                 "void* const* outs, int64_t* rt, void** handle, void** data, char* err, size_t errlen)"):
        w.line("(void)sizes; (void)ins; (void)outs;")
        with w.block("try"):
            w.line(f"auto* h = static_cast<{holder}*>(session);")
            w.line(f"auto res = std::make_unique<{struct}>();")
            call = list(args)
            nparams = len(args) - len(g.outputs)
            for k in grown:
                call[nparams + k] = f"res->out{k}"
            with w.block(""):
                w.line("std::lock_guard<std::mutex> lock(h->mutex);")
                w.line(f"h->session.infer({', '.join(call)});")
                w.line("const std::vector<size_t> v = h->session.last_sizes();")
                w.line("for (size_t k = 0; k < v.size(); ++k) rt[k] = static_cast<int64_t>(v[k]);")
            for k in grown:
                w.line(f"data[{k}] = res->out{k}.data();")
            w.line("*handle = res.release();")
            w.line("return 0;")
        _run_error_returns(w)
    with w.block(f"PYSOFIE_API void {p}_free_grown(void* handle)"):
        w.line(f"delete static_cast<{struct}*>(handle);")


def _vt(dt) -> str:
    from .emitter import _vt as vt
    return vt(dt)


def wrapper_source(models: list[GeneratedModel]) -> str:
    w = CodeWriter()
    w.line("// C entry points for pysofie's Python runtime (generated).")
    for m in models:
        w.line(f'#include "{source_name(m)}"')
    w.line("#include <cstdio>")
    w.line()
    w.line('#define PYSOFIE_API extern "C" __attribute__((visibility("default")))')
    w.line()
    with w.block("namespace", close="}  // namespace"):
        with w.block("inline void set_error(char* err, size_t len, const char* msg)"):
            w.line("if (err && len) std::snprintf(err, len, \"%s\", msg);")
    w.line()
    w.lines(HELPERS.splitlines())
    w.line()
    for m in models:
        em = m.emitter
        g = em.graph
        p = symbol_prefix(m)
        holder = f"pysofie_capi::Holder<{m.namespace}::Session>"
        P = em.params
        sizes = [f"static_cast<size_t>(sizes[{k}])" for k in range(len(P))]
        with w.block(f"PYSOFIE_API void* {p}_create(const char* weight_file, const int64_t* sizes, char* err, "
                     "size_t errlen)"):
            w.line("(void)sizes;")
            with w.block("try"):
                args = ", ".join(["std::string(weight_file ? weight_file : \"\")"] + sizes)
                w.line(f"return new {holder}({args});")
            with w.block("catch (const std::exception& e)"):
                w.line("set_error(err, errlen, e.what());")
            with w.block("catch (...)"):
                w.line('set_error(err, errlen, "unknown C++ exception");')
            w.line("return nullptr;")
        args = list(sizes)
        args += [f"static_cast<const {v.dtype.ctype}*>(ins[{k}])" for k, v in enumerate(g.inputs)]
        args += [f"static_cast<{v.dtype.ctype}*>(outs[{k}])" for k, v in enumerate(g.outputs)]
        if _grown_outputs(em):
            _grown_entries(w, m, holder, args)  # {p}_run_grown; {p}_run, {p}_run_unlocked and {p}_run_rt refuse
        else:
            # {p}_run locks the Session's mutex; {p}_run_unlocked does not, for callers that give each thread its
            # own session (pysofie.root's Session wrapper in cling, used one thread at a time like the generated
            # Session): a locked atomic per event costs little in a tight loop but stalls on the stores of whatever
            # ran before (an RDataFrame event loop)
            for entry, locked in (("run", True), ("run_unlocked", False)):
                with w.block(f"PYSOFIE_API int {p}_{entry}(void* session, const int64_t* sizes, "
                             "const void* const* ins, void* const* outs, char* err, size_t errlen)"):
                    w.line("(void)sizes; (void)ins; (void)outs;")
                    with w.block("try"):
                        w.line(f"auto* h = static_cast<{holder}*>(session);")
                        if locked:
                            w.line("std::lock_guard<std::mutex> lock(h->mutex);")
                        w.line(f"h->session.infer({', '.join(args)});")
                        w.line("return 0;")
                    _run_error_returns(w)
        with w.block(f"PYSOFIE_API void {p}_set_threads(void* session, int n)"):
            w.line(f"auto* h = static_cast<{holder}*>(session);")
            w.line("std::lock_guard<std::mutex> lock(h->mutex);")
            w.line("h->session.set_num_threads(n);")
        if getattr(em, "rt_sizes", None) and not _grown_outputs(em):  # run, then the sizes the data decided
            with w.block(f"PYSOFIE_API int {p}_run_rt(void* session, const int64_t* sizes, const void* const* ins, "
                         "void* const* outs, int64_t* rt, char* err, size_t errlen)"):
                w.line("(void)sizes; (void)ins; (void)outs;")
                with w.block("try"):
                    w.line(f"auto* h = static_cast<{holder}*>(session);")
                    w.line("std::lock_guard<std::mutex> lock(h->mutex);")
                    w.line(f"h->session.infer({', '.join(args)});")
                    w.line("const std::vector<size_t> v = h->session.last_sizes();")
                    w.line("for (size_t k = 0; k < v.size(); ++k) rt[k] = static_cast<int64_t>(v[k]);")
                    w.line("return 0;")
                _run_error_returns(w)
        with w.block(f"PYSOFIE_API void {p}_destroy(void* session)"):
            w.line(f"delete static_cast<{holder}*>(session);")
        _fast_entry(w, m)
        w.line()
    return w.text()
