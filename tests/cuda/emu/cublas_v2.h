// CPU stand-in for cuBLAS (see cuda_runtime.h beside this file): cublasSgemm with cuBLAS's documented meaning,
// column-major C = alpha * op(A) * op(B) + beta * C, written out directly.
#ifndef PYSOFIE_EMU_CUBLAS_V2_H
#define PYSOFIE_EMU_CUBLAS_V2_H

#include "cuda_runtime.h"

#include <algorithm>
#include <vector>

typedef struct pysofie_emu_cublas* cublasHandle_t;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 };
enum cublasOperation_t { CUBLAS_OP_N, CUBLAS_OP_T };

inline const char* cublasGetStatusString(cublasStatus_t) { return "emulated cuBLAS error"; }
inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
   *h = nullptr;
   return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }

inline cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* A, int lda, const float* B, int ldb,
                                  const float* beta, float* C, int ldc) {
   // cuBLAS's argument checks: leading dimensions at least the stored rows
   if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) ||
       ldc < m || lda < 1 || ldb < 1 || ldc < 1)
      return CUBLAS_STATUS_INVALID_VALUE;
   std::vector<double> acc(m > 0 ? m : 1);
   for (int j = 0; j < n; ++j) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int p = 0; p < k; ++p) {  // column j of C accumulates op(A)[:, p] * op(B)[p, j]
         const double b = tb == CUBLAS_OP_N ? B[p + (size_t)j * ldb] : B[j + (size_t)p * ldb];
         for (int i = 0; i < m; ++i)
            acc[i] += (double)(ta == CUBLAS_OP_N ? A[i + (size_t)p * lda] : A[p + (size_t)i * lda]) * b;
      }
      for (int i = 0; i < m; ++i) {
         float& c = C[i + (size_t)j * ldc];
         c = (float)(*alpha * acc[i] + (*beta == 0.f ? 0.0 : (double)*beta * c));
      }
   }
   return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                int n, int k, const float* alpha, const float* A, int lda,
                                                long long sA, const float* B, int ldb, long long sB,
                                                const float* beta, float* C, int ldc, long long sC, int count) {
   for (int b = 0; b < count; ++b) {
      const cublasStatus_t s = cublasSgemm(h, ta, tb, m, n, k, alpha, A + b * sA, lda, B + b * sB, ldb, beta,
                                           C + b * sC, ldc);
      if (s != CUBLAS_STATUS_SUCCESS) return s;
   }
   return CUBLAS_STATUS_SUCCESS;
}

#endif
