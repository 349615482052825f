// pysofie fused scaled-dot-product attention (passes/transformer.py FuseAttention): for every batch b, head h
// and query row i,
//    s[j] = scale * sum_e Q[b,h,i,e] K[b,h,j,e]        (j < T)
//    s[j] = where / add masks, in the graph's order  (Where(cond, fill, s), s + mask)
//    Y[b,h,i,:] = sum_j softmax(s)[j] V[b,h,j,:]
// with Q, K, V and Y read / written through strides (batch, head, row; elements contiguous), so that the
// Transposes an exporter writes around attention are folded into the kernel. Two phases on the Session's pool:
// K of every (b, h) transposed and V copied into panels of 16 columns (zero padded), then tasks of
// (b, h, block of MB query rows): scores by a register-blocked product (AVX2/FMA, scalar fallback), the
// softmax on the rows (vectorized exp: 16 lanes with AVX-512), the probabilities times V into Y. Each task
// writes its own rows, in the same order whatever the thread count. A causal mask (Where(j > i + c, -inf, s) as
// the last mask; Args::causal = c) is not read: the scores of the keys it hides are not computed, their
// probabilities are exactly 0 and their rows of V are not multiplied (the same result for finite V).
#ifndef PYSOFIE_ATTN_H
#define PYSOFIE_ATTN_H

#include <algorithm>
#include <cmath>
#include <limits>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#ifndef PYSOFIE_THREADS_H  // generated files inline these before this header
#include "pysofie_threads.h"
#endif
#ifndef PYSOFIE_VMATH_H
#include "pysofie_vmath.h"
#endif
#ifndef PYSOFIE_TRANSPOSE_H
#include "pysofie_transpose.h"
#endif

namespace pysofie_attn {

constexpr long MB = 24;  // query rows per task

struct Args {
   long B, H, S, T, D, Dv;
   float scale;
   const float* q; long qb, qh, qi;
   const float* k; long kb, kh, kj;
   const float* v; long vb, vh, vj;
   float* y; long yb, yh, yi;
   const float* add; long ab, ah, ai, aj;   // additive mask (nullptr: none), strides 0 where broadcast
   const bool* cond; long cb, ch, ci, cj;  // Where(cond, fill, s) (nullptr: none)
   float fill;
   bool where_first;                        // Where before the Add (else after)
   long causal = -1;  // >= 0: key j of query row i is masked (probability exactly 0) iff j > i + causal; -1: none
   float* kt;                               // B * H * D * padded(T) floats
   float* sc;                               // B * H * S * padded(T) floats
   float* vp;                               // B * H * T * padded(Dv) floats
};

inline long padded(long t) { return (t + 15) / 16 * 16; }

// c[r * ldc + j] = sum_{e < K} a[r * lda + e] * b[e * ldb + j] for r < R, j < nc <= 16 (b rows have 16 readable
// floats); all 16 columns of c are written when FULL, else nc (masked stores).
template <int R, bool FULL>
inline void mk16(long K, const float* __restrict a, long lda, const float* __restrict b, long ldb,
                 float* __restrict c, long ldc, long nc) {
#if defined(__AVX2__) && defined(__FMA__)
   const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
   const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nc)), lanes);
   const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nc) - 8), lanes);
   __m256 x00 = _mm256_setzero_ps(), x01 = x00, x10 = x00, x11 = x00, x20 = x00, x21 = x00, x30 = x00,
          x31 = x00, x40 = x00, x41 = x00, x50 = x00, x51 = x00;
   for (long e = 0; e < K; ++e) {
      const float* br = b + e * ldb;
      const __m256 b0 = _mm256_loadu_ps(br);
      const __m256 b1 = _mm256_loadu_ps(br + 8);
#define PA_FMA(r)                                                        \
      if constexpr (R > r) {                                             \
         const __m256 ar = _mm256_broadcast_ss(a + r * lda + e);         \
         x##r##0 = _mm256_fmadd_ps(ar, b0, x##r##0);                     \
         x##r##1 = _mm256_fmadd_ps(ar, b1, x##r##1);                     \
      }
      PA_FMA(0) PA_FMA(1) PA_FMA(2) PA_FMA(3) PA_FMA(4) PA_FMA(5)
#undef PA_FMA
   }
#define PA_ST(r)                                                                          \
   if constexpr (R > r) {                                                                 \
      if (FULL) {                                                                         \
         _mm256_storeu_ps(c + r * ldc, x##r##0);                                          \
         _mm256_storeu_ps(c + r * ldc + 8, x##r##1);                                      \
      } else {                                                                            \
         _mm256_maskstore_ps(c + r * ldc, m0, x##r##0);                                   \
         _mm256_maskstore_ps(c + r * ldc + 8, m1, x##r##1);                               \
      }                                                                                   \
   }
   PA_ST(0) PA_ST(1) PA_ST(2) PA_ST(3) PA_ST(4) PA_ST(5)
#undef PA_ST
#else
   for (long r = 0; r < R; ++r) {
      float acc[16] = {0};
      for (long e = 0; e < K; ++e) {
         const float ar = a[r * lda + e];
         const float* br = b + e * ldb;
         for (long j = 0; j < nc; ++j) acc[j] += ar * br[j];
      }
      std::copy(acc, acc + nc, c + r * ldc);
   }
#endif
}

// C (m x n, row stride ldc) = A (m x K, row stride lda) * B (K x n in panels of 16 columns: panel q at
// bp + q * pstride, its rows 16 floats apart, zero padded). c_padded: C's rows may be written up to the next
// multiple of 16 columns. (AVX-512 12 x 32 tiles measured no faster here: both run at the FMA peak.)
inline void matmul(long m, long n, long K, const float* a, long lda, const float* bp, long pstride, bool c_padded,
                   float* c, long ldc) {
   for (long j = 0; j < n; j += 16) {
      const long nc = std::min(16L, n - j);
      const bool full = nc == 16 || c_padded;
      const float* b = bp + j / 16 * pstride;
      for (long i = 0; i < m; i += 6) {
         const long r = std::min(6L, m - i);
         const float* ai = a + i * lda;
         float* ci = c + i * ldc + j;
#define PA_CASE(RR)                                                         \
   case RR:                                                                 \
      if (full) mk16<RR, true>(K, ai, lda, b, 16, ci, ldc, 16);             \
      else mk16<RR, false>(K, ai, lda, b, 16, ci, ldc, nc);                 \
      break;
         switch (r) {
            PA_CASE(6) PA_CASE(5) PA_CASE(4) PA_CASE(3) PA_CASE(2) PA_CASE(1)
            default: break;
         }
#undef PA_CASE
      }
   }
}

// Rows j < T of a (row stride ld, n columns) into panels of 16 columns: out[(c / 16) * T * 16 + j * 16 + c % 16],
// zero padded to a multiple of 16 columns.
inline void pack_panels(const float* a, long ld, long T, long n, float* out) {
   for (long q = 0; q * 16 < n; ++q) {
      const long c0 = q * 16, nc = std::min(16L, n - c0);
      float* o = out + q * T * 16;
      for (long j = 0; j < T; ++j) {
         std::copy(a + j * ld + c0, a + j * ld + c0 + nc, o + j * 16);
         std::fill(o + j * 16 + nc, o + j * 16 + 16, 0.f);
      }
   }
}

// row[j] = scale * row[j], the masks, then softmax over j < n (in place); row[j] = 0 for n <= j < nz (keys a
// causal mask hides: exp(-inf) = 0 exactly). A row whose values are all -inf becomes NaN, as Softmax of such a
// row does.
inline void softmax_row(const Args& p, float* row, long b, long h, long i, long n, long nz) {
   const float* add = p.add ? p.add + b * p.ab + h * p.ah + i * p.ai : nullptr;
   const bool* cond = p.cond ? p.cond + b * p.cb + h * p.ch + i * p.ci : nullptr;
   long j = 0;
   float mx = -std::numeric_limits<float>::infinity();
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
   if ((!add || p.aj == 1) && (!cond || p.cj == 1)) {
      const __m512 sc = _mm512_set1_ps(p.scale), fill = _mm512_set1_ps(p.fill);
      __m512 vmx = _mm512_set1_ps(mx);
      for (; j + 16 <= n; j += 16) {
         __m512 s = _mm512_mul_ps(_mm512_loadu_ps(row + j), sc);
         __mmask16 rep = 0;
         if (cond) {
            const __m512i c16 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cond + j)));
            rep = _mm512_test_epi32_mask(c16, c16);
            if (p.where_first) s = _mm512_mask_mov_ps(s, rep, fill);
         }
         if (add) s = _mm512_add_ps(s, _mm512_loadu_ps(add + j));
         if (cond && !p.where_first) s = _mm512_mask_mov_ps(s, rep, fill);
         _mm512_storeu_ps(row + j, s);
         vmx = _mm512_max_ps(vmx, s);  // a NaN lane may be dropped here; it makes the row NaN through exp
      }
      mx = _mm512_reduce_max_ps(vmx);
   }
#elif defined(__AVX2__) && defined(__FMA__)
   if ((!add || p.aj == 1) && (!cond || p.cj == 1)) {
      const __m256 sc = _mm256_set1_ps(p.scale), fill = _mm256_set1_ps(p.fill);
      __m256 vmx = _mm256_set1_ps(mx);
      for (; j + 8 <= n; j += 8) {
         __m256 s = _mm256_mul_ps(_mm256_loadu_ps(row + j), sc);
         __m256 rep = _mm256_setzero_ps();
         if (cond) {
            const __m128i c8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(cond + j));
            rep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(c8), _mm256_setzero_si256()));
            if (p.where_first) s = _mm256_blendv_ps(s, fill, rep);
         }
         if (add) s = _mm256_add_ps(s, _mm256_loadu_ps(add + j));
         if (cond && !p.where_first) s = _mm256_blendv_ps(s, fill, rep);
         _mm256_storeu_ps(row + j, s);
         vmx = _mm256_max_ps(vmx, s);  // a NaN lane is dropped here; it makes the row NaN through exp
      }
      alignas(32) float l[8];
      _mm256_store_ps(l, vmx);
      for (int t = 0; t < 8; ++t) mx = std::max(mx, l[t]);
   }
#endif
   for (; j < n; ++j) {
      float s = row[j] * p.scale;
      const bool rep = cond && cond[j * p.cj];
      if (p.where_first && rep) s = p.fill;
      if (add) s += add[j * p.aj];
      if (!p.where_first && rep) s = p.fill;
      row[j] = s;
      mx = std::max(mx, s);
   }
   float sum = 0.f;
   j = 0;
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
   {
      const __m512 m = _mm512_set1_ps(mx);
      __m512 acc = _mm512_setzero_ps();
      for (; j + 16 <= n; j += 16) {
         const __m512 e = pysofie_vm::exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), m));
         _mm512_storeu_ps(row + j, e);
         acc = _mm512_add_ps(acc, e);
      }
      sum = _mm512_reduce_add_ps(acc);
   }
#elif defined(__AVX2__) && defined(__FMA__)
   {
      const __m256 m = _mm256_set1_ps(mx);
      __m256 acc = _mm256_setzero_ps();
      for (; j + 8 <= n; j += 8) {
         const __m256 e = pysofie_vm::exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), m));
         _mm256_storeu_ps(row + j, e);
         acc = _mm256_add_ps(acc, e);
      }
      alignas(32) float l[8];
      _mm256_store_ps(l, acc);
      sum = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
   }
#endif
   for (; j < n; ++j) {
      const float e = std::exp(row[j] - mx);
      row[j] = e;
      sum += e;
   }
   const float inv = 1.f / sum;
   j = 0;
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
   for (const __m512 vi = _mm512_set1_ps(inv); j + 16 <= n; j += 16)
      _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), vi));
#endif
   for (; j < n; ++j) row[j] *= inv;
   std::fill(row + n, row + nz, 0.f);
}

// K transposed into panels of 16 keys: kt[(j / 16) * D * 16 + e * 16 + j % 16] = k[j * kj + e] for j < T, e < D
// (the caller zeroes the padding)
inline void transpose_k(const float* k, long kj, long T, long D, float* kt) {
   auto at = [&](long e, long j) -> float* { return kt + (j / 16) * D * 16 + e * 16 + j % 16; };
   long j0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
   if (D % 8 == 0) {
      for (; j0 + 8 <= T; j0 += 8)
         for (long e0 = 0; e0 < D; e0 += 8) {
            pysofie_tr::transpose8x8(k + j0 * kj + e0, kj, at(e0, j0), 16);  // rows of kt: 16 apart
         }
   }
#endif
   for (long j = j0; j < T; ++j)
      for (long e = 0; e < D; ++e) *at(e, j) = k[j * kj + e];
}

inline void run(const Args& p, pysofie_par::Pool* pool) {
   const long B = p.B, H = p.H, S = p.S, T = p.T, D = p.D, Dv = p.Dv, Tp = padded(p.T), Dvp = padded(p.Dv);
   if (B <= 0 || H <= 0 || S <= 0) return;
   auto par = [&](long n, auto&& f) { pysofie_par::run(pool, n, [&](long t, int) { f(t); }); };
   // per (b, h): K transposed and V, both in panels of 16 columns
   par(B * H, [&](long bh) {
      const long b = bh / H, h = bh % H;
      float* kt = p.kt + bh * D * Tp;
      std::fill(kt + (Tp - 16) * D, kt + Tp * D, 0.f);  // the last panel's padding
      transpose_k(p.k + b * p.kb + h * p.kh, p.kj, T, D, kt);
      pack_panels(p.v + b * p.vb + h * p.vh, p.vj, T, Dv, p.vp + bh * T * Dvp);
   });
   const long nblk = (S + MB - 1) / MB;
   par(B * H * nblk, [&](long task) {
      const long bh = task / nblk, i0 = task % nblk * MB, b = bh / H, h = bh % H;
      const long m = std::min(MB, S - i0);
      float* sc = p.sc + (bh * S + i0) * Tp;
      // causal: the keys past the block's last row's are masked for all its rows; their scores are not computed
      // and their probabilities (exactly 0) not multiplied
      const long Tk = p.causal >= 0 ? std::min(T, i0 + m + p.causal) : T;
      matmul(m, Tk, D, p.q + b * p.qb + h * p.qh + i0 * p.qi, p.qi, p.kt + bh * D * Tp, D * 16, true, sc, Tp);
      for (long r = 0; r < m; ++r) {
         const long n = p.causal >= 0 ? std::min(T, i0 + r + p.causal + 1) : T;
         softmax_row(p, sc + r * Tp, b, h, i0 + r, n, Tk);
      }
      matmul(m, Dv, Tk, sc, Tp, p.vp + bh * T * Dvp, T * 16, false, p.y + b * p.yb + h * p.yh + i0 * p.yi, p.yi);
   });
}

}  // namespace pysofie_attn

#endif  // PYSOFIE_ATTN_H
