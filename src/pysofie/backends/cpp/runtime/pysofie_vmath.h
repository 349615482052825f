// pysofie vector math: exp, erf, tanh and GELU on 8 float lanes (AVX2 + FMA), and their scalar forms, for the
// epilogues of the matrix and convolution kernels and the normalization / softmax generators.
#ifndef PYSOFIE_VMATH_H
#define PYSOFIE_VMATH_H

#include <algorithm>
#include <cmath>
#if (defined(__AVX2__) && defined(__FMA__)) || defined(__AVX512F__)
#include <immintrin.h>
#endif

// a loop fully unrolled, so that the kernels' register-blocked arrays stay in registers
#if defined(__clang__)
#define PYSOFIE_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define PYSOFIE_UNROLL _Pragma("GCC unroll 32")
#else
#define PYSOFIE_UNROLL
#endif

namespace pysofie_vm {

// GELU, exact (erf) and tanh-approximated forms, as the ONNX Gelu operator defines them.
inline float gelu(float x) { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); }
inline float gelu_tanh(float x) {
   return 0.5f * x * (1.f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

// coefficients of the vector GELUs (gelu8 below, pysofie_gemm512.h's gelu16): erf(x / sqrt(2)) ~ xc P(s) / Q(s),
// s = xc^2, xc = x clamped to +-XMAX
namespace gelu_rat {
constexpr float XMAX = 5.51543289f;  // 3.9 sqrt(2)
constexpr float P0 = 7.978844656e-01f, P1 = 6.786119786e-02f, P2 = 9.363302465e-03f, P3 = 3.391324928e-04f,
                P4 = 1.270385654e-05f, P5 = 4.530740613e-08f;
constexpr float Q1 = 2.517172883e-01f, Q2 = 2.868949065e-02f, Q3 = 1.888643872e-03f, Q4 = 7.385779705e-05f,
                Q5 = 1.194704963e-06f;
}  // namespace gelu_rat

#if defined(__AVX2__) && defined(__FMA__)
// exp on 8 lanes: 2^n * p(r), x = n ln2 + r, |r| <= ln2 / 2, p the degree-6 Taylor polynomial (relative error
// ~2e-7); inputs clamped to [-87.3, 88.3] (exp underflows to ~1e-38 below, like expf's normal range). NaN stays
// NaN (the clamps would turn it into a bound: it is blended back).
inline __m256 exp8(__m256 x) {
   const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
   __m256 c = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
   const __m256 n = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
   __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), c);
   r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
   __m256 p = _mm256_set1_ps(1.f / 720.f);
   p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
   p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
   p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
   p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
   p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
   p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
   const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
   const __m256 y = _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), x, nan);
   return _mm256_and_ps(y, _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_NLT_UQ));  // exp(-inf) = 0
}

// erf on 8 lanes: Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), odd extension; erf(+-inf) = +-1, NaN stays.
inline __m256 erf8(__m256 x) {
   const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.f));
   const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
   const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a,
                                                                      _mm256_set1_ps(1.f)));
   __m256 p = _mm256_set1_ps(1.061405429f);
   p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
   p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
   p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
   p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
   p = _mm256_mul_ps(p, t);
   const __m256 e = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), a), a));
   const __m256 y = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.f));  // 1 - p e^{-a^2}
   return _mm256_or_ps(y, sign);
}

// tanh on 8 lanes: 1 - 2 / (1 + exp(2x)) (exact limits +-1); NaN stays NaN.
inline __m256 tanh8(__m256 x) {
   const __m256 one = _mm256_set1_ps(1.f);
   const __m256 e = exp8(_mm256_add_ps(x, x));
   return _mm256_sub_ps(one, _mm256_div_ps(_mm256_add_ps(one, one), _mm256_add_ps(one, e)));
}

// sigmoid on 8 lanes: 1 / (1 + exp(-x)).
inline __m256 sigmoid8(__m256 x) {
   const __m256 one = _mm256_set1_ps(1.f);
   return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// The sum of the 8 lanes (pairwise: halves, then pairs, then the last two).
inline float hsum8(__m256 v) {
   __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
   q = _mm_add_ps(q, _mm_movehl_ps(q, q));
   return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

// GELU on 8 lanes: x / 2 * (1 + erf(x / sqrt(2))) with erf(x / sqrt(2)) = xc P(xc^2) / Q(xc^2), xc = x clamped to
// +-XMAX (erf(3.9) = 1 - 3.5e-8), P and Q of degree 5 (gelu_rat: a rational least-squares fit made for pysofie,
// docs/gelu_erf_fit.py, by
// iterated reweighting towards equal ripple; |error| of the erf 1.5e-8 in exact arithmetic), -1 below -XMAX. In
// float: GELU's |error| <= 1.3e-6 (relative to max(|GELU|, 1): the rounding of the terms), about 22 vector
// operations against ~35 for erf8's exp-based form; NaN stays NaN, GELU(-inf) = NaN as the formula gives.
inline __m256 gelu8(__m256 x) {
   using namespace gelu_rat;
   const __m256 h = _mm256_mul_ps(_mm256_set1_ps(0.5f), x);
   const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-XMAX)), _mm256_set1_ps(XMAX));
   const __m256 s = _mm256_mul_ps(xc, xc);
   __m256 p = _mm256_set1_ps(P5);
   p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(P4));
   p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(P3));
   p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(P2));
   p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(P1));
   p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(P0));
   __m256 q = _mm256_set1_ps(Q5);
   q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(Q4));
   q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(Q3));
   q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(Q2));
   q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(Q1));
   q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(1.f));
   // 1 / q (q in [1, 183]): rcp's 12 bits and one Newton step (relative error ~1.5e-7)
   const __m256 t = _mm256_rcp_ps(q);
   const __m256 r = _mm256_fmadd_ps(t, _mm256_fnmadd_ps(q, t, _mm256_set1_ps(1.f)), t);
   __m256 erf = _mm256_mul_ps(_mm256_mul_ps(xc, p), r);
   // below -XMAX, 1 + erf is under the fit's error: erf = -1 there (GELU 0; NaN for -inf, as the formula)
   erf = _mm256_blendv_ps(erf, _mm256_set1_ps(-1.f), _mm256_cmp_ps(x, _mm256_set1_ps(-XMAX), _CMP_LT_OQ));
   return _mm256_fmadd_ps(h, erf, h);  // NaN stays NaN (through h)
}

inline __m256 gelu_tanh8(__m256 x) {
   const __m256 h = _mm256_mul_ps(_mm256_set1_ps(0.5f), x);
   const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
   const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.79788456080286536f),
                                  _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
   return _mm256_fmadd_ps(h, tanh8(u), h);
}
#endif

#if defined(__AVX512F__)
// exp on 16 lanes, exp8's formula with AVX-512's scalef for the 2^n (equal to exp8 lane by lane: both scale p(r)
// exactly by 2^n in the normal range); exp(x) = 0 below -87.3 (so exp(-inf) = 0), NaN stays NaN (min / max return
// their second operand when one is NaN). The maskz forms with all lanes set are the plain instructions, without
// the undefined pass-through operand that draws GCC 12's -Wmaybe-uninitialized.
inline __m512 exp16(__m512 x) {
   const __mmask16 all = 0xFFFF;
   const __m512 c =
      _mm512_maskz_min_ps(all, _mm512_set1_ps(88.3f), _mm512_maskz_max_ps(all, _mm512_set1_ps(-87.3f), x));
   const __m512 n = _mm512_maskz_roundscale_ps(all, _mm512_mul_ps(c, _mm512_set1_ps(1.44269504f)),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
   __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), c);
   r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
   __m512 p = _mm512_set1_ps(1.f / 720.f);
   p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
   p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
   p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
   p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
   p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
   p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
   const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ);  // x >= -87.3 or NaN
   return _mm512_maskz_scalef_ps(keep, p, n);
}
#endif

// y[r][k] = softmax over k < n of x[r][k] (rows r0 <= r < r1, contiguous rows of n).
inline void softmax_rows(const float* x, float* y, long r0, long r1, long n) {
   for (long r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      long k = 0;
      float mx = -INFINITY;
      bool nan = false;
#if defined(__AVX2__) && defined(__FMA__)
      if (n >= 8) {
         __m256 m = _mm256_loadu_ps(xr);
         __m256 bad = _mm256_cmp_ps(m, m, _CMP_UNORD_Q);
         for (k = 8; k + 8 <= n; k += 8) {
            const __m256 v = _mm256_loadu_ps(xr + k);
            m = _mm256_max_ps(m, v);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
         }
         alignas(32) float t[8];
         _mm256_store_ps(t, m);
         for (float v : t) mx = std::max(mx, v);
         nan = _mm256_movemask_ps(bad) != 0;
      }
#endif
      for (; k < n; ++k) {
         mx = std::max(mx, xr[k]);
         nan |= xr[k] != xr[k];
      }
      if (nan) mx = NAN;  // NaN anywhere in the row: every output NaN (onnxruntime's result)
      k = 0;
      float sum = 0.f;
#if defined(__AVX2__) && defined(__FMA__)
      const __m256 vm = _mm256_set1_ps(mx);
      __m256 vs = _mm256_setzero_ps();
      for (; k + 8 <= n; k += 8) {
         const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(xr + k), vm));
         _mm256_storeu_ps(yr + k, e);
         vs = _mm256_add_ps(vs, e);
      }
      alignas(32) float t[8];
      _mm256_store_ps(t, vs);
      for (float v : t) sum += v;
#endif
      for (; k < n; ++k) sum += (yr[k] = std::exp(xr[k] - mx));
      const float inv = 1.f / sum;
      k = 0;
#if defined(__AVX2__) && defined(__FMA__)
      const __m256 vi = _mm256_set1_ps(inv);
      for (; k + 8 <= n; k += 8) _mm256_storeu_ps(yr + k, _mm256_mul_ps(_mm256_loadu_ps(yr + k), vi));
#endif
      for (; k < n; ++k) yr[k] *= inv;
   }
}

// y[r][k] = (x[r][k] - mean_r) / sqrt(var_r + eps) * scale[k] (+ bias[k]) over rows r0 <= r < r1 of n, the
// statistics accumulated in double; mean / inv_std per row stored when asked.
inline void layernorm_rows(const float* x, const float* scale, const float* bias, float* y, long r0, long r1,
                           long n, double eps, float* mean_out, float* inv_out) {
   for (long r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      long k = 0;
      double sum = 0;
#if defined(__AVX2__) && defined(__FMA__)
      __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
      for (; k + 8 <= n; k += 8) {
         const __m256 v = _mm256_loadu_ps(xr + k);
         s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
         s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
      }
      alignas(32) double t[4];
      _mm256_store_pd(t, _mm256_add_pd(s0, s1));
      sum = (t[0] + t[1]) + (t[2] + t[3]);
#endif
      for (; k < n; ++k) sum += xr[k];
      const double mean = sum / double(n);
      k = 0;
      double sq = 0;
#if defined(__AVX2__) && defined(__FMA__)
      const __m256d md = _mm256_set1_pd(mean);
      s0 = s1 = _mm256_setzero_pd();
      for (; k + 8 <= n; k += 8) {
         const __m256 v = _mm256_loadu_ps(xr + k);
         const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), md);
         const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), md);
         s0 = _mm256_fmadd_pd(d0, d0, s0);
         s1 = _mm256_fmadd_pd(d1, d1, s1);
      }
      _mm256_store_pd(t, _mm256_add_pd(s0, s1));
      sq = (t[0] + t[1]) + (t[2] + t[3]);
#endif
      for (; k < n; ++k) sq += (xr[k] - mean) * (xr[k] - mean);
      const double inv = 1.0 / std::sqrt(sq / double(n) + eps);
      if (mean_out) mean_out[r] = static_cast<float>(mean);
      if (inv_out) inv_out[r] = static_cast<float>(inv);
      k = 0;
      const float mf = static_cast<float>(mean), invf = static_cast<float>(inv);
#if defined(__AVX2__) && defined(__FMA__)
      const __m256 vm = _mm256_set1_ps(mf), vi = _mm256_set1_ps(invf);
      for (; k + 8 <= n; k += 8) {
         const __m256 c = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + k), vm), vi);
         const __m256 s = _mm256_loadu_ps(scale + k);
         _mm256_storeu_ps(yr + k, bias ? _mm256_fmadd_ps(c, s, _mm256_loadu_ps(bias + k)) : _mm256_mul_ps(c, s));
      }
#endif
      for (; k < n; ++k) yr[k] = (xr[k] - mf) * invf * scale[k] + (bias ? bias[k] : 0.f);
   }
}

// y[r][k] = x[r][k] / sqrt(mean_k(x[r][k]^2) + eps) * scale[k] over rows r0 <= r < r1 of n (RMSNormalization),
// the sum of squares accumulated in double.
inline void rmsnorm_rows(const float* x, const float* scale, float* y, long r0, long r1, long n, double eps) {
   for (long r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      long k = 0;
      double sq = 0;
#if defined(__AVX2__) && defined(__FMA__)
      __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
      for (; k + 8 <= n; k += 8) {
         const __m256 v = _mm256_loadu_ps(xr + k);
         const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
         const __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
         s0 = _mm256_fmadd_pd(d0, d0, s0);
         s1 = _mm256_fmadd_pd(d1, d1, s1);
      }
      alignas(32) double t[4];
      _mm256_store_pd(t, _mm256_add_pd(s0, s1));
      sq = (t[0] + t[1]) + (t[2] + t[3]);
#endif
      for (; k < n; ++k) sq += double(xr[k]) * double(xr[k]);
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / double(n) + eps));
      k = 0;
#if defined(__AVX2__) && defined(__FMA__)
      const __m256 vi = _mm256_set1_ps(inv);
      for (; k + 8 <= n; k += 8)
         _mm256_storeu_ps(yr + k,
                          _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + k), vi), _mm256_loadu_ps(scale + k)));
#endif
      for (; k < n; ++k) yr[k] = xr[k] * inv * scale[k];
   }
}

}  // namespace pysofie_vm

#endif  // PYSOFIE_VMATH_H
