// pysofie transposes that swap two axis groups: y[o][b][a][i] = x[o][a][b][i] for o < outer, a < A, b < B,
// i < inner (every Transpose whose permutation, once adjacent axes that stay together are merged, swaps two
// neighbours: NCHW <-> NHWC, the heads transposes of attention). Elements of 4 bytes with inner == 1: 8 x 8 blocks
// transposed in AVX2 registers (bit-exact moves); inner > 1: runs of inner elements copied; otherwise a blocked
// scalar loop. Rows of 8 a's are tasks on the Session's pool.
// Also ConvNeXt's layout kernels (passes/channel_norm.py): channel_layernorm (a Transpose NCHW -> NHWC and a
// LayerNorm over the channels, read NCHW) and scale_transpose_add (a per-channel Mul, the Transpose back and the
// residual Add).
#ifndef PYSOFIE_TRANSPOSE_H
#define PYSOFIE_TRANSPOSE_H

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
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
   pysofie_par::run(pool, outer * nb, task);
}

#if defined(__AVX2__) && defined(__FMA__)
// channel_layernorm on 8 * G pixels p.. of one image (AVX2): the channel rows are read once (whole cache lines
// with G = 2: rows P floats apart share L1 sets when P * 4 is a multiple of 4 KiB) into buf (C x 8G floats), the
// statistics in double lanes, the outputs through 8 x 8 register transposes when NHWC.
template <int G>
inline void channel_layernorm_block(const float* xi, const float* scale, const float* bias, float* yi, long C, long P,
                                    long p, double eps, bool nhwc, float* buf) {
   constexpr int W = 8 * G;
   __m256d s[2 * G];
   for (int k = 0; k < 2 * G; ++k) s[k] = _mm256_setzero_pd();
   for (long c = 0; c < C; ++c)
      for (int gq = 0; gq < G; ++gq) {
         const __m256 v = _mm256_loadu_ps(xi + c * P + p + 8 * gq);
         _mm256_storeu_ps(buf + c * W + 8 * gq, v);
         s[2 * gq] = _mm256_add_pd(s[2 * gq], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
         s[2 * gq + 1] = _mm256_add_pd(s[2 * gq + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
      }
   const __m256d cn = _mm256_set1_pd(double(C));
   __m256d m[2 * G], q[2 * G];
   for (int k = 0; k < 2 * G; ++k) {
      m[k] = _mm256_div_pd(s[k], cn);
      q[k] = _mm256_setzero_pd();
   }
   for (long c = 0; c < C; ++c)
      for (int gq = 0; gq < G; ++gq) {
         const __m256 v = _mm256_loadu_ps(buf + c * W + 8 * gq);
         const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m[2 * gq]);
         const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m[2 * gq + 1]);
         q[2 * gq] = _mm256_fmadd_pd(d0, d0, q[2 * gq]);
         q[2 * gq + 1] = _mm256_fmadd_pd(d1, d1, q[2 * gq + 1]);
      }
   __m256 vm[G], vi[G];
   const __m256d one = _mm256_set1_pd(1.0), ep = _mm256_set1_pd(eps);
   for (int gq = 0; gq < G; ++gq) {
      const __m256d i0 = _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_add_pd(_mm256_div_pd(q[2 * gq], cn), ep)));
      const __m256d i1 = _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_add_pd(_mm256_div_pd(q[2 * gq + 1], cn), ep)));
      vm[gq] = _mm256_set_m128(_mm256_cvtpd_ps(m[2 * gq + 1]), _mm256_cvtpd_ps(m[2 * gq]));
      vi[gq] = _mm256_set_m128(_mm256_cvtpd_ps(i1), _mm256_cvtpd_ps(i0));
   }
   auto out = [&](long c, int gq) {
      const __m256 z = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(buf + c * W + 8 * gq), vm[gq]), vi[gq]);
      const __m256 sc = _mm256_set1_ps(scale[c]);
      return bias ? _mm256_fmadd_ps(z, sc, _mm256_set1_ps(bias[c])) : _mm256_mul_ps(z, sc);
   };
   if (!nhwc) {
      for (long c = 0; c < C; ++c)
         for (int gq = 0; gq < G; ++gq) _mm256_storeu_ps(yi + c * P + p + 8 * gq, out(c, gq));
      return;
   }
   long c0 = 0;
   for (; c0 + 8 <= C; c0 += 8)
      for (int gq = 0; gq < G; ++gq) {
         __m256 r[8];
         for (int k = 0; k < 8; ++k) r[k] = out(c0 + k, gq);
         transpose8(r);
         for (int k = 0; k < 8; ++k) _mm256_storeu_ps(yi + (p + 8 * gq + k) * C + c0, r[k]);
      }
   alignas(32) float l[8];
   for (; c0 < C; ++c0)
      for (int gq = 0; gq < G; ++gq) {
         _mm256_store_ps(l, out(c0, gq));
         for (int k = 0; k < 8; ++k) yi[(p + 8 * gq + k) * C + c0] = l[k];
      }
}
#endif

// ConvNeXt's channel LayerNorm without its Transposes: x is n images of C channels x P pixels (NCHW); for every
// pixel, the mean and variance over the channels (double sums, as pysofie_vm::layernorm_rows: sum, mean, then the
// squared deviations), y = (x - mean) * inv * scale[c] + bias[c] (inv = 1 / sqrt(var + eps)) written NHWC (pixel
// rows of C: the Transpose before the LayerNorm folded in) or NCHW (the Transpose back folded in too). AVX2: 16
// (then 8) pixels on the lanes (channel_layernorm_block); scalar: one pixel at a time. buf: C * 16 floats for each
// thread of the pool, bstride floats apart.
inline void channel_layernorm(const float* x, const float* scale, const float* bias, float* y, long n, long C,
                              long P, double eps, bool nhwc, float* buf, long bstride, pysofie_par::Pool* pool) {
   constexpr long PB = 64;  // pixels per task
   const long nb = (P + PB - 1) / PB;
   auto task = [&](long t, int worker) {
      const long img = t / nb, q0 = t % nb * PB, q1 = std::min(P, q0 + PB);
      const float* xi = x + img * C * P;
      float* yi = y + img * C * P;
      long p = q0;
#if defined(__AVX2__) && defined(__FMA__)
      float* b = buf + worker * bstride;
      for (; p + 16 <= q1; p += 16) channel_layernorm_block<2>(xi, scale, bias, yi, C, P, p, eps, nhwc, b);
      for (; p + 8 <= q1; p += 8) channel_layernorm_block<1>(xi, scale, bias, yi, C, P, p, eps, nhwc, b);
#else
      (void)buf;
      (void)bstride;
      (void)worker;
#endif
      for (; p < q1; ++p) {
         double sum = 0, sq = 0;
         for (long c = 0; c < C; ++c) sum += xi[c * P + p];
         const double mean = sum / double(C);
         for (long c = 0; c < C; ++c) sq += (xi[c * P + p] - mean) * (xi[c * P + p] - mean);
         const double inv = 1.0 / std::sqrt(sq / double(C) + eps);
         const float mf = static_cast<float>(mean), invf = static_cast<float>(inv);
         for (long c = 0; c < C; ++c) {
            const float v = (xi[c * P + p] - mf) * invf * scale[c] + (bias ? bias[c] : 0.f);
            yi[nhwc ? p * C + c : c * P + p] = v;
         }
      }
   };
   pysofie_par::run(pool, n * nb, task);
}

// ConvNeXt's layer-scaled residual in NCHW from an NHWC branch: y[c * P + p] = r[c * P + p] + g[c] * f[p * C + c]
// (g: nullptr for none) over n images of C channels x P pixels: the Mul, the Transpose back and the Add in one pass
// (the same two roundings as the Mul and the Add). AVX2, C a multiple of 8: blocks of 16 pixels (whole cache lines
// of the channel rows) x 8 channels, transposed in registers.
inline void scale_transpose_add(const float* f, const float* g, const float* r, float* y, long n, long C, long P,
                                pysofie_par::Pool* pool) {
   constexpr long PB = 64;  // pixels per task
   const long nb = (P + PB - 1) / PB;
   auto task = [&](long t, int) {
      const long img = t / nb, q0 = t % nb * PB, q1 = std::min(P, q0 + PB);
      const float* fi = f + img * C * P;
      const float* ri = r + img * C * P;
      float* yi = y + img * C * P;
      long p = q0;
#if defined(__AVX2__) && defined(__FMA__)
      if (C % 8 == 0) {
         // 8 * NH pixels pb.. x 8 channels c0..: each channel row's line of r and y is touched once (the rows
         // are P floats apart: with P * 4 a multiple of 4 KiB, they share one L1 set)
         auto block = [&](auto nh, long pb, long c0) {
            constexpr int NH = decltype(nh)::value;
            const __m256 gv = g ? _mm256_loadu_ps(g + c0) : _mm256_set1_ps(1.f);
            __m256 v[NH][8];
            for (int h = 0; h < NH; ++h) {
               for (int k = 0; k < 8; ++k) {
                  v[h][k] = _mm256_loadu_ps(fi + (pb + 8 * h + k) * C + c0);
                  if (g) v[h][k] = _mm256_mul_ps(gv, v[h][k]);
               }
               transpose8(v[h]);
            }
            for (int k = 0; k < 8; ++k) {
               const long o = (c0 + k) * P + pb;
               for (int h = 0; h < NH; ++h)
                  _mm256_storeu_ps(yi + o + 8 * h, _mm256_add_ps(_mm256_loadu_ps(ri + o + 8 * h), v[h][k]));
            }
         };
         for (; p + 16 <= q1; p += 16)
            for (long c0 = 0; c0 < C; c0 += 8) block(std::integral_constant<int, 2>{}, p, c0);
         for (; p + 8 <= q1; p += 8)
            for (long c0 = 0; c0 < C; c0 += 8) block(std::integral_constant<int, 1>{}, p, c0);
      }
#endif
      for (; p < q1; ++p)
         for (long c = 0; c < C; ++c) {
            const float b = g ? g[c] * fi[p * C + c] : fi[p * C + c];
            yi[c * P + p] = ri[c * P + p] + b;
         }
   };
   pysofie_par::run(pool, n * nb, task);
}

}  // namespace pysofie_tr

#endif  // PYSOFIE_TRANSPOSE_H
