// pysofie CUDA runtime helpers: error checks, device buffers, launch sizes and the cuBLAS calls of generated code.
// Inlined into every generated .cuh; the guard lets several generated models share one translation unit.
#ifndef PYSOFIE_CUDA_CUH
#define PYSOFIE_CUDA_CUH

#include <cuda_runtime.h>
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace pysofie_cuda {

inline void check(cudaError_t e, const char* what) {
   if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

inline void check(cublasStatus_t s, const char* what) {
   if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": " + cublasGetStatusString(s));
}

// A typed pointer into a device arena; data() as a std::vector has, so the planner's expressions serve both targets.
template <typename T>
struct dspan {
   T* ptr = nullptr;
   T* data() const { return ptr; }
};

// One device allocation that only grows (its content is not kept when it does).
class DeviceBuffer {
 public:
   DeviceBuffer() = default;
   DeviceBuffer(const DeviceBuffer&) = delete;
   DeviceBuffer& operator=(const DeviceBuffer&) = delete;
   ~DeviceBuffer() {
      if (ptr_) cudaFree(ptr_);
   }
   // true when the buffer moved (pointers into it must be recomputed)
   bool reserve(size_t bytes) {
      if (bytes <= bytes_ && ptr_) return false;
      if (ptr_) check(cudaFree(ptr_), "cudaFree");
      ptr_ = nullptr;
      bytes_ = 0;
      check(cudaMalloc(&ptr_, std::max<size_t>(bytes, 256)), "cudaMalloc");
      bytes_ = std::max<size_t>(bytes, 256);
      return true;
   }
   char* get() const { return static_cast<char*>(ptr_); }
   size_t bytes() const { return bytes_; }

 private:
   void* ptr_ = nullptr;
   size_t bytes_ = 0;
};

// An on/off environment variable: unset or empty gives `dflt`; "0", "off", "false", "no" give false.
inline bool env_flag(const char* name, bool dflt) {
   const char* v = std::getenv(name);
   if (!v || !*v) return dflt;
   const std::string s(v);
   return !(s == "0" || s == "off" || s == "false" || s == "no" || s == "OFF" || s == "FALSE" || s == "NO");
}

// Offsets of the arena's parts are aligned to 256 bytes (cudaMalloc's alignment, good for vector loads).
inline size_t align_up(size_t bytes) { return (bytes + 255) & ~size_t(255); }

constexpr unsigned kThreads = 256;

// Blocks of a grid-stride launch over n items: enough to fill the GPU, never 0.
inline unsigned blocks(size_t n) {
   const size_t b = (n + kThreads - 1) / kThreads;
   return static_cast<unsigned>(std::min<size_t>(std::max<size_t>(b, 1), size_t(1) << 20));
}

// Blocks of a block-stride launch over n items (one block per item up to the grid's limit), never 0.
inline unsigned grid_blocks(size_t n) {
   return static_cast<unsigned>(std::min<size_t>(std::max<size_t>(n, 1), size_t(1) << 20));
}

// C = alpha * op(A) * op(B) + beta * C with row-major matrices: cuBLAS is column major, so this computes
// C^T = op(B)^T op(A)^T.
inline void sgemm(cublasHandle_t h, bool transA, bool transB, size_t M, size_t N, size_t K, float alpha,
                  const float* A, size_t lda, const float* B, size_t ldb, float beta, float* C, size_t ldc) {
   if (M == 0 || N == 0) return;
   check(cublasSgemm(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M),
                     int(K), &alpha, B, int(ldb), A, int(lda), &beta, C, int(ldc)),
         "cublasSgemm");
}

// The same for `count` products, matrix k at A + k * strideA (a stride of 0 reuses one matrix).
inline void sgemm_batched(cublasHandle_t h, bool transA, bool transB, size_t M, size_t N, size_t K, float alpha,
                          const float* A, size_t lda, long long strideA, const float* B, size_t ldb,
                          long long strideB, float beta, float* C, size_t ldc, long long strideC, size_t count) {
   if (M == 0 || N == 0 || count == 0) return;
   check(cublasSgemmStridedBatched(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   int(N), int(M), int(K), &alpha, B, int(ldb), strideB, A, int(lda), strideA,
                                   &beta, C, int(ldc), strideC, int(count)),
         "cublasSgemmStridedBatched");
}

// The matrix-product libraries of a Session: a cuBLAS handle, a cuBLASLt handle (products with a bias and
// activation epilogue), their shared workspace and the cuBLASLt plans (descriptors and the chosen algorithm) per
// shape. Converts to the cuBLAS handle, so generated cuBLAS calls take it as they are.
class Blas {
 public:
   struct Plan {
      bool ok = false;
      cublasLtMatmulDesc_t desc = nullptr;
      cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
      cublasLtMatmulAlgo_t algo{};
   };
   using Key = std::array<long long, 12>;

   cublasHandle_t h = nullptr;
   cublasLtHandle_t lt = nullptr;
   void* work = nullptr;
   size_t work_bytes = 0;
   bool epilogues = true;  // false: every product through cuBLAS, bias and activation by a kernel
   size_t epilogue_products = 0;  // products done by cublasLtMatmul with an epilogue (tests see which path ran)

   Blas() = default;
   Blas(const Blas&) = delete;
   Blas& operator=(const Blas&) = delete;
   ~Blas() { release(); }
   // Destroys the plans and handles (before the stream and the workspace go).
   void release() {
      clear_plans();
      if (lt) cublasLtDestroy(lt);
      if (h) cublasDestroy(h);
      lt = nullptr;
      h = nullptr;
   }
   operator cublasHandle_t() const { return h; }

   void create(cudaStream_t stream, void* workspace, size_t bytes) {
      check(cublasCreate(&h), "cublasCreate");
      check(cublasSetStream(h, stream), "cublasSetStream");
      check(cublasSetWorkspace(h, workspace, bytes), "cublasSetWorkspace");
      check(cublasLtCreate(&lt), "cublasLtCreate");
      work = workspace;
      work_bytes = bytes;
   }
   void clear_plans() {
      for (auto& kv : plans_) destroy(kv.second);
      plans_.clear();
   }
   // The plan of a key, made on first use (host work only: safe while a CUDA graph is captured).
   Plan& plan(const Key& k) {
      auto it = plans_.find(k);
      if (it != plans_.end()) return it->second;
      if (plans_.size() >= 256) clear_plans();
      Plan& p = plans_[k];
      make(p, k);
      return p;
   }

 private:
   std::map<Key, Plan> plans_;

   static void destroy(Plan& p) {
      if (p.desc) cublasLtMatmulDescDestroy(p.desc);
      if (p.a) cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) cublasLtMatrixLayoutDestroy(p.b);
      if (p.c) cublasLtMatrixLayoutDestroy(p.c);
      p = Plan{};
   }
   // Key: m, n, k (column major: D is m x n), lda, ldb, ldc, opA, opB, epilogue, alignments of A, B and C/D.
   void make(Plan& p, const Key& k) {
      const auto epi = static_cast<cublasLtEpilogue_t>(k[8]);
      const cublasOperation_t ta = k[6] ? CUBLAS_OP_T : CUBLAS_OP_N, tb = k[7] ? CUBLAS_OP_T : CUBLAS_OP_N;
      const long long m = k[0], n = k[1], kk = k[2];
      bool ok = cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS;
      ok = ok && cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)) == 0;
      ok = ok && cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)) == 0;
      ok = ok && cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)) == 0;
      // stored shapes: op(A) is m x kk, op(B) is kk x n
      ok = ok && cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, k[6] ? kk : m, k[6] ? m : kk, k[3]) == 0;
      ok = ok && cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, k[7] ? n : kk, k[7] ? kk : n, k[4]) == 0;
      ok = ok && cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, m, n, k[5]) == 0;
      cublasLtMatmulPreference_t pref = nullptr;
      ok = ok && cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS;
      const uint64_t ws = work_bytes;
      const uint32_t al[3] = {uint32_t(k[9]), uint32_t(k[10]), uint32_t(k[11])};
      ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                      sizeof(ws)) == 0;
      ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0],
                                                      sizeof(uint32_t)) == 0;
      ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1],
                                                      sizeof(uint32_t)) == 0;
      ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2],
                                                      sizeof(uint32_t)) == 0;
      ok = ok && cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2],
                                                      sizeof(uint32_t)) == 0;
      cublasLtMatmulHeuristicResult_t res{};
      int found = 0;
      ok = ok && cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.a, p.b, p.c, p.c, pref, 1, &res, &found) ==
                     CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS &&
           res.workspaceSize <= work_bytes;
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (!ok) {
         destroy(p);  // no algorithm for this case: the cuBLAS path
         return;
      }
      p.algo = res.algo;
      p.ok = true;
   }
};

// The largest power of two (up to 256) that divides the address: the alignment cuBLASLt may assume.
inline long long alignment(const void* p) {
   const uintptr_t a = reinterpret_cast<uintptr_t>(p);
   return a == 0 ? 256 : static_cast<long long>(std::min<uintptr_t>(a & (~a + 1), 256));
}

// Row-major C[M, N] = act(alpha * op(A) op(B) + bias[N] on every row) in one cublasLtMatmul whose epilogue adds
// the bias (none: bias == nullptr) and applies the activation (`epi`: CUBLASLT_EPILOGUE_BIAS, RELU_BIAS, ...).
// Returns false, having done nothing, when epilogues are off or cuBLASLt has no algorithm for the case: the
// caller then takes the cuBLAS path (sgemm and its bias / activation kernel). Column major, as sgemm:
// C^T (N x M) = op(B)^T op(A)^T, so the bias runs along D's rows as cuBLASLt's bias epilogue requires.
inline bool sgemm_epilogue(Blas& b, cudaStream_t stream, cublasLtEpilogue_t epi, bool transA, bool transB,
                           size_t M, size_t N, size_t K, float alpha, const float* A, size_t lda, const float* B,
                           size_t ldb, const float* bias, float* C, size_t ldc) {
   if (!b.epilogues || !b.lt || M == 0 || N == 0 || K == 0) return false;
   const size_t big = size_t(INT_MAX);
   if (M > big || N > big || K > big || lda > big || ldb > big || ldc > big) return false;
   if (bias && reinterpret_cast<uintptr_t>(bias) % 16) return false;
   const Blas::Key key{(long long)N, (long long)M, (long long)K, (long long)ldb, (long long)lda, (long long)ldc,
                       transB ? 1 : 0, transA ? 1 : 0, (long long)epi, alignment(B), alignment(A), alignment(C)};
   Blas::Plan& p = b.plan(key);
   if (!p.ok) return false;
   if (bias && cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)) != 0)
      return false;
   const float zero = 0.f;
   if (cublasLtMatmul(b.lt, p.desc, &alpha, B, p.a, A, p.b, &zero, C, p.c, C, p.c, &p.algo, b.work, b.work_bytes,
                      stream) != CUBLAS_STATUS_SUCCESS) {
      p.ok = false;  // not again for this shape
      return false;
   }
   ++b.epilogue_products;
   return true;
}

// Column-major product for the convolutions: C (m x n, ldc) = A (m x k, lda) * B (k x n, ldb), `count` times.
inline void sgemm_cm_batched(cublasHandle_t h, bool transA, bool transB, size_t m, size_t n, size_t k,
                             const float* A, size_t lda, long long strideA, const float* B, size_t ldb,
                             long long strideB, float* C, size_t ldc, long long strideC, size_t count) {
   if (m == 0 || n == 0 || count == 0) return;
   const float one = 1.f, zero = 0.f;
   check(cublasSgemmStridedBatched(h, transA ? CUBLAS_OP_T : CUBLAS_OP_N, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   int(m), int(n), int(k), &one, A, int(lda), strideA, B, int(ldb), strideB, &zero,
                                   C, int(ldc), strideC, int(count)),
         "cublasSgemmStridedBatched");
}

// CUDA graphs of a Session's infer, one per key (the size parameters and the data pointers, which a graph holds
// fixed): captured on the first call with a key, replayed after. Cleared when the arena moves.
class GraphCache {
 public:
   GraphCache() = default;
   GraphCache(const GraphCache&) = delete;
   GraphCache& operator=(const GraphCache&) = delete;
   ~GraphCache() { clear(); }
   void clear() {
      for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
      graphs_.clear();
   }
   // Launches the graph of `key` on `stream`, capturing `run()` first if there is none.
   template <typename F>
   void launch(const std::vector<uintptr_t>& key, cudaStream_t stream, F&& run) {
      auto it = graphs_.find(key);
      if (it == graphs_.end()) {
         if (graphs_.size() >= 16) clear();  // many sizes or pointers: start over rather than grow without end
         check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
         cudaGraph_t graph = nullptr;
         try {
            run();
         } catch (...) {
            cudaStreamEndCapture(stream, &graph);
            if (graph) cudaGraphDestroy(graph);
            throw;
         }
         check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
         cudaGraphExec_t exec = nullptr;
         const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
         cudaGraphDestroy(graph);
         check(e, "cudaGraphInstantiate");
         it = graphs_.emplace(key, exec).first;
      }
      check(cudaGraphLaunch(it->second, stream), "cudaGraphLaunch");
   }

 private:
   std::map<std::vector<uintptr_t>, cudaGraphExec_t> graphs_;
};

}  // namespace pysofie_cuda

#endif  // PYSOFIE_CUDA_CUH
