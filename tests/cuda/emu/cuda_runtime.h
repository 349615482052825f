// CPU stand-in for the CUDA runtime, for tests/cuda/test_cuda_emulated.py only: generated CUDA code compiled by
// the host C++ compiler. A kernel launch becomes a plain call with one block of one thread, so every generated
// grid-stride loop runs all of its iterations in order (they are independent, so the result is the GPU's);
// device memory is host memory and copies are memcpy. Not a GPU test: it checks the generated indexing, the
// arena and weight layout, and the cuBLAS argument mapping (cublas_v2.h beside this file) on the CPU.
#ifndef PYSOFIE_EMU_CUDA_RUNTIME_H
#define PYSOFIE_EMU_CUDA_RUNTIME_H

#include <cstddef>
#include <cstdlib>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(n)

struct pysofie_emu_dim3 {
   unsigned x, y, z;
};
static const pysofie_emu_dim3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
// one thread per block: a block-stride kernel's phases run one after the other, the barrier has nothing to wait for
inline void __syncthreads() {}

enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorNotSupported = 801 };
enum { cudaStreamNonBlocking = 1 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaStreamCaptureMode { cudaStreamCaptureModeThreadLocal };
typedef struct pysofie_emu_stream* cudaStream_t;
typedef struct pysofie_emu_graph* cudaGraph_t;
typedef struct pysofie_emu_graph_exec* cudaGraphExec_t;

inline const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) {
   *n = 1;
   return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** p, size_t n) {
   *p = std::malloc(n);
   if (*p) std::memset(*p, 0xff, n);  // garbage, as fresh device memory: a read before a write shows
   return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) {
   std::free(p);
   return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
   if (n) std::memmove(d, s, n);
   return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t) {
   return cudaMemcpy(d, s, n, k);
}
inline cudaError_t cudaMemset(void* d, int v, size_t n) {
   std::memset(d, v, n);
   return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
   *s = nullptr;
   return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
// graphs cannot be emulated by running eagerly (a replay would do nothing): the emulation refuses them
inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) { return cudaErrorNotSupported; }
inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t*) { return cudaErrorNotSupported; }
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t*, cudaGraph_t, unsigned long long) { return cudaErrorNotSupported; }
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t) { return cudaErrorNotSupported; }
inline cudaError_t cudaGraphDestroy(cudaGraph_t) { return cudaSuccess; }
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t) { return cudaSuccess; }

#endif
