// CPU stand-in for the part of cuBLASLt that generated code uses (see cuda_runtime.h beside this file):
// cublasLtMatmul with its documented meaning, column-major D = epilogue(alpha * op(A) op(B) + beta * C), where the
// BIAS epilogues add bias[i] to every element of row i of D (the bias runs along D's rows) before the activation,
// RELU is max(x, 0) and GELU is the tanh approximation. Descriptors hold their attributes; the heuristic returns
// one algorithm unless PYSOFIE_EMU_LT_NO_ALGO is set (then none: the generated code must fall back to cuBLAS).
// pysofie_emu_lt_calls() counts the products done here, so that tests see which path ran.
#ifndef PYSOFIE_EMU_CUBLASLT_H
#define PYSOFIE_EMU_CUBLASLT_H

#include "cublas_v2.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

enum cudaDataType { CUDA_R_32F = 0 };
typedef cudaDataType cudaDataType_t;
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasLtEpilogue_t {
   CUBLASLT_EPILOGUE_DEFAULT = 1,
   CUBLASLT_EPILOGUE_RELU = 2,
   CUBLASLT_EPILOGUE_BIAS = 4,
   CUBLASLT_EPILOGUE_RELU_BIAS = 6,
   CUBLASLT_EPILOGUE_GELU = 32,
   CUBLASLT_EPILOGUE_GELU_BIAS = 36
};
enum cublasLtMatmulDescAttributes_t {
   CUBLASLT_MATMUL_DESC_TRANSA = 3,
   CUBLASLT_MATMUL_DESC_TRANSB = 4,
   CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
   CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8
};
enum cublasLtMatmulPreferenceAttributes_t {
   CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
   CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
   CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
   CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
   CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
};

struct pysofie_emu_lt_desc {
   cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
   int epilogue = CUBLASLT_EPILOGUE_DEFAULT;
   const float* bias = nullptr;
};
struct pysofie_emu_lt_layout {
   uint64_t rows, cols;
   int64_t ld;
};
struct pysofie_emu_lt_pref {
   int unused;
};
typedef struct pysofie_emu_lt* cublasLtHandle_t;
typedef pysofie_emu_lt_desc* cublasLtMatmulDesc_t;
typedef pysofie_emu_lt_layout* cublasLtMatrixLayout_t;
typedef pysofie_emu_lt_pref* cublasLtMatmulPreference_t;
struct cublasLtMatmulAlgo_t {
   uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
   cublasLtMatmulAlgo_t algo;
   size_t workspaceSize;
   cublasStatus_t state;
   float wavesCount;
   int reserved[4];
};

inline long& pysofie_emu_lt_counter() {
   static long n = 0;
   return n;
}
// not inline: exported from the one translation unit of the emulated library (emu_capi.cpp)
extern "C" __attribute__((visibility("default"), used)) long pysofie_emu_lt_calls() {
   return pysofie_emu_lt_counter();
}

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
   *h = reinterpret_cast<cublasLtHandle_t>(new int(0));
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
   delete reinterpret_cast<int*>(h);
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t, cudaDataType_t) {
   *d = new pysofie_emu_lt_desc();
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
   delete d;
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                     const void* buf, size_t bytes) {
   switch (a) {
      case CUBLASLT_MATMUL_DESC_TRANSA:
         if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
         d->ta = *static_cast<const cublasOperation_t*>(buf);
         return CUBLAS_STATUS_SUCCESS;
      case CUBLASLT_MATMUL_DESC_TRANSB:
         if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
         d->tb = *static_cast<const cublasOperation_t*>(buf);
         return CUBLAS_STATUS_SUCCESS;
      case CUBLASLT_MATMUL_DESC_EPILOGUE:
         if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;  // the header's type: uint32_t
         d->epilogue = int(*static_cast<const uint32_t*>(buf));
         return CUBLAS_STATUS_SUCCESS;
      case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
         if (bytes != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE;
         d->bias = *static_cast<const float* const*>(buf);
         return CUBLAS_STATUS_SUCCESS;
   }
   return CUBLAS_STATUS_INVALID_VALUE;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType, uint64_t rows,
                                                 uint64_t cols, int64_t ld) {
   if (ld < 1 || uint64_t(ld) < rows) return CUBLAS_STATUS_INVALID_VALUE;
   *l = new pysofie_emu_lt_layout{rows, cols, ld};
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
   delete l;
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
   *p = new pysofie_emu_lt_pref{0};
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
   delete p;
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t,
                                                           cublasLtMatmulPreferenceAttributes_t a, const void*,
                                                           size_t bytes) {
   const size_t want = a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES ? sizeof(uint64_t) : sizeof(uint32_t);
   return bytes == want ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d,
                                                     cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                                     cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                                     cublasLtMatmulPreference_t, int requested,
                                                     cublasLtMatmulHeuristicResult_t* res, int* found) {
   *found = 0;
   // shapes must agree: op(A) is m x k, op(B) is k x n, C and D are m x n
   const uint64_t m = d->ta == CUBLAS_OP_N ? A->rows : A->cols, k = d->ta == CUBLAS_OP_N ? A->cols : A->rows;
   const uint64_t kb = d->tb == CUBLAS_OP_N ? B->rows : B->cols, n = d->tb == CUBLAS_OP_N ? B->cols : B->rows;
   if (k != kb || C->rows != m || C->cols != n || D->rows != m || D->cols != n || requested < 1)
      return CUBLAS_STATUS_INVALID_VALUE;
   if (std::getenv("PYSOFIE_EMU_LT_NO_ALGO")) return CUBLAS_STATUS_SUCCESS;
   res[0] = cublasLtMatmulHeuristicResult_t{};
   res[0].state = CUBLAS_STATUS_SUCCESS;
   *found = 1;
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha, const void* Av,
                                     cublasLtMatrixLayout_t Al, const void* Bv, cublasLtMatrixLayout_t Bl,
                                     const void* beta, const void* Cv, cublasLtMatrixLayout_t Cl, void* Dv,
                                     cublasLtMatrixLayout_t Dl, const cublasLtMatmulAlgo_t* algo, void*, size_t,
                                     cudaStream_t) {
   const float* A = static_cast<const float*>(Av);
   const float* B = static_cast<const float*>(Bv);
   const float* C = static_cast<const float*>(Cv);
   float* D = static_cast<float*>(Dv);
   const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
   const int epi = d->epilogue;
   if (!algo || ((epi & CUBLASLT_EPILOGUE_BIAS) && !d->bias)) return CUBLAS_STATUS_INVALID_VALUE;
   const bool ta = d->ta == CUBLAS_OP_T, tb = d->tb == CUBLAS_OP_T;
   const uint64_t m = Dl->rows, n = Dl->cols, k = ta ? Al->rows : Al->cols;
   for (uint64_t j = 0; j < n; ++j)
      for (uint64_t i = 0; i < m; ++i) {
         double acc = 0.0;
         for (uint64_t p = 0; p < k; ++p)
            acc += double(ta ? A[p + i * Al->ld] : A[i + p * Al->ld]) * double(tb ? B[j + p * Bl->ld] : B[p + j * Bl->ld]);
         double v = a * acc + (b == 0.f ? 0.0 : double(b) * C[i + j * Cl->ld]);
         if (epi & CUBLASLT_EPILOGUE_BIAS) v += d->bias[i];
         if (epi & CUBLASLT_EPILOGUE_RELU) v = v > 0.0 ? v : 0.0;
         if (epi & CUBLASLT_EPILOGUE_GELU) v = 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
         D[i + j * Dl->ld] = float(v);
      }
   ++pysofie_emu_lt_counter();
   return CUBLAS_STATUS_SUCCESS;
}

#endif
