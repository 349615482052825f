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

// acc[MR][NR] (+)= Apanel (K x MR, k-major) * Bpanel (K x NR, k-major); `first` starts from zero.
inline void micro_6x16(long K, const float* __restrict a, const float* __restrict b, float* __restrict acc,
                       bool first) {
#if defined(__AVX2__) && defined(__FMA__)
   __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
   if (first) {
      c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
   } else {
      c00 = _mm256_loadu_ps(acc + 0);
      c01 = _mm256_loadu_ps(acc + 8);
      c10 = _mm256_loadu_ps(acc + 16);
      c11 = _mm256_loadu_ps(acc + 24);
      c20 = _mm256_loadu_ps(acc + 32);
      c21 = _mm256_loadu_ps(acc + 40);
      c30 = _mm256_loadu_ps(acc + 48);
      c31 = _mm256_loadu_ps(acc + 56);
      c40 = _mm256_loadu_ps(acc + 64);
      c41 = _mm256_loadu_ps(acc + 72);
      c50 = _mm256_loadu_ps(acc + 80);
      c51 = _mm256_loadu_ps(acc + 88);
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
   _mm256_storeu_ps(acc + 0, c00);
   _mm256_storeu_ps(acc + 8, c01);
   _mm256_storeu_ps(acc + 16, c10);
   _mm256_storeu_ps(acc + 24, c11);
   _mm256_storeu_ps(acc + 32, c20);
   _mm256_storeu_ps(acc + 40, c21);
   _mm256_storeu_ps(acc + 48, c30);
   _mm256_storeu_ps(acc + 56, c31);
   _mm256_storeu_ps(acc + 64, c40);
   _mm256_storeu_ps(acc + 72, c41);
   _mm256_storeu_ps(acc + 80, c50);
   _mm256_storeu_ps(acc + 88, c51);
#else
   if (first)
      for (long i = 0; i < MR * NR; ++i) acc[i] = 0.f;
   for (long k = 0; k < K; ++k, a += MR, b += NR)
      for (long r = 0; r < MR; ++r)
         for (long j = 0; j < NR; ++j) acc[r * NR + j] += a[r] * b[j];
#endif
}

// bp[k * NR + j] = col[k * ld + j0 + j] for k < K, j < nj; zeros for nj <= j < NR.
inline void pack_b(const float* __restrict col, long ld, long K, long j0, long nj, float* __restrict bp) {
   if (nj == NR) {
      for (long k = 0; k < K; ++k) std::copy(col + k * ld + j0, col + k * ld + j0 + NR, bp + k * NR);
   } else {
      for (long k = 0; k < K; ++k) {
         std::copy(col + k * ld + j0, col + k * ld + j0 + nj, bp + k * NR);
         std::fill(bp + k * NR + nj, bp + (k + 1) * NR, 0.f);
      }
   }
}

// Unfold output positions p0 .. p0+np-1 of one image into panels of NR positions: element (row, q) of the
// (C*KD*KH*KW) x np column matrix lies at col[(q / NR) * rows * NR + row * NR + q % NR]; the last panel is
// padded with zeros.
inline void im2col_panels(const float* x, long C, long D, long H, long W, long KD, long KH, long KW, long pd,
                          long ph, long pw, long sd, long sh, long sw, long dd, long dh, long dw, long OH, long OW,
                          long p0, long np, float* col) {
   const long OHW = OH * OW;
   const long rows = C * KD * KH * KW;
   const long npad = (np + NR - 1) / NR * NR;
   long row = 0;
   for (long c = 0; c < C; ++c)
      for (long kd = 0; kd < KD; ++kd)
         for (long kh = 0; kh < KH; ++kh)
            for (long kw = 0; kw < KW; ++kw, ++row) {
               long od = p0 / OHW, oh = (p0 / OW) % OH, ow = p0 % OW;
               for (long done = 0; done < np;) {
                  const long seg = std::min(std::min(OW - ow, np - done), NR - done % NR);
                  float* dst = col + (done / NR) * rows * NR + row * NR + done % NR;
                  const long id = od * sd - pd + kd * dd, ih = oh * sh - ph + kh * dh;
                  if (id < 0 || id >= D || ih < 0 || ih >= H) {
                     std::fill(dst, dst + seg, 0.f);
                  } else {
                     const float* src = x + ((c * D + id) * H + ih) * W;
                     const long iw0 = ow * sw - pw + kw * dw;
                     long lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
                     long hi = iw0 < W ? (W - iw0 + sw - 1) / sw : 0;
                     lo = std::min(lo, seg);
                     hi = std::max(lo, std::min(hi, seg));
                     std::fill(dst, dst + lo, 0.f);
                     if (sw == 1) std::copy(src + iw0 + lo, src + iw0 + hi, dst + lo);
                     else for (long t = lo; t < hi; ++t) dst[t] = src[iw0 + t * sw];
                     std::fill(dst + hi, dst + seg, 0.f);
                  }
                  done += seg;
                  ow += seg;
                  if (ow == OW) {
                     ow = 0;
                     if (++oh == OH) {
                        oh = 0;
                        ++od;
                     }
                  }
               }
               for (long q = np; q < npad; ++q) col[(q / NR) * rows * NR + row * NR + q % NR] = 0.f;
            }
}

}  // namespace pysofie_conv

#endif  // PYSOFIE_CONV_H
