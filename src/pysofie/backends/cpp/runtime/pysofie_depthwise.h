// pysofie depthwise convolution kernels (stride 1, no dilation; backends/cpp/ops/conv.py's depthwise path):
// depthwise2d (one channel per call, blocks of output rows) and depthwise8 (8 channels on the vector lanes). They
// use the fused activations of pysofie_conv.h and live in its namespace.
#ifndef PYSOFIE_DEPTHWISE_H
#define PYSOFIE_DEPTHWISE_H

#ifndef PYSOFIE_CONV_H  // generated files inline it before this header
#include "pysofie_conv.h"
#endif

namespace pysofie_conv {

// Depthwise 2-D convolution of one channel (stride 1, no dilation): y[oh][ow] = act(b + sum_{kh, kw}
// w[kh * KW + kw] * x[oh + kh - pt][ow + kw - pl]). The channel is first copied into xp, zero-padded to Hp x Wq
// (Hp = OH + KH - 1, Wq >= OW rounded up to 16, + KW - 1). Blocks of R output rows x 16 columns: each input vector
// loaded serves the R rows it contributes to (8 accumulators in registers for R = 4).
template <int R, class Act>
inline void dw_block(const float* xp, long Wq, long KH, long KW, const float* w, float b, float* y, long OW,
                     Act act) {
#if defined(__AVX2__) && defined(__FMA__)
   for (long ow = 0; ow < OW; ow += 16) {
      __m256 acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_set1_ps(b);
      for (long ih = 0; ih < R + KH - 1; ++ih) {
         const float* xr = xp + ih * Wq + ow;
         for (long kw = 0; kw < KW; ++kw) {
            const __m256 x0 = _mm256_loadu_ps(xr + kw), x1 = _mm256_loadu_ps(xr + kw + 8);
            for (int r = 0; r < R; ++r) {
               const long kh = ih - r;
               if (kh < 0 || kh >= KH) continue;
               const __m256 wv = _mm256_broadcast_ss(w + kh * KW + kw);
               acc[r][0] = _mm256_fmadd_ps(wv, x0, acc[r][0]);
               acc[r][1] = _mm256_fmadd_ps(wv, x1, acc[r][1]);
            }
         }
      }
      for (int r = 0; r < R; ++r) {
         const __m256 v0 = act.vec(acc[r][0]), v1 = act.vec(acc[r][1]);
         float* yr = y + r * OW + ow;
         if (ow + 16 <= OW) {
            _mm256_storeu_ps(yr, v0);
            _mm256_storeu_ps(yr + 8, v1);
         } else {
            alignas(32) float t[16];
            _mm256_store_ps(t, v0);
            _mm256_store_ps(t + 8, v1);
            std::copy(t, t + (OW - ow), yr);
         }
      }
   }
#else
   for (int r = 0; r < R; ++r)
      for (long ow = 0; ow < OW; ++ow) {
         float a = b;
         for (long kh = 0; kh < KH; ++kh)
            for (long kw = 0; kw < KW; ++kw) a += w[kh * KW + kw] * xp[(r + kh) * Wq + ow + kw];
         y[r * OW + ow] = act(a);
      }
#endif
}

template <class Act>
void depthwise2d(const float* x, long H, long W, long KH, long KW, long pt, long pl, long OH, long OW,
                 const float* w, const float* bias, float* y, float* xp, long Wq, Act act) {
   const long Hp = OH + KH - 1;
   for (long h = 0; h < Hp; ++h) {
      float* row = xp + h * Wq;
      const long ih = h - pt;
      if (ih < 0 || ih >= H) {
         std::fill(row, row + Wq, 0.f);
         continue;
      }
      const long lo = std::min(pl, Wq), n = std::max(0L, std::min(W, Wq - pl));
      std::fill(row, row + lo, 0.f);
      std::copy(x + ih * W, x + ih * W + n, row + lo);
      std::fill(row + lo + n, row + Wq, 0.f);
   }
   const float b = bias ? *bias : 0.f;
   long oh = 0;
   for (; oh + 4 <= OH; oh += 4) dw_block<4>(xp + oh * Wq, Wq, KH, KW, w, b, y + oh * OW, OW, act);
   for (; oh < OH; ++oh) dw_block<1>(xp + oh * Wq, Wq, KH, KW, w, b, y + oh * OW, OW, act);
}

#if defined(__AVX2__) && defined(__FMA__)
using pysofie_tr::transpose8;

// One block of depthwise8: NP output pixels x 8 channels, acc[p] = bias + sum over kernel rows kh0 .. kh1 - 1 and
// columns kw of w8[kh][kw] * xr[(kh - kh0) * Wp8 + p + kw]; Edge: only the packed columns j (relative to the
// block) with jl <= j < jh are read (the others are zero padding). Each accumulator takes a chain of KH * KW
// dependent FMAs: NP = 16 (AVX-512VL's 32 registers) leaves the FMA units slack over that latency, NP = 8 none.
template <int KW, int NP, bool Edge>
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline void dw8_block(const float* xr, long Wp8, long kh0, long kh1, const float* w8, __m256 bv, long jl, long jh,
                      __m256 (&acc)[NP]) {
   PYSOFIE_UNROLL
   for (int p = 0; p < NP; ++p) acc[p] = bv;
   for (long kh = kh0; kh < kh1; ++kh, xr += Wp8 * 8) {
      __m256 wk[KW];
      PYSOFIE_UNROLL
      for (int kw = 0; kw < KW; ++kw) wk[kw] = _mm256_loadu_ps(w8 + (kh * KW + kw) * 8);
      PYSOFIE_UNROLL
      for (int j = 0; j < NP + KW - 1; ++j) {
         if (Edge && (j < jl || j >= jh)) continue;
         const __m256 v = _mm256_loadu_ps(xr + j * 8);
         PYSOFIE_UNROLL
         for (int kw = 0; kw < KW; ++kw) {
            const int p = j - kw;
            if (p >= 0 && p < NP) acc[p] = _mm256_fmadd_ps(wk[kw], v, acc[p]);
         }
      }
   }
}

// Depthwise convolution of 8 channels at once (stride 1, no dilation), channels on the vector lanes: the channels
// c0 .. c0 + nc - 1 (nc <= 8) of x (C x H x W each, channel stride H * W) are packed into x8[Hp][Wp8][8] (Hp =
// OH + KH - 1, Wp8 = OW rounded up to 8, + KW - 1; the padding is left unwritten and never read), the weights
// into w8[KH][KW][8]; then per output row, blocks of 8 (16 with AVX-512VL) output pixels: each packed input
// vector loaded serves the KW taps (pixels) it reaches, the KW weight vectors of a kernel row stay in registers,
// the products with the padding are skipped. y (the 8 channels' planes, stride OH * OW) gets act(sum + bias)
// through 8x8 transposes. Scratch: x8 and w8 as above.
template <int KW, class Act>
void depthwise8(const float* x, long nc, long H, long W, long KH, long pt, long pl, long OH, long OW,
                const float* w, const float* bias, float* y, float* x8, float* w8, Act act) {
   const long OWr = (OW + 7) / 8 * 8, Wp8 = OWr + KW - 1;
   const long K = KH * KW;
   for (long k = 0; k < K; ++k)
      for (long c = 0; c < 8; ++c) w8[k * 8 + c] = c < nc ? w[c * K + k] : 0.f;
   // the packed columns [cl, ch) hold the input, the others padding: a block whose KW + 7 columns reach outside
   // skips the products with those zeros (dw8_block<KW, true>), and each output row the kernel rows that fall
   // in the top or bottom padding
   const long cl = std::min(pl, Wp8), ch = cl + std::max(0L, std::min(W, Wp8 - cl));
   // pack row h (pt <= h < pt + H): 8 pixels x 8 channels transposed into columns [cl, ch). The zero padding is
   // not written: the blocks below never read it. Rows are packed just before the first output row that reads
   // them (the KH rows in use stay in L1)
   auto pack_row = [&](long h) {
      float* row = x8 + h * Wp8 * 8;
      const long ih = h - pt, lo = cl, n = ch - cl;
      long iw = 0;
      // the 8 channels' input rows; a missing channel (c >= nc) repeats channel 0: its lane is never stored
      const float* xs[8];
      for (long c = 0; c < 8; ++c) xs[c] = x + ((c < nc ? c : 0) * H + ih) * W;
      for (; iw + 4 <= n; iw += 4) {
         // 4 pixels: a[i] = channel i's 4 pixels | channel i + 4's (128-bit loads), then 4x4 transposes in the
         // two lanes (8 shuffles instead of transpose8's 12 per 4 pixels)
         __m256 a[4];
         for (int i = 0; i < 4; ++i)
            a[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(xs[i] + iw)), _mm_loadu_ps(xs[i + 4] + iw),
                                        1);
         const __m256 t0 = _mm256_unpacklo_ps(a[0], a[1]), t1 = _mm256_unpackhi_ps(a[0], a[1]);
         const __m256 t2 = _mm256_unpacklo_ps(a[2], a[3]), t3 = _mm256_unpackhi_ps(a[2], a[3]);
         float* o = row + (lo + iw) * 8;
         _mm256_storeu_ps(o, _mm256_shuffle_ps(t0, t2, 0x44));
         _mm256_storeu_ps(o + 8, _mm256_shuffle_ps(t0, t2, 0xEE));
         _mm256_storeu_ps(o + 16, _mm256_shuffle_ps(t1, t3, 0x44));
         _mm256_storeu_ps(o + 24, _mm256_shuffle_ps(t1, t3, 0xEE));
      }
      for (; iw < n; ++iw)
         for (long c = 0; c < 8; ++c) row[(lo + iw) * 8 + c] = c < nc ? x[(c * H + ih) * W + iw] : 0.f;
   };
   alignas(32) float bl[8];
   for (long c = 0; c < 8; ++c) bl[c] = bias && c < nc ? bias[c] : 0.f;
   const __m256 bv = _mm256_load_ps(bl);
   // act, 8x8 transpose, store to the nc planes of y (the last block: OW - ow)
   auto store8 = [&](const __m256* a, long oh, long ow) {
      __m256 r[8];
      for (int p = 0; p < 8; ++p) r[p] = act.vec(a[p]);
      float* yr = y + oh * OW + ow;
      transpose8(r);  // r[c]: channel c's 8 pixels
      if (ow + 8 <= OW) {
         for (long c = 0; c < nc; ++c) _mm256_storeu_ps(yr + c * OH * OW, r[c]);
      } else {
         alignas(32) float t[8];
         for (long c = 0; c < nc; ++c) {
            _mm256_store_ps(t, r[c]);
            std::copy(t, t + (OW - ow), yr + c * OH * OW);
         }
      }
   };
   long next = pt;  // the next row to pack
   for (long oh = 0; oh < OH; ++oh) {
      const long kh0 = std::max(0L, pt - oh), kh1 = std::min(KH, H + pt - oh);
      for (; next < oh + kh1; ++next) pack_row(next);
      const float* xr = x8 + (oh + kh0) * Wp8 * 8;
      long ow = 0;
#if defined(__AVX512VL__)
      for (; ow + 16 <= OWr; ow += 16) {
         __m256 acc[16];
         if (ow >= cl && ow + 16 + KW - 1 <= ch)
            dw8_block<KW, 16, false>(xr + ow * 8, Wp8, kh0, kh1, w8, bv, 0, 0, acc);
         else
            dw8_block<KW, 16, true>(xr + ow * 8, Wp8, kh0, kh1, w8, bv, cl - ow, ch - ow, acc);
         store8(acc, oh, ow);
         store8(acc + 8, oh, ow + 8);
      }
#endif
      for (; ow < OWr; ow += 8) {
         __m256 acc[8];
         if (ow >= cl && ow + 8 + KW - 1 <= ch)
            dw8_block<KW, 8, false>(xr + ow * 8, Wp8, kh0, kh1, w8, bv, 0, 0, acc);
         else
            dw8_block<KW, 8, true>(xr + ow * 8, Wp8, kh0, kh1, w8, bv, cl - ow, ch - ow, acc);
         store8(acc, oh, ow);
      }
   }
}
#endif

}  // namespace pysofie_conv

#endif  // PYSOFIE_DEPTHWISE_H
