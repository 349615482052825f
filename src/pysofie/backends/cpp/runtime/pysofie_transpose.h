// pysofie transposes that swap two axis groups: y[o][b][a][i] = x[o][a][b][i] for o < outer, a < A, b < B,
// i < inner (every Transpose whose permutation, once adjacent axes that stay together are merged, swaps two
// neighbours: NCHW <-> NHWC, the heads transposes of attention). Elements of 4 bytes with inner == 1: 8 x 8 blocks
// transposed in AVX2 registers (bit-exact moves); inner > 1: runs of inner elements copied; otherwise a blocked
// scalar loop. Rows of 8 a's are tasks on the Session's pool.
#ifndef PYSOFIE_TRANSPOSE_H
#define PYSOFIE_TRANSPOSE_H

#include <algorithm>
#include <cstring>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#ifndef PYSOFIE_THREADS_H  // generated files inline these before this header
#include "pysofie_threads.h"
#endif

namespace pysofie_tr {

#if defined(__AVX2__) && defined(__FMA__)
// 8x8 transpose of r[0..7] in place (row i, lane j -> row j, lane i).
inline void transpose8(__m256 (&r)[8]) {
   const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
   const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
   const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
   const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
   const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
   const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
   const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
   const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
   r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
   r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
   r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
   r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
   r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
   r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
   r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
   r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// y[k * ys + a] = x[a * xs + k] for a, k < 8: an 8 x 8 float block transposed in registers (bit-exact moves)
inline void transpose8x8(const float* x, long xs, float* y, long ys) {
   __m256 r[8];
   for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(x + k * xs);
   transpose8(r);
   for (int k = 0; k < 8; ++k) _mm256_storeu_ps(y + k * ys, r[k]);
}
#endif

template <class T>
inline void swap_block(const T* x, T* y, long A, long B, long inner, long a0, long a1) {
   if (inner == 1) {
      long b0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
      if constexpr (sizeof(T) == 4) {
         if (a1 - a0 == 8) {
            const float* xf = reinterpret_cast<const float*>(x);
            float* yf = reinterpret_cast<float*>(y);
            for (; b0 + 8 <= B; b0 += 8) {
               transpose8x8(xf + a0 * B + b0, B, yf + b0 * A + a0, A);
            }
         }
      }
#endif
      for (; b0 < B; b0 += 8) {
         const long b1 = std::min(B, b0 + 8);
         for (long b = b0; b < b1; ++b)
            for (long a = a0; a < a1; ++a) y[b * A + a] = x[a * B + b];
      }
      return;
   }
   for (long a = a0; a < a1; ++a)
      for (long b = 0; b < B; ++b) std::memcpy(y + (b * A + a) * inner, x + (a * B + b) * inner, sizeof(T) * inner);
}

template <class T>
inline void swap_axes(const T* x, T* y, long outer, long A, long B, long inner, pysofie_par::Pool* pool) {
   const long nb = (A + 7) / 8, per = A * B * inner;
   auto task = [&](long t, int) {
      const long o = t / nb, a0 = t % nb * 8;
      swap_block(x + o * per, y + o * per, A, B, inner, a0, std::min(A, a0 + 8));
   };
   if (pool) pool->run(outer * nb, task);
   else for (long t = 0; t < outer * nb; ++t) task(t, 0);
}

}  // namespace pysofie_tr

#endif  // PYSOFIE_TRANSPOSE_H
