// pysofie AVX-512 dense-layer micro-kernel, used by pysofie_gemm.h's gemm_block when the compile target has
// AVX-512F. The packed B layout is the AVX2 kernel's (panels of 16 columns, k-major, the last one 8 wide when at
// most 8 columns remain); a tile covers up to MR512 rows x 32 columns by reading two consecutive panels at once.
#ifndef PYSOFIE_GEMM512_H
#define PYSOFIE_GEMM512_H

#if defined(__AVX512F__)
#include <immintrin.h>
#ifndef PYSOFIE_VMATH_H  // generated files inline it before this header
#include "pysofie_vmath.h"  // gelu_rat, the GELU's coefficients, PYSOFIE_UNROLL
#endif

namespace pysofie_gemm {

// activation codes of pysofie_gemm.h's Act (which is defined after this header; checked there)
constexpr int ACT512_RELU = 1, ACT512_LEAKY = 2, ACT512_GELU = 5, ACT512_GELU_TANH = 6;
// all 16 lanes: the maskz forms of max / min / scalef / roundscale / rcp14 are the same instructions as the plain
// ones, whose undefined pass-through operand draws GCC 12's -Wmaybe-uninitialized (generated code builds -Wall clean)
#define PG5_ALL __mmask16(0xFFFF)
constexpr long MR512 = 12;  // rows of C per AVX-512 micro-tile

// x[s] += a[r * rs + k * cs] * B's 16 * NB columns at k, for k = kb + s (mod S) < ke; one broadcast of A per row
// and k serves the NB FMAs (with NB == 1 it folds into the FMA: an embedded broadcast)
// Two streams of lines to prefetch while a tile runs: stream t's line at k is p[t] + k * stride[t] (floats), for
// k * stride[t] < n[t] (panels of the next pair, the last panel, the next layer's first panel: see gemm_block)
struct Prefetch512 {
   const float* p[2] = {nullptr, nullptr};
   long stride[2] = {16, 16};
   long n[2] = {0, 0};
};

// PF: also prefetch, per k, one line of each of pf's two streams
template <int R, int NB, int S, bool UNIT, bool PF = false>
inline void k_loop512(long kb, long ke, const float* __restrict a, long rs, long cs, const float* __restrict b0,
                      const float* __restrict b1, long w0, long w1, __mmask16 mb, __m512 (&x)[S][R][NB],
                      const Prefetch512* pf = nullptr) {
   // rows r = 3q + t at aq[q] + t * rs: few address registers (base + index * {1, 2}), the bases step with k
   constexpr int Q = (R + 2) / 3;
   const long step = UNIT ? 1 : cs;
   const float* aq[Q];
   PYSOFIE_UNROLL
   for (int q = 0; q < Q; ++q) aq[q] = a + 3 * q * rs + kb * step;
   for (long k = kb; k < ke; k += S) {
      PYSOFIE_UNROLL
      for (int s = 0; s < S; ++s) {
         if constexpr (PF) {
            PYSOFIE_UNROLL
            for (int t = 0; t < 2; ++t) {
               const long o = (k + s) * pf->stride[t];
               if (o < pf->n[t]) _mm_prefetch(reinterpret_cast<const char*>(pf->p[t] + o), _MM_HINT_T0);
            }
         }
         __m512 bv[NB];
         if constexpr (NB == 1) {
            bv[0] = _mm512_maskz_loadu_ps(mb, b0 + (k + s) * w0);
         } else {
            bv[0] = _mm512_loadu_ps(b0 + (k + s) * 16);
            bv[1] = _mm512_maskz_loadu_ps(mb, b1 + (k + s) * w1);
         }
         PYSOFIE_UNROLL
         for (int r = 0; r < R; ++r) {
            const __m512 av = _mm512_set1_ps(aq[r / 3][(r % 3) * rs + s * step]);
            PYSOFIE_UNROLL
            for (int v = 0; v < NB; ++v) x[s][r][v] = _mm512_fmadd_ps(av, bv[v], x[s][r][v]);
         }
      }
      PYSOFIE_UNROLL
      for (int q = 0; q < Q; ++q) aq[q] += S * step;
   }
}

// 16-lane erf / GELU for the epilogue, with AVX-512's rcp14 (+ one Newton step) instead of a division, and
// pysofie_vmath.h's exp16 (scalef for the 2^n). Same formulas and accuracy as pysofie_vmath.h's 8-lane ones: erf:
// Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7). NaN stays NaN (each clamp keeps it: min / max return their
// second operand when one is NaN).
using pysofie_vm::exp16;

// 1 / d for finite d >= 1 (relative error ~1e-8 after the Newton step; rcp14: 2^-14)
inline __m512 recip16(__m512 d) {
   const __m512 t = _mm512_maskz_rcp14_ps(PG5_ALL, d);
   return _mm512_fmadd_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(1.f)), t);
}

inline __m512 gelu16(__m512 x) {  // x / 2 * (1 + erf(x / sqrt(2))), pysofie_vmath.h's gelu8 on 16 lanes
   using namespace pysofie_vm::gelu_rat;
   const __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), x);
   const __m512 xc =
      _mm512_maskz_min_ps(PG5_ALL, _mm512_set1_ps(XMAX), _mm512_maskz_max_ps(PG5_ALL, _mm512_set1_ps(-XMAX), x));
   const __m512 s = _mm512_mul_ps(xc, xc);
   __m512 p = _mm512_set1_ps(P5);
   p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(P4));
   p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(P3));
   p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(P2));
   p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(P1));
   p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(P0));
   __m512 q = _mm512_set1_ps(Q5);
   q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(Q4));
   q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(Q3));
   q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(Q2));
   q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(Q1));
   q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(1.f));
   __m512 erf = _mm512_mul_ps(_mm512_mul_ps(xc, p), recip16(q));
   // below -XMAX, 1 + erf is under the fit's error: erf = -1 there (GELU 0; NaN for -inf, as the formula)
   erf = _mm512_mask_mov_ps(erf, _mm512_cmp_ps_mask(x, _mm512_set1_ps(-XMAX), _CMP_LT_OQ), _mm512_set1_ps(-1.f));
   return _mm512_fmadd_ps(h, erf, h);  // NaN stays NaN (through h)
}

inline __m512 gelu_tanh16(__m512 x) {  // x / 2 * (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
   const __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), x);
   const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
   __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
   // tanh(9) = 1 in float
   u = _mm512_maskz_min_ps(PG5_ALL, _mm512_set1_ps(9.f), _mm512_maskz_max_ps(PG5_ALL, _mm512_set1_ps(-9.f), u));
   const __m512 one = _mm512_set1_ps(1.f);
   const __m512 th = _mm512_fnmadd_ps(_mm512_set1_ps(2.f), recip16(_mm512_add_ps(one, exp16(_mm512_add_ps(u, u)))),
                                      one);  // 1 - 2 / (1 + e^{2u})
   return _mm512_fmadd_ps(h, th, h);
}

// One tile: c[r * ldc + j] for r < R, j < nv <= 16 * NB. Panel 0 at b0 (16 floats per k when NB == 2, else w1),
// panel 1 (NB == 2) at b1 with w1 (8 or 16) floats per k. load: add to c; epi: add bias[j] and apply Relu /
// LeakyRelu / GELU (Sigmoid / Tanh are left to the caller). Every output is summed in k order, except for R <= 2
// rows where S = 4 / R partial sums over consecutive k are added at the end; the rows of a tile depend only on M
// (tiles start at multiples of MR512), so each output's order does not depend on the thread count.
template <int R, int NB, bool PF = false>
inline void tile512(long kc, const float* __restrict a, long rs, long cs, const float* __restrict b0,
                    const float* __restrict b1, long w1, float* __restrict c, long ldc, long nv, bool load, bool epi,
                    const float* __restrict bias, int act, float slope, const Prefetch512* pf = nullptr) {
   const long w0 = NB == 1 ? w1 : 16;
   const __mmask16 mb = w1 >= 16 ? __mmask16(0xFFFF) : __mmask16(0x00FF);
   __mmask16 ms[NB];
   PYSOFIE_UNROLL
   for (int v = 0; v < NB; ++v) {
      const long n = nv - 16 * v;
      ms[v] = n >= 16 ? __mmask16(0xFFFF) : n > 0 ? __mmask16((1u << n) - 1) : __mmask16(0);
   }
   constexpr int S = R <= 2 ? 4 / R : 1;
   __m512 y[1][R][NB];
   PYSOFIE_UNROLL
   for (int r = 0; r < R; ++r) {
      PYSOFIE_UNROLL
      for (int v = 0; v < NB; ++v) y[0][r][v] = _mm512_setzero_ps();
   }
   long k0 = 0;
   if constexpr (S > 1) {
      __m512 x[S][R][NB];
      PYSOFIE_UNROLL
      for (int s = 0; s < S; ++s) {
         PYSOFIE_UNROLL
         for (int r = 0; r < R; ++r) {
            PYSOFIE_UNROLL
            for (int v = 0; v < NB; ++v) x[s][r][v] = _mm512_setzero_ps();
         }
      }
      k0 = kc / S * S;
      if (cs == 1) k_loop512<R, NB, S, true>(0, k0, a, rs, cs, b0, b1, w0, w1, mb, x);
      else k_loop512<R, NB, S, false>(0, k0, a, rs, cs, b0, b1, w0, w1, mb, x);
      PYSOFIE_UNROLL
      for (int s = 0; s < S; ++s) {
         PYSOFIE_UNROLL
         for (int r = 0; r < R; ++r) {
            PYSOFIE_UNROLL
            for (int v = 0; v < NB; ++v) y[0][r][v] = _mm512_add_ps(y[0][r][v], x[s][r][v]);
         }
      }
   }
   if (load) {
      PYSOFIE_UNROLL
      for (int r = 0; r < R; ++r) {
         PYSOFIE_UNROLL
         for (int v = 0; v < NB; ++v)
            y[0][r][v] = _mm512_add_ps(_mm512_maskz_loadu_ps(ms[v], c + r * ldc + 16 * v), y[0][r][v]);
      }
   }
   if (cs == 1) k_loop512<R, NB, 1, true, PF>(k0, kc, a, rs, cs, b0, b1, w0, w1, mb, y, pf);
   else k_loop512<R, NB, 1, false, PF>(k0, kc, a, rs, cs, b0, b1, w0, w1, mb, y, pf);
   if (epi) {
      if (bias) {
         PYSOFIE_UNROLL
         for (int v = 0; v < NB; ++v) {
            const __m512 bb = _mm512_maskz_loadu_ps(ms[v], bias + 16 * v);
            PYSOFIE_UNROLL
            for (int r = 0; r < R; ++r) y[0][r][v] = _mm512_add_ps(y[0][r][v], bb);
         }
      }
      const __m512 z = _mm512_setzero_ps();
      const __m512 sl = _mm512_set1_ps(slope);
      PYSOFIE_UNROLL
      for (int r = 0; r < R; ++r) {
         PYSOFIE_UNROLL
         for (int v = 0; v < NB; ++v) {
            __m512& t = y[0][r][v];
            if (act == ACT512_RELU) t = _mm512_maskz_max_ps(PG5_ALL, z, t);  // NaN stays NaN, as std::max(v, 0)
            else if (act == ACT512_LEAKY) t = _mm512_mask_mul_ps(t, _mm512_cmp_ps_mask(t, z, _CMP_LT_OQ), t, sl);
            else if (act == ACT512_GELU) t = gelu16(t);
            else if (act == ACT512_GELU_TANH) t = gelu_tanh16(t);
         }
      }
   }
   PYSOFIE_UNROLL
   for (int r = 0; r < R; ++r) {
      PYSOFIE_UNROLL
      for (int v = 0; v < NB; ++v) {
         if (ms[v] == 0xFFFF) _mm512_storeu_ps(c + r * ldc + 16 * v, y[0][r][v]);
         else _mm512_mask_storeu_ps(c + r * ldc + 16 * v, ms[v], y[0][r][v]);
      }
   }
}

// mr <= MR512 rows: tiles of 12, 8, 4, 2 and 1 rows (few instantiations: the compile time of every model with a
// dense layer). The split depends only on mr, which depends only on M (see tile512).
template <int NB>
inline void tile512_rows(long mr, long kc, const float* a, long rs, long cs, const float* b0, const float* b1,
                         long w1, float* c, long ldc, long nv, bool load, bool epi, const float* bias, int act,
                         float slope, const Prefetch512* pf = nullptr) {
   if (mr == 12) {
      if constexpr (NB == 2) {  // pf: the first full row tile of a pair prefetches the next pair
         if (pf) {
            tile512<12, 2, true>(kc, a, rs, cs, b0, b1, w1, c, ldc, nv, load, epi, bias, act, slope, pf);
            return;
         }
      }
      tile512<12, NB>(kc, a, rs, cs, b0, b1, w1, c, ldc, nv, load, epi, bias, act, slope);
      return;
   }
#define PG5_PART(n) \
   if (mr & n) { \
      tile512<n, NB>(kc, a, rs, cs, b0, b1, w1, c, ldc, nv, load, epi, bias, act, slope); \
      a += n * rs; \
      c += n * ldc; \
   }
   PG5_PART(8) PG5_PART(4) PG5_PART(2) PG5_PART(1)
#undef PG5_PART
}

// The 8 wide last panel (at most 8 valid columns, e.g. the last 4 of N = 100), rows with A's k contiguous (cs == 1),
// 4 columns g0 <= g < g0 + 4 at a time: one 16-lane vector per row holds lane 4 g + q = the sum over k = q (mod 4)
// of A[r, k] * B[k, g0 + g]. Per 4 k: A's 4 values broadcast to the 4 lane groups (one 128-bit broadcast load) and
// B's 4 x 4 block gathered from the panel's two 16-float rows by one two-source permute that every row shares; R
// FMAs, each with 16 useful lanes, where the 8-lane tiles spent one 8-lane FMA per row and k with 4 of 8 lanes
// used (and only 6 independent chains). At the end the four partial sums of each (row, column) are added
// ((q0 + q2) + (q1 + q3)), four rows at a time, and stored to the valid columns only (nv of them). load / epi /
// bias / act / slope as tile512. Each output's order depends only on kc (so only on M, not on the thread count).
// lanes 0-3 of v in all four 128-bit lanes
inline __m512 lanes0(__m512 v) { return _mm512_maskz_shuffle_f32x4(PG5_ALL, v, v, 0); }

template <int R>
inline void rem512(long kc, const float* __restrict a, long rs, const float* __restrict b, long g0,
                   float* __restrict c, long ldc, long nv, bool load, bool epi, const float* __restrict bias, int act,
                   float slope) {
   __m512 x[R];
   PYSOFIE_UNROLL
   for (int r = 0; r < R; ++r) x[r] = _mm512_setzero_ps();
   // lane 4 g + q of the permuted block = panel float (q * 8 + g0 + g) of the 32 at k (k + q: row q of 4)
   const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27),
                                        _mm512_set1_epi32(static_cast<int>(g0)));
   long k = 0;
   for (; k + 4 <= kc; k += 4) {
      const __m512 bq = _mm512_permutex2var_ps(_mm512_loadu_ps(b + k * 8), idx, _mm512_loadu_ps(b + k * 8 + 16));
      PYSOFIE_UNROLL
      for (int r = 0; r < R; ++r)
         x[r] = _mm512_fmadd_ps(_mm512_maskz_broadcast_f32x4(PG5_ALL, _mm_loadu_ps(a + r * rs + k)), bq, x[r]);
   }
   if (k < kc) {  // 1-3 more k: masked loads (nothing read past A's row or the panel)
      const long t = kc - k;
      const __mmask16 m0 = __mmask16((1u << std::min<long>(16, 8 * t)) - 1);
      const __mmask16 m1 = t > 2 ? __mmask16((1u << (8 * t - 16)) - 1) : __mmask16(0);
      const __m512 bq = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(m0, b + k * 8), idx,
                                               _mm512_maskz_loadu_ps(m1, b + k * 8 + 16));
      const __mmask16 ma = __mmask16((1u << t) - 1);
      PYSOFIE_UNROLL
      for (int r = 0; r < R; ++r)
         x[r] = _mm512_fmadd_ps(lanes0(_mm512_maskz_loadu_ps(ma, a + r * rs + k)), bq, x[r]);
   }
   const __mmask16 mv = __mmask16((1u << std::min<long>(4, nv - g0)) - 1);
   const __m512 z = _mm512_setzero_ps();
   const __m512 sl = _mm512_set1_ps(slope);
   const __m512 bb = epi && bias ? lanes0(_mm512_maskz_loadu_ps(mv, bias + g0)) : z;
   PYSOFIE_UNROLL
   for (int r0 = 0; r0 < R; r0 += 4) {
      // rows r0..r0+3 (zeros past R): per 128-bit lane g, [sum of row r0, r0 + 1, r0 + 2, r0 + 3] at column g
      const auto row = [&](int r) { return r < R ? x[r < R ? r : 0] : z; };
      const __m512 v0 = x[r0], v1 = row(r0 + 1), v2 = row(r0 + 2), v3 = row(r0 + 3);
      const __m512 s01 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(PG5_ALL, v0, v1), _mm512_maskz_unpackhi_ps(PG5_ALL, v0, v1));  // q0+q2, q1+q3
      const __m512 s23 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(PG5_ALL, v2, v3), _mm512_maskz_unpackhi_ps(PG5_ALL, v2, v3));
      const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, 0x44), _mm512_shuffle_ps(s01, s23, 0xEE));
      // lane 4 i + g: row r0 + i, column g
      __m512 y = _mm512_maskz_permutexvar_ps(
         PG5_ALL, _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), s);
      if (load) {
         __m512 cv = z;
         PYSOFIE_UNROLL
         for (int i = 0; i < 4; ++i)
            if (r0 + i < R)  // row r0 + i's values into lanes 4 i .. 4 i + 3
               cv = _mm512_mask_mov_ps(cv, __mmask16(0xFu << (4 * i)),
                                       lanes0(_mm512_maskz_loadu_ps(mv, c + (r0 + i) * ldc + g0)));
         y = _mm512_add_ps(cv, y);
      }
      if (epi) {
         y = _mm512_add_ps(y, bb);
         if (act == ACT512_RELU) y = _mm512_maskz_max_ps(PG5_ALL, z, y);
         else if (act == ACT512_LEAKY) y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, z, _CMP_LT_OQ), y, sl);
         else if (act == ACT512_GELU) y = gelu16(y);
         else if (act == ACT512_GELU_TANH) y = gelu_tanh16(y);
      }
      PYSOFIE_UNROLL
      for (int i = 0; i < 4; ++i) {
         if (r0 + i >= R) break;
         __m512 yi;  // lanes 4 i .. 4 i + 3 moved to 0 .. 3
         if (i == 0) yi = y;
         else if (i == 1) yi = _mm512_maskz_shuffle_f32x4(PG5_ALL, y, y, 0x55);
         else if (i == 2) yi = _mm512_maskz_shuffle_f32x4(PG5_ALL, y, y, 0xAA);
         else yi = _mm512_maskz_shuffle_f32x4(PG5_ALL, y, y, 0xFF);
         _mm512_mask_storeu_ps(c + (r0 + i) * ldc + g0, mv, yi);
      }
   }
}

// mr <= MR512 rows of the 8 wide last panel b (nv <= 8 valid columns): rem512 per 4 columns, tiles of 12, 8, 4, 2
// and 1 rows (the split depends only on mr)
inline void rem512_rows(long mr, long kc, const float* a, long rs, const float* b, float* c, long ldc, long nv,
                        bool load, bool epi, const float* bias, int act, float slope) {
   for (long g0 = 0; g0 < nv; g0 += 4) {
      const float* ar = a;
      float* cr = c;
      long left = mr;
      if (left == 12) {
         rem512<12>(kc, ar, rs, b, g0, cr, ldc, nv, load, epi, bias, act, slope);
         continue;
      }
#define PG5_REM(n) \
   if (left & n) { \
      rem512<n>(kc, ar, rs, b, g0, cr, ldc, nv, load, epi, bias, act, slope); \
      ar += n * rs; \
      cr += n * ldc; \
   }
      PG5_REM(8) PG5_REM(4) PG5_REM(2) PG5_REM(1)
#undef PG5_REM
   }
}

}  // namespace pysofie_gemm

#endif  // __AVX512F__

#endif  // PYSOFIE_GEMM512_H
