"""A C ABI around generated CUDA Sessions for pysofie's Python runtime (ctypes): create, run, destroy.

``{prefix}_run`` takes, per input and output, a data pointer and whether it is a device pointer: host inputs
are copied to device buffers of the Session, device ones are read in place (no copy); host outputs are copied
back, device outputs are written in place. The call waits for the stream, and runs on one Session are
serialized by a mutex (its arena is shared by all calls)."""
from __future__ import annotations

from ..cpp.writer import CodeWriter


def symbol_prefix(model) -> str:
    return f"pysofie_cuda_{model.namespace}"


def source_name(model) -> str:
    return model.header_file


def wrapper_source(models: list) -> str:
    w = CodeWriter()
    w.line("// C entry points of CUDA models for pysofie's Python runtime (generated).")
    for m in models:
        w.line(f'#include "{source_name(m)}"')
    w.line("#include <chrono>")
    w.line("#include <cstdio>")
    w.line("#include <memory>")
    w.line("#include <mutex>")
    w.line()
    w.line('#define PYSOFIE_API extern "C" __attribute__((visibility("default")))')
    w.line()
    with w.block("namespace", close="}  // namespace"):
        with w.block("inline void set_error(char* err, size_t len, const char* msg)"):
            w.line("if (err && len) std::snprintf(err, len, \"%s\", msg);")
        with w.block("template <typename S> struct Holder", close="};"):
            w.line("template <typename... A> explicit Holder(A... a) : session(a...) {}")
            w.line("S session;")
            w.line("std::mutex mutex;")
            w.line("pysofie_cuda::DeviceBuffer staging;  // device copies of host inputs and outputs")
    w.line()
    with w.block("PYSOFIE_API int pysofie_cuda_device_count()"):
        w.line("int n = 0;")
        w.line("return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;")
    w.line()
    for m in models:
        _entries(w, m)
    return w.text()


def _entries(w: CodeWriter, m) -> None:
    from ...ir.shapes import cpp_dim, numel
    em = m.emitter
    g = em.graph
    p = symbol_prefix(m)
    holder = f"Holder<{m.namespace}::Session>"
    P = em.params
    sizes = [f"static_cast<size_t>(sizes[{k}])" for k in range(len(P))]

    def guarded(body):
        with w.block("try"):
            body()
        with w.block("catch (const std::exception& e)"):
            w.line("set_error(err, errlen, e.what());")
        with w.block("catch (...)"):
            w.line('set_error(err, errlen, "unknown C++ exception");')

    with w.block(f"PYSOFIE_API void* {p}_create(const char* weight_file, const int64_t* sizes, char* err, "
                 "size_t errlen)"):
        w.line("(void)sizes;")
        args = ", ".join(["std::string(weight_file ? weight_file : \"\")"] + sizes)
        guarded(lambda: w.line(f"return new {holder}({args});"))
        w.line("return nullptr;")
    with w.block(f"PYSOFIE_API int {p}_run(void* session, const int64_t* sizes, const void* const* ins, "
                 "const unsigned char* in_dev, void* const* outs, const unsigned char* out_dev, int graphs, "
                 "char* err, size_t errlen)"):
        w.line("(void)sizes;")

        def body():
            w.line(f"auto* pysofie_h = static_cast<{holder}*>(session);")
            w.line("std::lock_guard<std::mutex> lock(pysofie_h->mutex);")
            for k, pn in enumerate(P):
                w.line(f"const size_t {pn} = {sizes[k]};")
            items = [(v, f"ins[{k}]", f"in_dev[{k}]") for k, v in enumerate(g.inputs)]
            items += [(v, f"outs[{k}]", f"out_dev[{k}]") for k, v in enumerate(g.outputs)]
            w.line("size_t pysofie_total = 0;")
            for j, (v, ptr, dev) in enumerate(items):
                w.line(f"const size_t pysofie_bytes{j} = size_t({cpp_dim(numel(v.shape))}) * sizeof({v.dtype.ctype});")
                w.line(f"const size_t pysofie_off{j} = pysofie_total;")
                w.line(f"if (!{dev}) pysofie_total += pysofie_cuda::align_up(pysofie_bytes{j});")
            w.line("cudaStream_t pysofie_stream = pysofie_h->session.stream();")
            w.line("if (pysofie_total > pysofie_h->staging.bytes()) cudaStreamSynchronize(pysofie_stream);")
            w.line("pysofie_h->staging.reserve(pysofie_total);")
            nin = len(g.inputs)
            args = list(P)
            for j, (v, ptr, dev) in enumerate(items):
                T = v.dtype.ctype
                cast = f"const_cast<void*>({ptr})" if j < nin else ptr
                w.line(f"{T}* pysofie_d{j} = {dev} ? static_cast<{T}*>({cast}) : reinterpret_cast<{T}*>"
                       f"(pysofie_h->staging.get() + pysofie_off{j});")
                if j < nin:
                    w.line(f"if (!{dev}) pysofie_cuda::check(cudaMemcpyAsync(pysofie_d{j}, {ptr}, pysofie_bytes{j}, "
                           f"cudaMemcpyHostToDevice, pysofie_stream), \"copying an input\");")
                args.append(f"pysofie_d{j}")
            w.line(f"if (graphs) pysofie_h->session.infer_graph({', '.join(args)});")
            w.line(f"else pysofie_h->session.infer({', '.join(args)});")
            for j, (v, ptr, dev) in enumerate(items):
                if j >= nin:
                    w.line(f"if (!{dev}) pysofie_cuda::check(cudaMemcpyAsync({ptr}, pysofie_d{j}, pysofie_bytes{j}, "
                           f"cudaMemcpyDeviceToHost, pysofie_stream), \"copying an output\");")
            w.line("pysofie_h->session.check_errors();")
            w.line("return 0;")

        guarded(body)
        w.line("return 1;")
    # the benchmark's device-resident timing without Python: `iters` runs on device pointers, one wait at the end
    with w.block(f"PYSOFIE_API double {p}_time_device(void* session, const int64_t* sizes, const void* const* ins, "
                 "void* const* outs, int iters, int graphs, char* err, size_t errlen)"):
        w.line("(void)sizes;")

        def timed():
            w.line(f"auto* pysofie_h = static_cast<{holder}*>(session);")
            w.line("std::lock_guard<std::mutex> lock(pysofie_h->mutex);")
            args = list(sizes)
            args += [f"static_cast<const {v.dtype.ctype}*>(ins[{k}])" for k, v in enumerate(g.inputs)]
            args += [f"static_cast<{v.dtype.ctype}*>(outs[{k}])" for k, v in enumerate(g.outputs)]
            fn = "(graphs ? &S::infer_graph : &S::infer)"
            w.line(f"using S = {m.namespace}::Session;")
            w.line(f"const auto run = {fn};")
            w.line(f"(pysofie_h->session.*run)({', '.join(args)});  // warm-up (arena growth, graph capture)")
            w.line("pysofie_h->session.check_errors();")
            w.line("const auto t0 = std::chrono::steady_clock::now();")
            w.line(f"for (int it = 0; it < iters; ++it) (pysofie_h->session.*run)({', '.join(args)});")
            w.line("pysofie_h->session.check_errors();")
            w.line("return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;")

        guarded(timed)
        w.line("return -1.0;")
    # cuBLASLt epilogues on (1) / off (0); a negative value only reads the setting. Returns it, or -1 on error.
    with w.block(f"PYSOFIE_API int {p}_epilogues(void* session, int on)"):
        with w.block("try"):
            w.line(f"auto* pysofie_h = static_cast<{holder}*>(session);")
            w.line("std::lock_guard<std::mutex> lock(pysofie_h->mutex);")
            w.line("if (on >= 0) pysofie_h->session.set_epilogues(on != 0);")
            w.line("return pysofie_h->session.epilogues() ? 1 : 0;")
        with w.block("catch (...)"):
            w.line("return -1;")
    with w.block(f"PYSOFIE_API long long {p}_epilogue_products(void* session)"):
        w.line(f"auto* pysofie_h = static_cast<{holder}*>(session);")
        w.line("std::lock_guard<std::mutex> lock(pysofie_h->mutex);")
        w.line("return static_cast<long long>(pysofie_h->session.epilogue_products());")
    with w.block(f"PYSOFIE_API void {p}_destroy(void* session)"):
        w.line(f"delete static_cast<{holder}*>(session);")
    w.line()
