// pysofie batch-of-one dense layer: y = x * B (+ y when accumulating) (+ bias) then the activation, for one row x
// and a constant B packed as pysofie_gemm.h describes (panels of 16 columns, k-major; the last one 8 wide when it
// holds at most 8 columns). Row k of a panel is contiguous, so each panel streams once, front to back, into one
// vector accumulator per column group (x[k] broadcast): no packing of x, no tiles, no blocking, no thread pool.
// Four partial sums per panel (k mod 4) keep the FMA units busy; they are added at the end (the order of the
// additions differs from gemm_packed's by rounding only). Used by RowMLP (ops/gnn.py) when it has one row.
#ifndef PYSOFIE_GEMV_H
#define PYSOFIE_GEMV_H

#include <algorithm>
#include <cmath>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#ifndef PYSOFIE_GEMM_H
#include "pysofie_gemm.h"  // Act codes, act_scalar, the packed layout
#endif

namespace pysofie_gemv {

// y[0, nv) of one panel (wid = 8 or 16 packed columns) from its accumulated sums s[0, wid): + y (accumulate),
// + bias, activation; only the nv valid columns are stored.
inline void finish_panel(float* __restrict s, long nv, float* __restrict y, bool accumulate,
                         const float* __restrict bias, int act, float slope) {
   for (long t = 0; t < nv; ++t) {
      float v = s[t] + (accumulate ? y[t] : 0.f) + (bias ? bias[t] : 0.f);
      if (act == pysofie_gemm::RELU) v = v > 0.f ? v : 0.f;
      else if (act == pysofie_gemm::LEAKY) v = v < 0.f ? slope * v : v;
      s[t] = v;
   }
   if (act != pysofie_gemm::NONE && act != pysofie_gemm::RELU && act != pysofie_gemm::LEAKY) {
#if defined(__AVX2__) && defined(__FMA__)
      if (act == pysofie_gemm::GELU || act == pysofie_gemm::GELU_TANH) {
         for (long t = 0; t < nv; t += 8) {
            const __m256 v = _mm256_load_ps(s + t);
            _mm256_store_ps(s + t, act == pysofie_gemm::GELU ? pysofie_vm::gelu8(v) : pysofie_vm::gelu_tanh8(v));
         }
      } else
#endif
         for (long t = 0; t < nv; ++t) s[t] = pysofie_gemm::act_scalar(s[t], act, slope);
   }
   std::copy_n(s, nv, y);
}

// y[0, N) = act(x[0, K) * Bp (+ y[0, N) when accumulate) (+ bias[0, N))); bias may be null; y holds N floats
// (nothing is written past them) and may not overlap x.
inline void gemv_packed(long N, long K, const float* __restrict x, const float* __restrict Bp, float* __restrict y,
                        bool accumulate, const float* __restrict bias, int act, float slope) {
   for (long j = 0; j < N; j += 16) {
      const long nv = std::min<long>(16, N - j);
      const long wid = nv <= 8 ? 8 : 16;
      const float* __restrict b = Bp + j * K;
      alignas(64) float s[16];
#if defined(__AVX512F__)
      if (wid == 16) {
         __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
         long k = 0;
         for (; k + 4 <= K; k += 4, b += 64) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_loadu_ps(b), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 1]), _mm512_loadu_ps(b + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 2]), _mm512_loadu_ps(b + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 3]), _mm512_loadu_ps(b + 48), a3);
         }
         for (; k < K; ++k, b += 16) a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_loadu_ps(b), a0);
         _mm512_store_ps(s, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
      } else
#endif
#if defined(__AVX2__) && defined(__FMA__)
      if (wid == 16) {
         __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
         long k = 0;
         for (; k + 4 <= K; k += 4, b += 64) {
            const __m256 x0 = _mm256_set1_ps(x[k]), x1 = _mm256_set1_ps(x[k + 1]);
            const __m256 x2 = _mm256_set1_ps(x[k + 2]), x3 = _mm256_set1_ps(x[k + 3]);
            a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b), a0);
            c0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + 8), c0);
            a1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b + 16), a1);
            c1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b + 24), c1);
            a2 = _mm256_fmadd_ps(x2, _mm256_loadu_ps(b + 32), a2);
            c2 = _mm256_fmadd_ps(x2, _mm256_loadu_ps(b + 40), c2);
            a3 = _mm256_fmadd_ps(x3, _mm256_loadu_ps(b + 48), a3);
            c3 = _mm256_fmadd_ps(x3, _mm256_loadu_ps(b + 56), c3);
         }
         for (; k < K; ++k, b += 16) {
            const __m256 x0 = _mm256_set1_ps(x[k]);
            a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b), a0);
            c0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + 8), c0);
         }
         _mm256_store_ps(s, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
         _mm256_store_ps(s + 8, _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
      } else {
         __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
         long k = 0;
         for (; k + 4 <= K; k += 4, b += 32) {
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(x[k]), _mm256_loadu_ps(b), a0);
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(x[k + 1]), _mm256_loadu_ps(b + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_set1_ps(x[k + 2]), _mm256_loadu_ps(b + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_set1_ps(x[k + 3]), _mm256_loadu_ps(b + 24), a3);
         }
         for (; k < K; ++k, b += 8) a0 = _mm256_fmadd_ps(_mm256_set1_ps(x[k]), _mm256_loadu_ps(b), a0);
         _mm256_store_ps(s, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
      }
#else
      {
         float acc[4][16] = {};
         long k = 0;
         for (; k + 4 <= K; k += 4)
            for (int u = 0; u < 4; ++u, b += wid)
               for (long t = 0; t < wid; ++t) acc[u][t] += x[k + u] * b[t];
         for (; k < K; ++k, b += wid)
            for (long t = 0; t < wid; ++t) acc[0][t] += x[k] * b[t];
         for (long t = 0; t < wid; ++t) s[t] = (acc[0][t] + acc[1][t]) + (acc[2][t] + acc[3][t]);
      }
#endif
      finish_panel(s, nv, y + j, accumulate, bias ? bias + j : nullptr, act, slope);
   }
}

}  // namespace pysofie_gemv

#endif  // PYSOFIE_GEMV_H
