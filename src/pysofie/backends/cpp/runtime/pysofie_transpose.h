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
// y[k * ys + a] = x[a * xs + k] for a, k < 8: an 8 x 8 float block transposed in registers (bit-exact moves)
inline void transpose8x8(const float* x, long xs, float* y, long ys) {
   __m256 r[8], t[8];
   for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(x + k * xs);
   t[0] = _mm256_unpacklo_ps(r[0], r[1]); t[1] = _mm256_unpackhi_ps(r[0], r[1]);
   t[2] = _mm256_unpacklo_ps(r[2], r[3]); t[3] = _mm256_unpackhi_ps(r[2], r[3]);
   t[4] = _mm256_unpacklo_ps(r[4], r[5]); t[5] = _mm256_unpackhi_ps(r[4], r[5]);
   t[6] = _mm256_unpacklo_ps(r[6], r[7]); t[7] = _mm256_unpackhi_ps(r[6], r[7]);
   r[0] = _mm256_shuffle_ps(t[0], t[2], 0x44); r[1] = _mm256_shuffle_ps(t[0], t[2], 0xEE);
   r[2] = _mm256_shuffle_ps(t[1], t[3], 0x44); r[3] = _mm256_shuffle_ps(t[1], t[3], 0xEE);
   r[4] = _mm256_shuffle_ps(t[4], t[6], 0x44); r[5] = _mm256_shuffle_ps(t[4], t[6], 0xEE);
   r[6] = _mm256_shuffle_ps(t[5], t[7], 0x44); r[7] = _mm256_shuffle_ps(t[5], t[7], 0xEE);
   for (int k = 0; k < 4; ++k) {
      _mm256_storeu_ps(y + k * ys, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
      _mm256_storeu_ps(y + (k + 4) * ys, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
   }
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
