// pysofie batch-of-one dense layer: y = x * B (+ y when accumulating) (+ bias) then the activation, for one row x
// and a constant B packed as pysofie_gemm.h describes (panels of 16 columns, k-major; the last one 8 wide when it
// holds at most 8 columns). Row k of a panel is contiguous, so each panel streams once, front to back, into one
// vector accumulator per 8 columns (x[k] broadcast): no packing of x, no tiles, no blocking, no thread pool.
// Two 16-wide panels at a time with two partial sums each (even and odd k) keep eight FMA chains busy; the bias,
// the activation and a masked store of the valid columns are applied on the registers (the order of the
// additions differs from gemm_packed's by rounding only). 8-lane AVX2/FMA code (AVX-512 machines run it too:
// pysofie compiles with -mprefer-vector-width=256); a portable scalar fallback. Used by RowMLP (ops/gnn.py) when
// it has one row.
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

// The activations that run on the stored values (as gemm_packed applies them): y[0, nv) in place.
inline void act_stored(float* __restrict y, long nv, int act, float slope) {
   if (act == pysofie_gemm::SIGMOID || act == pysofie_gemm::TANH)
      for (long t = 0; t < nv; ++t) y[t] = pysofie_gemm::act_scalar(y[t], act, slope);
}

#if defined(__AVX2__) && defined(__FMA__)
// 8 lanes: + bias, Relu / LeakyRelu / Gelu (both forms) on the register (Sigmoid and Tanh: act_stored)
inline __m256 act8(__m256 v, int act, float slope) {
   switch (act) {
      case pysofie_gemm::RELU: return _mm256_max_ps(v, _mm256_setzero_ps());
      case pysofie_gemm::LEAKY:
         return _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(slope)),
                                 _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
      case pysofie_gemm::GELU: return pysofie_vm::gelu8(v);
      case pysofie_gemm::GELU_TANH: return pysofie_vm::gelu_tanh8(v);
      default: return v;
   }
}

// y[0, nv) (nv <= 8) = act8(s + y (accumulate) + bias[0, 8)), the lanes past nv neither read nor written
inline void store8(__m256 s, long nv, float* __restrict y, bool accumulate, const float* __restrict bias, int act,
                   float slope) {
   if (nv >= 8) {
      if (accumulate) s = _mm256_add_ps(s, _mm256_loadu_ps(y));
      if (bias) s = _mm256_add_ps(s, _mm256_loadu_ps(bias));
      _mm256_storeu_ps(y, act8(s, act, slope));
   } else {
      const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nv)),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      if (accumulate) s = _mm256_add_ps(s, _mm256_maskload_ps(y, m));
      if (bias) s = _mm256_add_ps(s, _mm256_loadu_ps(bias));
      _mm256_maskstore_ps(y, m, act8(s, act, slope));
   }
}

// the sum of four partial accumulators of one 8-wide panel (8 floats per k)
inline __m256 panel8(long K, const float* __restrict x, const float* __restrict b) {
   __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
   long k = 0;
   for (; k + 4 <= K; k += 4, b += 32) {
      a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k), _mm256_loadu_ps(b), a0);
      a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k + 1), _mm256_loadu_ps(b + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k + 2), _mm256_loadu_ps(b + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k + 3), _mm256_loadu_ps(b + 24), a3);
   }
   for (; k < K; ++k, b += 8) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k), _mm256_loadu_ps(b), a0);
   return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

// the two halves of a 16-wide panel, two partial sums each (lo: columns 0-7, hi: 8-15)
inline void panel16(long K, const float* __restrict x, const float* __restrict b, __m256& lo, __m256& hi) {
   __m256 a0 = _mm256_setzero_ps(), a1 = a0, c0 = a0, c1 = a0;
   long k = 0;
   for (; k + 2 <= K; k += 2, b += 32) {
      const __m256 x0 = _mm256_broadcast_ss(x + k), x1 = _mm256_broadcast_ss(x + k + 1);
      a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b), a0);
      c0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + 8), c0);
      a1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b + 16), a1);
      c1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b + 24), c1);
   }
   if (k < K) {
      const __m256 x0 = _mm256_broadcast_ss(x + k);
      a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b), a0);
      c0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b + 8), c0);
   }
   lo = _mm256_add_ps(a0, a1);
   hi = _mm256_add_ps(c0, c1);
}
#endif

// y[0, N) = act(x[0, K) * Bp (+ y[0, N) when accumulate) (+ bias[0, N))); bias may be null; y holds N floats
// (nothing is written past them) and may not overlap x.
inline void gemv_packed(long N, long K, const float* __restrict x, const float* __restrict Bp, float* __restrict y,
                        bool accumulate, const float* __restrict bias, int act, float slope) {
#if defined(__AVX2__) && defined(__FMA__)
   long j = 0;
   // two 16-wide panels at once: eight independent accumulators, each broadcast of x used four times
   for (; N - j > 24; j += 32) {  // (the second panel 16 wide: more than 8 columns)
      const float* __restrict b0 = Bp + j * K;
      const float* __restrict b1 = b0 + 16 * K;
      const long nv1 = std::min<long>(16, N - j - 16);
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
      long k = 0;
      for (; k + 2 <= K; k += 2, b0 += 32, b1 += 32) {
         const __m256 x0 = _mm256_broadcast_ss(x + k), x1 = _mm256_broadcast_ss(x + k + 1);
         a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b0), a0);
         a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b0 + 8), a1);
         a2 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b1), a2);
         a3 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b1 + 8), a3);
         c0 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b0 + 16), c0);
         c1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b0 + 24), c1);
         c2 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b1 + 16), c2);
         c3 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b1 + 24), c3);
      }
      if (k < K) {
         const __m256 x0 = _mm256_broadcast_ss(x + k);
         a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b0), a0);
         a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b0 + 8), a1);
         a2 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b1), a2);
         a3 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b1 + 8), a3);
      }
      const float* bj = bias ? bias + j : nullptr;
      store8(_mm256_add_ps(a0, c0), 8, y + j, accumulate, bj, act, slope);
      store8(_mm256_add_ps(a1, c1), 8, y + j + 8, accumulate, bj ? bj + 8 : nullptr, act, slope);
      store8(_mm256_add_ps(a2, c2), 8, y + j + 16, accumulate, bj ? bj + 16 : nullptr, act, slope);
      store8(_mm256_add_ps(a3, c3), nv1 - 8, y + j + 24, accumulate, bj ? bj + 24 : nullptr, act, slope);
   }
   for (; j < N; j += 16) {
      const long nv = std::min<long>(16, N - j);
      const float* __restrict b = Bp + j * K;
      const float* bj = bias ? bias + j : nullptr;
      if (nv > 8) {
         __m256 lo, hi;
         panel16(K, x, b, lo, hi);
         store8(lo, 8, y + j, accumulate, bj, act, slope);
         store8(hi, nv - 8, y + j + 8, accumulate, bj ? bj + 8 : nullptr, act, slope);
      } else {
         store8(panel8(K, x, b), nv, y + j, accumulate, bj, act, slope);
      }
   }
#else
   for (long j = 0; j < N; j += 16) {
      const long nv = std::min<long>(16, N - j);
      const long wid = nv <= 8 ? 8 : 16;
      const float* __restrict b = Bp + j * K;
      float acc[4][16] = {};
      long k = 0;
      for (; k + 4 <= K; k += 4)
         for (int u = 0; u < 4; ++u, b += wid)
            for (long t = 0; t < wid; ++t) acc[u][t] += x[k + u] * b[t];
      for (; k < K; ++k, b += wid)
         for (long t = 0; t < wid; ++t) acc[0][t] += x[k] * b[t];
      for (long t = 0; t < nv; ++t) {
         float v = (acc[0][t] + acc[1][t]) + (acc[2][t] + acc[3][t]);
         v += (accumulate ? y[j + t] : 0.f) + (bias ? bias[j + t] : 0.f);
         if (act == pysofie_gemm::RELU) v = v > 0.f ? v : 0.f;
         else if (act == pysofie_gemm::LEAKY) v = v < 0.f ? slope * v : v;
         else if (act == pysofie_gemm::GELU) v = pysofie_vm::gelu(v);
         else if (act == pysofie_gemm::GELU_TANH) v = pysofie_vm::gelu_tanh(v);
         y[j + t] = v;
      }
   }
#endif
   act_stored(y, N, act, slope);
}

// y[0, N) = act(x[0, K) * W + bias[0, N)) for a narrow W given as rows of W^T (row n: column n of W, K values
// padded with zeros to ld, a multiple of 8): one dot product per output; x is read only up to K. bias may be null.
inline void gemv_rows(long N, long K, long ld, const float* __restrict x, const float* __restrict wt,
                      float* __restrict y, const float* __restrict bias, int act, float slope) {
   for (long n = 0; n < N; ++n) {
      const float* __restrict r = wt + n * ld;
      float v;
#if defined(__AVX2__) && defined(__FMA__)
      __m256 a0 = _mm256_setzero_ps(), a1 = a0;
      long k = 0;
      for (; k + 16 <= K; k += 16) {
         a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(r + k), a0);
         a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), _mm256_loadu_ps(r + k + 8), a1);
      }
      for (; k < K; k += 8) {
         const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(K - k)),
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
         a0 = _mm256_fmadd_ps(_mm256_maskload_ps(x + k, m), _mm256_loadu_ps(r + k), a0);
      }
      a0 = _mm256_add_ps(a0, a1);
      v = pysofie_vm::hsum8(a0);
#else
      float acc[8] = {};
      long k = 0;
      for (; k + 8 <= K; k += 8)
         for (int t = 0; t < 8; ++t) acc[t] += x[k + t] * r[k + t];
      for (; k < K; ++k) acc[k & 7] += x[k] * r[k];
      v = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
#endif
      y[n] = pysofie_gemm::act_scalar(v + (bias ? bias[n] : 0.f), act, slope);
   }
}

}  // namespace pysofie_gemv

#endif  // PYSOFIE_GEMV_H
