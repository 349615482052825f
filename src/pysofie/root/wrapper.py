"""C++ text that pysofie.root declares to cling (pure text generation: no ROOT needed here).

compiled mode: a thin ``<namespace>::Session`` with the generated API (constructor, both ``infer`` forms) whose
members call the C entry points of the g++-built library (backends/cpp/capi.py), so cling compiles only this
wrapper and the model runs at the speed of pysofie's own build. Like the generated Session, one Session runs one
``infer`` at a time (it calls the library's unlocked entry point): give each thread its own, as the RDataFrame
functor does (one per slot).
"""
from __future__ import annotations

from ..backends.cpp import GeneratedModel
from ..backends.cpp.capi import symbol_prefix
from ..backends.cpp.emitter import _dp, _vt
from ..backends.cpp.names import c_string
from ..ir.shapes import cpp_dim, numel


def compiled_wrapper(gm: GeneratedModel, default_weights: str) -> str:
    em = gm.emitter
    g = em.graph
    p = symbol_prefix(gm)
    P = list(em.params)
    ins = list(zip(g.inputs, em.input_names))
    outs = list(zip(g.outputs, em.output_names))
    L = ["#include <cstddef>", "#include <cstdint>", "#include <stdexcept>", "#include <string>",
         "#include <tuple>", "#include <utility>", "#include <vector>", "",
         'extern "C" {',
         f"void* {p}_create(const char* weight_file, const int64_t* sizes, char* err, size_t errlen);",
         f"int {p}_run_unlocked(void* session, const int64_t* sizes, const void* const* ins, void* const* outs, "
         "char* err, size_t errlen);",
         f"void {p}_destroy(void* session);",
         "}", "",
         f"namespace {gm.namespace} {{",
         f"// The Session of {gm.name}, backed by pysofie's compiled library (declared by pysofie.root).",
         "class Session {",
         "   void* fHandle = nullptr;",
         "",
         " public:",
         f"   static constexpr const char* kDefaultWeightFile = {c_string(default_weights)};"]
    sizes_init = "{" + ", ".join(f"static_cast<int64_t>({q})" for q in P) + "}" if P else "{0}"
    ctor = ", ".join([f"std::string weight_file = kDefaultWeightFile"] + [f"size_t {q} = 1" for q in P])
    L += [f"   explicit Session({ctor}) {{",
          f"      const int64_t sizes[] = {sizes_init};",
          "      char err[1024] = {0};",
          f"      fHandle = {p}_create(weight_file.c_str(), sizes, err, sizeof(err));",
          f"      if (!fHandle) throw std::runtime_error(std::string(\"{gm.name}: \") + err);",
          "   }",
          f"   ~Session() {{ if (fHandle) {p}_destroy(fHandle); }}",
          "   Session(const Session&) = delete;",
          "   Session& operator=(const Session&) = delete;",
          "   Session(Session&& o) noexcept : fHandle(o.fHandle) { o.fHandle = nullptr; }",
          ""]
    params = [f"size_t {q}" for q in P] + [f"const {v.dtype.ctype}* {n}" for v, n in ins] \
        + [f"{v.dtype.ctype}* {n}" for v, n in outs]
    L += ["   // Runs the model into caller-owned outputs.",
          f"   void infer({', '.join(params)}) {{",
          f"      const int64_t sizes[] = {sizes_init};",
          f"      const void* const in[] = {{{', '.join(n for _, n in ins) or 'nullptr'}}};",
          f"      void* const out[] = {{{', '.join(n for _, n in outs) or 'nullptr'}}};",
          "      char err[512];",
          f"      if ({p}_run_unlocked(fHandle, sizes, in, out, err, sizeof(err)) != 0)",
          f"         throw std::runtime_error(std::string(\"{gm.name}: \") + err);",
          "   }"]
    # the allocating form, as the generated header has it
    vec = [f"std::vector<{_vt(v.dtype)}>" for v, _ in outs]
    if len(outs) == 1:
        ret = vec[0]
    elif len(set(vec)) == 1:
        ret = f"std::vector<{vec[0]}>"
    else:
        ret = f"std::tuple<{', '.join(vec)}>"
    aparams = [f"size_t {q}" for q in P] + [f"const {v.dtype.ctype}* {n}" for v, n in ins]
    L += ["   // Runs the model and returns the output(s) in new vectors.",
          f"   {ret} infer({', '.join(aparams)}) {{"]
    for k, (v, _) in enumerate(outs):
        L.append(f"      std::vector<{_vt(v.dtype)}> result{k}({cpp_dim(numel(v.shape))});")
    args = P + [n for _, n in ins] + [_dp(v.dtype, f"result{k}") for k, (v, _) in enumerate(outs)]
    L.append(f"      infer({', '.join(args)});")
    res = [f"result{k}" for k in range(len(outs))]
    if len(res) == 1:
        L.append(f"      return {res[0]};")
    elif len(set(vec)) == 1:
        L.append(f"      return {{{', '.join(f'std::move({r})' for r in res)}}};")
    else:
        L.append(f"      return std::make_tuple({', '.join(f'std::move({r})' for r in res)});")
    L += ["   }", "};", f"}}  // namespace {gm.namespace}", ""]
    return "\n".join(L)
