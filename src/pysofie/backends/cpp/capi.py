"""A C ABI around generated Sessions, so that Python (ctypes) can create and run them.

Several models can share one shared library (batch compilation); each gets its own symbol prefix.
"""
from __future__ import annotations

from . import GeneratedModel
from .writer import CodeWriter


def symbol_prefix(model: GeneratedModel) -> str:
    return f"pysofie_{model.namespace}"


PY_HELPERS = """\
#ifdef PYSOFIE_PYTHON
#define PY_SSIZE_T_CLEAN
#include <Python.h>
namespace pysofie_py {
// Data pointers of n C-contiguous buffers (numpy arrays) held in a tuple. Python keeps the arrays alive.
inline bool data_pointers(PyObject* tuple, Py_ssize_t n, bool writable, void** ptrs) {
   if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != n) {
      PyErr_SetString(PyExc_TypeError, "pysofie: wrong number of arrays");
      return false;
   }
   for (Py_ssize_t i = 0; i < n; ++i) {
      Py_buffer view;
      if (PyObject_GetBuffer(PyTuple_GET_ITEM(tuple, i), &view,
                             PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0)
         return false;
      ptrs[i] = view.buf;
      PyBuffer_Release(&view);
   }
   return true;
}
}  // namespace pysofie_py
#endif
"""


def source_name(model: GeneratedModel) -> str:
    """File name of the header in a build directory: unique per namespace, so models can share a library."""
    return f"{model.namespace}.hxx"


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
    w.lines(PY_HELPERS.splitlines())
    for m in models:
        em = m.emitter
        g = em.graph
        p = symbol_prefix(m)
        ns = m.namespace
        P = em.params
        sizes = [f"static_cast<size_t>(sizes[{k}])" for k in range(len(P))]
        with w.block(f"PYSOFIE_API void* {p}_create(const char* weight_file, const int64_t* sizes, char* err, "
                     "size_t errlen)"):
            w.line("(void)sizes;")
            with w.block("try"):
                args = ", ".join(["std::string(weight_file ? weight_file : \"\")"] + sizes)
                w.line(f"return new {ns}::Session({args});")
            with w.block("catch (const std::exception& e)"):
                w.line("set_error(err, errlen, e.what());")
            with w.block("catch (...)"):
                w.line('set_error(err, errlen, "unknown C++ exception");')
            w.line("return nullptr;")
        with w.block(f"PYSOFIE_API int {p}_run(void* session, const int64_t* sizes, const void* const* ins, "
                     "void* const* outs, char* err, size_t errlen)"):
            w.line("(void)sizes; (void)ins; (void)outs;")
            with w.block("try"):
                args = list(sizes)
                args += [f"static_cast<const {v.dtype.ctype}*>(ins[{k}])" for k, v in enumerate(g.inputs)]
                args += [f"static_cast<{v.dtype.ctype}*>(outs[{k}])" for k, v in enumerate(g.outputs)]
                w.line(f"static_cast<{ns}::Session*>(session)->infer({', '.join(args)});")
                w.line("return 0;")
            with w.block("catch (const std::exception& e)"):
                w.line("set_error(err, errlen, e.what());")
            with w.block("catch (...)"):
                w.line('set_error(err, errlen, "unknown C++ exception");')
            w.line("return 1;")
        # With Python's headers: an entry point that takes tuples of arrays and reads their data pointers through
        # the buffer protocol (cheaper than ctypes' pointer objects), releasing the GIL while the model runs.
        w.line("#ifdef PYSOFIE_PYTHON")
        with w.block(f"PYSOFIE_API int {p}_run_py(void* session, const int64_t* sizes, PyObject* ins, PyObject* outs, "
                     "char* err, size_t errlen)"):
            nin, nout = max(1, len(g.inputs)), max(1, len(g.outputs))
            w.line(f"const void* in_ptrs[{nin}] = {{}};")
            w.line(f"void* out_ptrs[{nout}] = {{}};")
            w.line(f"if (!pysofie_py::data_pointers(ins, {len(g.inputs)}, false, const_cast<void**>(in_ptrs)) ||")
            w.line(f"    !pysofie_py::data_pointers(outs, {len(g.outputs)}, true, out_ptrs)) return -1;")
            w.line("int rc;")
            w.line("Py_BEGIN_ALLOW_THREADS")
            w.line(f"rc = {p}_run(session, sizes, in_ptrs, out_ptrs, err, errlen);")
            w.line("Py_END_ALLOW_THREADS")
            w.line("return rc;")
        w.line("#endif")
        with w.block(f"PYSOFIE_API void {p}_destroy(void* session)"):
            w.line(f"delete static_cast<{ns}::Session*>(session);")
        w.line()
    return w.text()
