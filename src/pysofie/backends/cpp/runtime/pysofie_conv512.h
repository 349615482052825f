// pysofie AVX-512 convolution micro-kernel, used by pysofie_conv.h's conv_band when the compile target has
// AVX-512F (weights packed as for the AVX2 kernel: panels of 16 output channels, k-major).
#ifndef PYSOFIE_CONV512_H
#define PYSOFIE_CONV512_H

#include <cstdint>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#ifndef PYSOFIE_VMATH_H  // generated files inline it before this header
#include "pysofie_vmath.h"  // PYSOFIE_UNROLL
#endif

#if defined(__GNUC__)
#define PYSOFIE_CONV512_NOINLINE __attribute__((noinline))
#else
#define PYSOFIE_CONV512_NOINLINE
#endif

namespace pysofie_conv {

#if defined(__AVX512F__)
// AVX-512: NPOS output positions x 16 * NB output channels (NB consecutive packed panels, the second at w + ws),
// one 16-lane vector per position and panel. t[b * ts + j * 16 + c] (+)= sum_k w[b * ws + k * 16 + c] *
// xb[j][off[k]]; `first` starts from zero. Two panels at once halve the broadcasts per FMA of the 6 x 16 AVX2
// kernel (32 vector registers hold the 12 accumulators, the weights and the broadcasts).
template <int NPOS, int NB>
PYSOFIE_CONV512_NOINLINE void micro_avx512(long K, const float* __restrict w, long ws,
                                           const int32_t* __restrict off,
                                        const float* const* xb, float* __restrict t, long ts, bool first) {
   __m512 c[NPOS][NB];
   const float* x[NPOS];
   PYSOFIE_UNROLL
   for (int j = 0; j < NPOS; ++j) x[j] = xb[j];
   PYSOFIE_UNROLL
   for (int j = 0; j < NPOS; ++j) {
      PYSOFIE_UNROLL
      for (int b = 0; b < NB; ++b) c[j][b] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(t + b * ts + j * 16);
   }
   const float* w1 = w + ws;
   for (long k = 0; k < K; ++k, w += 16, w1 += 16) {
      const long o = off[k];
      __m512 wv[NB];
      wv[0] = _mm512_loadu_ps(w);
      if constexpr (NB > 1) wv[NB - 1] = _mm512_loadu_ps(w1);
      PYSOFIE_UNROLL
      for (int j = 0; j < NPOS; ++j) {
         const __m512 a = _mm512_set1_ps(x[j][o]);
         PYSOFIE_UNROLL
         for (int b = 0; b < NB; ++b) c[j][b] = _mm512_fmadd_ps(a, wv[b], c[j][b]);
      }
   }
   PYSOFIE_UNROLL
   for (int j = 0; j < NPOS; ++j) {
      PYSOFIE_UNROLL
      for (int b = 0; b < NB; ++b) _mm512_storeu_ps(t + b * ts + j * 16, c[j][b]);
   }
}
#endif

}  // namespace pysofie_conv

#endif  // PYSOFIE_CONV512_H
