// pysofie CUDA runtime helpers: error checks, device buffers, launch sizes and the cuBLAS calls of generated code.
// Inlined into every generated .cuh; the guard lets several generated models share one translation unit.
#ifndef PYSOFIE_CUDA_CUH
#define PYSOFIE_CUDA_CUH

#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cstdint>
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
