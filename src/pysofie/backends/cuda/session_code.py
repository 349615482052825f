"""The CUDA Session: stream, cuBLAS handle, device weights (uploaded once), one arena for the intermediate values
(grown for larger sizes), ``infer`` on device pointers and ``infer_host`` on host pointers."""
from __future__ import annotations

from ...ir.shapes import cpp_dim, numel
from ..cpp.emitter import _cstr, _vt
from ..cpp.writer import CodeWriter


def write_session(em, w: CodeWriter, calls: list[str]) -> None:
    from .emitter import slot_bytes
    g = em.graph
    P = em.params
    chk = "pysofie_cuda::check"
    with w.block("struct Session", close="};"):
        w.line("cudaStream_t fStream = nullptr;")
        w.line("pysofie_cuda::Blas fBlas;  // cuBLAS, cuBLASLt and their plans")
        w.line("pysofie_cuda::DeviceBuffer fWeights;  // every constant, uploaded once")
        w.line("pysofie_cuda::DeviceBuffer fArena;  // intermediate values and scratch, grown with the sizes")
        w.line("pysofie_cuda::DeviceBuffer fIO;  // device copies of host inputs and outputs (infer_host)")
        w.line("pysofie_cuda::DeviceBuffer fBlasWork;  // cuBLAS's workspace")
        w.line("pysofie_cuda::DeviceBuffer fFlags;  // an error flag that kernels set (an index out of range)")
        w.line("int* fErr = nullptr;")
        w.line("pysofie_cuda::GraphCache fGraphs;  // infer_graph's captured graphs")
        for v, cname in em.consts:
            w.line(f"pysofie_cuda::dspan<{_vt(v.dtype)}> fTensor_{cname};")
        parts = slot_bytes(em)
        for s in em.slots:
            w.line(f"pysofie_cuda::dspan<{_vt(s['dtype'])}> {s['name']};")
        for dt in em.scratch:
            w.line(f"pysofie_cuda::dspan<{_vt(dt)}> fWork_{dt.name.lower()};")
        for p in P:
            w.line(f"size_t fCap_{p} = 0;  // the arena is sized for {p} up to this")
        w.line()
        default_file = f"{em.name}.{em.weights}"
        sig = ["std::string weight_file = " + _cstr(default_file)] + [f"size_t {p} = 1" for p in P]
        with w.block(f"explicit Session({', '.join(sig)})"):
            w.line(f"{chk}(cudaStreamCreateWithFlags(&fStream, cudaStreamNonBlocking), \"cudaStreamCreate\");")
            # a workspace of its own, so that cuBLAS allocates nothing while a CUDA graph is captured
            w.line("fBlasWork.reserve(size_t(32) << 20);")
            w.line("fBlas.create(fStream, fBlasWork.get(), fBlasWork.bytes());")
            w.line("fBlas.epilogues = pysofie_cuda::env_flag(\"PYSOFIE_CUDA_EPILOGUES\", true);")
            w.line("fFlags.reserve(sizeof(int));")
            w.line("fErr = reinterpret_cast<int*>(fFlags.get());")
            w.line(f"{chk}(cudaMemset(fErr, 0, sizeof(int)), \"cudaMemset\");")
            if em.consts:
                offs, wbytes = [], 0
                for v, cname in em.consts:
                    offs.append(wbytes)
                    wbytes += -(-max(1, int(v.const.size)) * v.dtype.itemsize // 256) * 256
                w.line(f"std::vector<char> pysofie_host({wbytes});")
                reader = "pysofie_rt::DatReader" if em.weights == "dat" else "pysofie_rt::BinReader"
                w.line(f"{reader} pysofie_reader(weight_file);")
                for (v, cname), off in zip(em.consts, offs):
                    extra = f", {v.dtype.onnx}" if em.weights == "bin" else ""
                    w.line(f"pysofie_reader.read<{v.dtype.ctype}>({_cstr(cname)}, reinterpret_cast<{v.dtype.ctype}*>"
                           f"(pysofie_host.data() + {off}), {int(v.const.size)}{extra});")
                w.line("pysofie_reader.finish();")
                w.line(f"fWeights.reserve({wbytes});")
                for (v, cname), off in zip(em.consts, offs):
                    w.line(f"fTensor_{cname}.ptr = reinterpret_cast<{_vt(v.dtype)}*>(fWeights.get() + {off});")
                w.line(f"{chk}(cudaMemcpy(fWeights.get(), pysofie_host.data(), {wbytes}, "
                       f"cudaMemcpyHostToDevice), \"uploading the weights\");")
            else:
                w.line("(void)weight_file;")
            w.line(f"ensure_capacity({', '.join(P)});")
        w.line("Session(const Session&) = delete;")
        w.line("Session& operator=(const Session&) = delete;")
        with w.block("~Session()"):
            w.line("if (fStream) cudaStreamSynchronize(fStream);")
            w.line("fBlas.release();")
            w.line("if (fStream) cudaStreamDestroy(fStream);")
        w.line()
        w.line("// cuBLASLt epilogues (bias and activation in the product) on or off; off: cuBLAS and a kernel. The")
        w.line("// default is on unless PYSOFIE_CUDA_EPILOGUES=0 when the Session is made. Drops captured graphs.")
        with w.block("void set_epilogues(bool on)"):
            w.line("if (on == fBlas.epilogues) return;")
            w.line("cudaStreamSynchronize(fStream);")
            w.line("fGraphs.clear();")
            w.line("fBlas.epilogues = on;")
        w.line("bool epilogues() const { return fBlas.epilogues; }")
        w.line("// How many products ran as one cuBLASLt call with their epilogue so far.")
        w.line("size_t epilogue_products() const { return fBlas.epilogue_products; }")
        w.line()
        w.line("// The stream every kernel of this Session runs on.")
        w.line("cudaStream_t stream() const { return fStream; }")
        w.line()
        psig = ", ".join(f"size_t {p}" for p in P)
        with w.block(f"void ensure_capacity({psig})"):
            em._write_capacity_check(w, list(P))
            w.line("size_t pysofie_total = 0;")
            for name, nbytes, _ in parts:
                w.line(f"const size_t off_{name} = pysofie_total;")
                w.line(f"pysofie_total += pysofie_cuda::align_up({nbytes});")
            w.line("if (fStream) cudaStreamSynchronize(fStream);  // nothing in flight uses the old arena")
            w.line("if (fArena.reserve(pysofie_total)) fGraphs.clear();  // graphs hold pointers into the arena")
            for name, _, dt in parts:
                w.line(f"{name}.ptr = reinterpret_cast<{_vt(dt)}*>(fArena.get() + off_{name});")
        w.line()
        w.line("// Throws if a kernel reported bad data (an index or a sequence length out of range) since the last")
        w.line("// check; synchronizes.")
        with w.block("void check_errors()"):
            w.line(f"{chk}(cudaStreamSynchronize(fStream), \"running the model\");")
            w.line("int flag = 0;")
            w.line(f"{chk}(cudaMemcpy(&flag, fErr, sizeof(int), cudaMemcpyDeviceToHost), \"reading the error flag\");")
            with w.block("if (flag)"):
                w.line(f"{chk}(cudaMemset(fErr, 0, sizeof(int)), \"cudaMemset\");")
                w.line("throw std::out_of_range(\"an index (Gather) or a length (sequence_lens) was out of range\");")
        w.line()
        # device infer
        params = em._infer_params(list(P))
        w.line("// Runs the model on device pointers, asynchronously on stream(). Allocates nothing unless a size")
        w.line("// parameter exceeds every value seen before (then the arena grows once).")
        with w.block(f"void infer({', '.join(params)})"):
            em._write_guards(w)
            if P:
                w.line(f"ensure_capacity({', '.join(P)});")
            for c in calls:
                w.line(c)
            em._write_output_copies(w)
            w.line(f"{chk}(cudaGetLastError(), \"launching the model's kernels\");")
        w.line()
        # graph infer
        w.line("// As infer, replaying a CUDA graph captured on the first call with these sizes and pointers (fewer")
        w.line("// launches: for small models, where launch overhead dominates).")
        with w.block(f"void infer_graph({', '.join(params)})"):
            if P:
                w.line(f"ensure_capacity({', '.join(P)});  // outside the capture: it may allocate")
            key = [f"uintptr_t({p})" for p in P] + [f"reinterpret_cast<uintptr_t>({nm})"
                                                     for nm in em.input_names + em.output_names]
            w.line(f"const std::vector<uintptr_t> key{{{', '.join(key)}}};")
            args = ", ".join(list(P) + em.input_names + em.output_names)
            w.line(f"fGraphs.launch(key, fStream, [&]() {{ infer({args}); }});")
        w.line()
        # host infer
        hparams = em._infer_params(list(P))
        w.line("// Host pointers: copies the inputs to the device, runs, copies the outputs back and waits.")
        with w.block(f"void infer_host({', '.join(hparams)})"):
            w.line("size_t pysofie_total = 0;")
            items = list(zip(g.inputs, em.input_names)) + list(zip(g.outputs, em.output_names))
            for k, (v, nm) in enumerate(items):
                w.line(f"const size_t pysofie_bytes{k} = size_t({cpp_dim(numel(v.shape))}) * sizeof({v.dtype.ctype});")
                w.line(f"const size_t pysofie_off{k} = pysofie_total;")
                w.line(f"pysofie_total += pysofie_cuda::align_up(pysofie_bytes{k});")
            w.line("if (pysofie_total > fIO.bytes()) cudaStreamSynchronize(fStream);")
            w.line("fIO.reserve(pysofie_total);")
            nin = len(g.inputs)
            dargs = list(P)
            for k, (v, nm) in enumerate(items):
                T = v.dtype.ctype
                w.line(f"{T}* pysofie_d{k} = reinterpret_cast<{T}*>(fIO.get() + pysofie_off{k});")
                dargs.append(f"pysofie_d{k}")
                if k < nin:
                    w.line(f"{chk}(cudaMemcpyAsync(pysofie_d{k}, {nm}, pysofie_bytes{k}, cudaMemcpyHostToDevice, "
                           f"fStream), \"copying an input\");")
            w.line(f"infer({', '.join(dargs)});")
            for k, (v, nm) in enumerate(items):
                if k >= nin:
                    w.line(f"{chk}(cudaMemcpyAsync({nm}, pysofie_d{k}, pysofie_bytes{k}, cudaMemcpyDeviceToHost, "
                           f"fStream), \"copying an output\");")
            w.line("check_errors();")
        w.line()
        # allocating host infer
        w.line("// Host pointers; returns the output(s) in new vectors.")
        em._write_allocating_infer(w, list(P), "infer_host")
