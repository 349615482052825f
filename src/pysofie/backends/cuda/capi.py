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
                 "const unsigned char* in_dev, void* const* outs, const unsigned char* out_dev, char* err, "
                 "size_t errlen)"):
        w.line("(void)sizes;")

        def body():
            w.line(f"auto* h = static_cast<{holder}*>(session);")
            w.line("std::lock_guard<std::mutex> lock(h->mutex);")
            for k, pn in enumerate(P):
                w.line(f"const size_t {pn} = {sizes[k]};")
            items = [(v, f"ins[{k}]", f"in_dev[{k}]") for k, v in enumerate(g.inputs)]
            items += [(v, f"outs[{k}]", f"out_dev[{k}]") for k, v in enumerate(g.outputs)]
            w.line("size_t total = 0;")
            for j, (v, ptr, dev) in enumerate(items):
                w.line(f"const size_t bytes{j} = size_t({cpp_dim(numel(v.shape))}) * sizeof({v.dtype.ctype});")
                w.line(f"const size_t off{j} = total;")
                w.line(f"if (!{dev}) total += pysofie_cuda::align_up(bytes{j});")
            w.line("cudaStream_t stream = h->session.stream();")
            w.line("if (total > h->staging.bytes()) cudaStreamSynchronize(stream);")
            w.line("h->staging.reserve(total);")
            nin = len(g.inputs)
            args = list(P)
            for j, (v, ptr, dev) in enumerate(items):
                T = v.dtype.ctype
                cast = f"const_cast<void*>({ptr})" if j < nin else ptr
                w.line(f"{T}* d{j} = {dev} ? static_cast<{T}*>({cast}) : reinterpret_cast<{T}*>"
                       f"(h->staging.get() + off{j});")
                if j < nin:
                    w.line(f"if (!{dev}) pysofie_cuda::check(cudaMemcpyAsync(d{j}, {ptr}, bytes{j}, "
                           f"cudaMemcpyHostToDevice, stream), \"copying an input\");")
                args.append(f"d{j}")
            w.line(f"h->session.infer({', '.join(args)});")
            for j, (v, ptr, dev) in enumerate(items):
                if j >= nin:
                    w.line(f"if (!{dev}) pysofie_cuda::check(cudaMemcpyAsync({ptr}, d{j}, bytes{j}, "
                           f"cudaMemcpyDeviceToHost, stream), \"copying an output\");")
            w.line("h->session.check_errors();")
            w.line("return 0;")

        guarded(body)
        w.line("return 1;")
    with w.block(f"PYSOFIE_API void {p}_destroy(void* session)"):
        w.line(f"delete static_cast<{holder}*>(session);")
    w.line()
