"""A C ABI around generated Sessions, so that Python (ctypes) can create and run them.

Several models can share one shared library (batch compilation); each gets its own symbol prefix.
"""
from __future__ import annotations

from . import GeneratedModel
from .writer import CodeWriter


def symbol_prefix(model: GeneratedModel) -> str:
    return f"pysofie_{model.namespace}"


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
        with w.block(f"PYSOFIE_API void {p}_destroy(void* session)"):
            w.line(f"delete static_cast<{ns}::Session*>(session);")
        w.line()
    return w.text()
