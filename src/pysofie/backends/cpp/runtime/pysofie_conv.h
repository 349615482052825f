// pysofie convolution kernels: a register-blocked matrix product for convolutions whose weights were packed at
// generation time (passes.fusion.PackConvWeights), reading columns that im2col wrote in panels of 16.
#ifndef PYSOFIE_CONV_H
#define PYSOFIE_CONV_H

#include <algorithm>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace pysofie_conv {

constexpr long MR = 6;   // rows of the output per micro-tile (weights packed in panels of MR rows)
constexpr long NR = 16;  // columns per micro-tile (im2col writes panels of NR output positions)

// c[r * ldc + j] (+)= sum_k a[k * MR + r] * b[k * NR + j] for r < MR, j < NR: A panel (K x MR, k-major) times
// B panel (K x NR, k-major); `first` starts from zero instead of the values in c.
inline void micro_6x16(long K, const float* __restrict a, const float* __restrict b, float* __restrict c, long ldc,
                       bool first) {
#if defined(__AVX2__) && defined(__FMA__)
   __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
   if (first) {
      c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
   } else {
      c00 = _mm256_loadu_ps(c + 0 * ldc);
      c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
      c10 = _mm256_loadu_ps(c + 1 * ldc);
      c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
      c20 = _mm256_loadu_ps(c + 2 * ldc);
      c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
      c30 = _mm256_loadu_ps(c + 3 * ldc);
      c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
      c40 = _mm256_loadu_ps(c + 4 * ldc);
      c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
      c50 = _mm256_loadu_ps(c + 5 * ldc);
      c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
   }
   for (long k = 0; k < K; ++k, a += MR, b += NR) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
      __m256 av = _mm256_broadcast_ss(a);
      c00 = _mm256_fmadd_ps(av, b0, c00);
      c01 = _mm256_fmadd_ps(av, b1, c01);
      av = _mm256_broadcast_ss(a + 1);
      c10 = _mm256_fmadd_ps(av, b0, c10);
      c11 = _mm256_fmadd_ps(av, b1, c11);
      av = _mm256_broadcast_ss(a + 2);
      c20 = _mm256_fmadd_ps(av, b0, c20);
      c21 = _mm256_fmadd_ps(av, b1, c21);
      av = _mm256_broadcast_ss(a + 3);
      c30 = _mm256_fmadd_ps(av, b0, c30);
      c31 = _mm256_fmadd_ps(av, b1, c31);
      av = _mm256_broadcast_ss(a + 4);
      c40 = _mm256_fmadd_ps(av, b0, c40);
      c41 = _mm256_fmadd_ps(av, b1, c41);
      av = _mm256_broadcast_ss(a + 5);
      c50 = _mm256_fmadd_ps(av, b0, c50);
      c51 = _mm256_fmadd_ps(av, b1, c51);
   }
   _mm256_storeu_ps(c + 0 * ldc, c00);
   _mm256_storeu_ps(c + 0 * ldc + 8, c01);
   _mm256_storeu_ps(c + 1 * ldc, c10);
   _mm256_storeu_ps(c + 1 * ldc + 8, c11);
   _mm256_storeu_ps(c + 2 * ldc, c20);
   _mm256_storeu_ps(c + 2 * ldc + 8, c21);
   _mm256_storeu_ps(c + 3 * ldc, c30);
   _mm256_storeu_ps(c + 3 * ldc + 8, c31);
   _mm256_storeu_ps(c + 4 * ldc, c40);
   _mm256_storeu_ps(c + 4 * ldc + 8, c41);
   _mm256_storeu_ps(c + 5 * ldc, c50);
   _mm256_storeu_ps(c + 5 * ldc + 8, c51);
#else
   if (first)
      for (long r = 0; r < MR; ++r)
         for (long j = 0; j < NR; ++j) c[r * ldc + j] = 0.f;
   for (long k = 0; k < K; ++k, a += MR, b += NR)
      for (long r = 0; r < MR; ++r)
         for (long j = 0; j < NR; ++j) c[r * ldc + j] += a[r] * b[j];
#endif
}

// All panels of NR columns of a K x n block of row-major columns (leading dimension ld), k-major:
// bp[(j / NR) * K * NR + k * NR + j % NR] = col[k * ld + j]; zeros pad the last panel to NR columns.
inline void pack_b_panels(const float* __restrict col, long ld, long K, long n, float* __restrict bp) {
   for (long j0 = 0; j0 < n; j0 += NR, bp += K * NR) {
      const long nj = std::min(NR, n - j0);
      if (nj == NR) {
         for (long k = 0; k < K; ++k) std::copy(col + k * ld + j0, col + k * ld + j0 + NR, bp + k * NR);
      } else {
         for (long k = 0; k < K; ++k) {
            std::copy(col + k * ld + j0, col + k * ld + j0 + nj, bp + k * NR);
            std::fill(bp + k * NR + nj, bp + (k + 1) * NR, 0.f);
         }
      }
   }
}

// Direct convolution (stride 1): like micro_6x16, but the B panel is read straight from a padded image: for
// reduction index (c, kd, kh, kw) the 16 values are x[c * sc + kd * sd + kh * sh + kw * sw + j], j < NR.
inline void micro_direct_6x16(long C, long KD, long KH, long KW, long sc, long sd, long sh, long sw,
                              const float* __restrict a, const float* __restrict x, float* __restrict c, long ldc,
                              bool first) {
#if defined(__AVX2__) && defined(__FMA__)
   __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
   if (first) {
      c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
   } else {
      c00 = _mm256_loadu_ps(c + 0 * ldc);
      c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
      c10 = _mm256_loadu_ps(c + 1 * ldc);
      c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
      c20 = _mm256_loadu_ps(c + 2 * ldc);
      c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
      c30 = _mm256_loadu_ps(c + 3 * ldc);
      c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
      c40 = _mm256_loadu_ps(c + 4 * ldc);
      c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
      c50 = _mm256_loadu_ps(c + 5 * ldc);
      c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
   }
   for (long ch = 0; ch < C; ++ch)
      for (long kd = 0; kd < KD; ++kd)
         for (long kh = 0; kh < KH; ++kh) {
            const float* xr = x + ch * sc + kd * sd + kh * sh;
            for (long kw = 0; kw < KW; ++kw, a += MR) {
               const float* b = xr + kw * sw;
               const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
               __m256 av = _mm256_broadcast_ss(a);
               c00 = _mm256_fmadd_ps(av, b0, c00);
               c01 = _mm256_fmadd_ps(av, b1, c01);
               av = _mm256_broadcast_ss(a + 1);
               c10 = _mm256_fmadd_ps(av, b0, c10);
               c11 = _mm256_fmadd_ps(av, b1, c11);
               av = _mm256_broadcast_ss(a + 2);
               c20 = _mm256_fmadd_ps(av, b0, c20);
               c21 = _mm256_fmadd_ps(av, b1, c21);
               av = _mm256_broadcast_ss(a + 3);
               c30 = _mm256_fmadd_ps(av, b0, c30);
               c31 = _mm256_fmadd_ps(av, b1, c31);
               av = _mm256_broadcast_ss(a + 4);
               c40 = _mm256_fmadd_ps(av, b0, c40);
               c41 = _mm256_fmadd_ps(av, b1, c41);
               av = _mm256_broadcast_ss(a + 5);
               c50 = _mm256_fmadd_ps(av, b0, c50);
               c51 = _mm256_fmadd_ps(av, b1, c51);
            }
         }
   _mm256_storeu_ps(c + 0 * ldc, c00);
   _mm256_storeu_ps(c + 0 * ldc + 8, c01);
   _mm256_storeu_ps(c + 1 * ldc, c10);
   _mm256_storeu_ps(c + 1 * ldc + 8, c11);
   _mm256_storeu_ps(c + 2 * ldc, c20);
   _mm256_storeu_ps(c + 2 * ldc + 8, c21);
   _mm256_storeu_ps(c + 3 * ldc, c30);
   _mm256_storeu_ps(c + 3 * ldc + 8, c31);
   _mm256_storeu_ps(c + 4 * ldc, c40);
   _mm256_storeu_ps(c + 4 * ldc + 8, c41);
   _mm256_storeu_ps(c + 5 * ldc, c50);
   _mm256_storeu_ps(c + 5 * ldc + 8, c51);
#else
   if (first)
      for (long r = 0; r < MR; ++r)
         for (long j = 0; j < NR; ++j) c[r * ldc + j] = 0.f;
   for (long ch = 0; ch < C; ++ch)
      for (long kd = 0; kd < KD; ++kd)
         for (long kh = 0; kh < KH; ++kh)
            for (long kw = 0; kw < KW; ++kw, a += MR) {
               const float* b = x + ch * sc + kd * sd + kh * sh + kw * sw;
               for (long r = 0; r < MR; ++r)
                  for (long j = 0; j < NR; ++j) c[r * ldc + j] += a[r] * b[j];
            }
#endif
}

// Copy one image (C x D x H x W) into a zero-padded one (C x Dp x Hp x Wp), begin pads pd, ph, pw.
inline void pad_image(const float* x, long C, long D, long H, long W, long pd, long ph, long pw, long Dp, long Hp,
                      long Wp, float* xp) {
   std::fill(xp, xp + C * Dp * Hp * Wp, 0.f);
   for (long c = 0; c < C; ++c)
      for (long d = 0; d < D; ++d)
         for (long h = 0; h < H; ++h) {
            const float* src = x + ((c * D + d) * H + h) * W;
            std::copy(src, src + W, xp + ((c * Dp + d + pd) * Hp + h + ph) * Wp + pw);
         }
}

}  // namespace pysofie_conv

#endif  // PYSOFIE_CONV_H
