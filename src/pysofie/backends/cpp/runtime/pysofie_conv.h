// pysofie convolution kernels: an indirect direct convolution (no im2col) for float Conv and ConvTranspose with
// weights packed at generation time (passes.fusion.PackConvWeights).
//
// The input is copied once into a zero-padded image, so that every output position q reads its receptive field
// at xp + pos[q] + off[k] for the reduction index k = (channel, kernel offsets), with no bounds tests. Strides,
// dilations, 1-3 spatial dimensions and the phases of a transposed convolution are all expressed by the two
// offset tables. The register-blocked micro-kernel computes 6 output positions x 16 output channels at a time:
// per k it loads 16 packed weights (two AVX vectors) and broadcasts 6 input values, 12 FMAs. Output positions are
// processed in bands whose accumulators stay in cache, the reduction in chunks whose packed weights stay in L1.
#ifndef PYSOFIE_CONV_H
#define PYSOFIE_CONV_H

#include <algorithm>
#include <cmath>
#include <cstdint>
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
#ifndef PYSOFIE_CONV512_H
#include "pysofie_conv512.h"  // the AVX-512 micro-kernel
#endif

// The micro-kernel stays a function of its own: inlined into its caller's loops, compilers run out of registers
// for the six input pointers and reload them from the stack on every k.
#if defined(__GNUC__)
#define PYSOFIE_CONV_NOINLINE __attribute__((noinline))
#else
#define PYSOFIE_CONV_NOINLINE
#endif

namespace pysofie_conv {

constexpr long NP = 6;   // output positions per micro-tile
constexpr long NC = 16;  // output channels per micro-tile (weights packed in panels of NC)

// t[j * NC + c] (+)= sum_k w[k * NC + c] * xb[j][off[k]] for j < NP, c < NC; `first` starts from zero.
// PF: also prefetch the weights 32 k ahead (2 KiB), for weights that stream from L3 or memory (see conv_band).
template <bool PF = false>
PYSOFIE_CONV_NOINLINE inline void micro_6x16(long K, const float* __restrict w, const int32_t* __restrict off,
                                             const float* const* xb, float* __restrict t, bool first) {
#if defined(__AVX2__) && defined(__FMA__)
   const float *x0 = xb[0], *x1 = xb[1], *x2 = xb[2], *x3 = xb[3], *x4 = xb[4], *x5 = xb[5];
   __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
   if (first) {
      c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
   } else {
      c00 = _mm256_loadu_ps(t + 0);
      c01 = _mm256_loadu_ps(t + 8);
      c10 = _mm256_loadu_ps(t + 16);
      c11 = _mm256_loadu_ps(t + 24);
      c20 = _mm256_loadu_ps(t + 32);
      c21 = _mm256_loadu_ps(t + 40);
      c30 = _mm256_loadu_ps(t + 48);
      c31 = _mm256_loadu_ps(t + 56);
      c40 = _mm256_loadu_ps(t + 64);
      c41 = _mm256_loadu_ps(t + 72);
      c50 = _mm256_loadu_ps(t + 80);
      c51 = _mm256_loadu_ps(t + 88);
   }
   for (long k = 0; k < K; ++k, w += NC) {
      const long o = off[k];
      if constexpr (PF)  // an address only (no pointer past the weights' end): a prefetch never faults
         _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(w) + 32 * NC * sizeof(float)),
                      _MM_HINT_T0);
      const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
      __m256 a = _mm256_broadcast_ss(x0 + o);
      c00 = _mm256_fmadd_ps(a, w0, c00);
      c01 = _mm256_fmadd_ps(a, w1, c01);
      a = _mm256_broadcast_ss(x1 + o);
      c10 = _mm256_fmadd_ps(a, w0, c10);
      c11 = _mm256_fmadd_ps(a, w1, c11);
      a = _mm256_broadcast_ss(x2 + o);
      c20 = _mm256_fmadd_ps(a, w0, c20);
      c21 = _mm256_fmadd_ps(a, w1, c21);
      a = _mm256_broadcast_ss(x3 + o);
      c30 = _mm256_fmadd_ps(a, w0, c30);
      c31 = _mm256_fmadd_ps(a, w1, c31);
      a = _mm256_broadcast_ss(x4 + o);
      c40 = _mm256_fmadd_ps(a, w0, c40);
      c41 = _mm256_fmadd_ps(a, w1, c41);
      a = _mm256_broadcast_ss(x5 + o);
      c50 = _mm256_fmadd_ps(a, w0, c50);
      c51 = _mm256_fmadd_ps(a, w1, c51);
   }
   _mm256_storeu_ps(t + 0, c00);
   _mm256_storeu_ps(t + 8, c01);
   _mm256_storeu_ps(t + 16, c10);
   _mm256_storeu_ps(t + 24, c11);
   _mm256_storeu_ps(t + 32, c20);
   _mm256_storeu_ps(t + 40, c21);
   _mm256_storeu_ps(t + 48, c30);
   _mm256_storeu_ps(t + 56, c31);
   _mm256_storeu_ps(t + 64, c40);
   _mm256_storeu_ps(t + 72, c41);
   _mm256_storeu_ps(t + 80, c50);
   _mm256_storeu_ps(t + 88, c51);
#else
   float acc[NP * NC];
   for (long i = 0; i < NP * NC; ++i) acc[i] = first ? 0.f : t[i];
   for (long k = 0; k < K; ++k, w += NC)
      for (long j = 0; j < NP; ++j) {
         const float a = xb[j][off[k]];
         for (long c = 0; c < NC; ++c) acc[j * NC + c] += a * w[c];
      }
   std::copy(acc, acc + NP * NC, t);
#endif
}

// Fused activations of the kernels' epilogues: a scalar call, and (with AVX) one on 8 lanes.
struct ActNone {
   float operator()(float v) const { return v; }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const { return v; }
#endif
};
struct ActRelu {
   float operator()(float v) const { return std::max(v, 0.f); }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const { return _mm256_max_ps(_mm256_setzero_ps(), v); }  // NaN: the second operand
#endif
};
struct ActSigmoid {
   float operator()(float v) const { return 1.f / (1.f + std::exp(-v)); }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const { return pysofie_vm::sigmoid8(v); }
#endif
};
struct ActTanh {
   float operator()(float v) const { return std::tanh(v); }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const { return pysofie_vm::tanh8(v); }
#endif
};
struct ActGelu {
   float operator()(float v) const { return pysofie_vm::gelu(v); }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const { return pysofie_vm::gelu8(v); }
#endif
};
struct ActGeluTanh {
   float operator()(float v) const { return pysofie_vm::gelu_tanh(v); }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const { return pysofie_vm::gelu_tanh8(v); }
#endif
};
struct ActLeakyRelu {
   float alpha;
   float operator()(float v) const { return v < 0.f ? alpha * v : v; }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const {
      return _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(alpha)),
                              _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
   }
#endif
};
template <class F>
struct ActScalar {  // any other activation: the scalar function on each lane
   F f;
   float operator()(float v) const { return f(v); }
#if defined(__AVX2__) && defined(__FMA__)
   __m256 vec(__m256 v) const {
      alignas(32) float t[8];
      _mm256_store_ps(t, v);
      for (float& e : t) e = f(e);
      return _mm256_load_ps(t);
   }
#endif
};
template <class F>
ActScalar<F> act_scalar(F f) {
   return ActScalar<F>{f};
}

// y[m * ystride + (yidx ? yidx[q] : q)] = act(acc + bias[m] (+ res[same index])) for the output positions
// b0 <= q < b1 of a band, from accumulators laid out [m / NC][q - b0][m % NC] (blk floats per channel block).
// g++ 12 at -O3 warns (-Waggressive-loop-optimizations) that some far iteration of the scalar tail loops would
// overflow an index: it cannot bound M and b1 - b0 where conv_indirect is not inlined into a caller with constants.
// Those iterations never run (b1 - b0 <= BAND, M = output channels); ASan runs of the models are clean.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
template <class Act>
void store_band(const float* acc, long blk, long b0, long b1, const int32_t* yidx, long M, const float* bias,
                float* y, long ystride, Act act, const float* res = nullptr) {
   long m0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
   // 8 channels x 8 positions at a time: bias and activation on channel lanes, then an 8x8 transpose
   for (; m0 + 8 <= M; m0 += 8) {
      const float* am = acc + (m0 / NC) * blk + m0 % NC;
      const __m256 bv = bias ? _mm256_loadu_ps(bias + m0) : _mm256_setzero_ps();
      long q = b0;
      for (; q + 8 <= b1; q += 8) {
         const float* a = am + (q - b0) * NC;
         __m256 c[8];
         for (int k = 0; k < 8; ++k) c[k] = _mm256_add_ps(_mm256_loadu_ps(a + k * NC), bv);
         pysofie_tr::transpose8(c);  // c[i]: channel m0 + i at the 8 positions
         for (long i = 0; i < 8; ++i) {
            if (res) c[i] = _mm256_add_ps(c[i], _mm256_loadu_ps(res + (m0 + i) * ystride + q));
            c[i] = act.vec(c[i]);
         }
         if (yidx) {
            alignas(32) float t[8];
            for (long i = 0; i < 8; ++i) {
               _mm256_store_ps(t, c[i]);
               float* ym = y + (m0 + i) * ystride;
               for (long j = 0; j < 8; ++j) ym[yidx[q + j]] = t[j];
            }
         } else {
            for (long i = 0; i < 8; ++i) _mm256_storeu_ps(y + (m0 + i) * ystride + q, c[i]);
         }
      }
      for (long i = 0; i < 8; ++i) {  // the last positions of the band
         const float bm = bias ? bias[m0 + i] : 0.f;
         float* ym = y + (m0 + i) * ystride;
         const float* rm = res ? res + (m0 + i) * ystride : nullptr;
         for (long p = q; p < b1; ++p) {
            const long o = yidx ? yidx[p] : p;
            ym[o] = act(am[(p - b0) * NC + i] + bm + (rm ? rm[o] : 0.f));
         }
      }
   }
#endif
   for (long m = m0; m < M; ++m) {
      const float bm = bias ? bias[m] : 0.f;
      const float* am = acc + (m / NC) * blk + m % NC;
      float* ym = y + m * ystride;
      const float* rm = res ? res + m * ystride : nullptr;
      if (yidx) {
         for (long q = b0; q < b1; ++q) ym[yidx[q]] = act(am[(q - b0) * NC] + bm + (rm ? rm[yidx[q]] : 0.f));
      } else if (rm) {
         for (long q = b0; q < b1; ++q) ym[q] = act(am[(q - b0) * NC] + bm + rm[q]);
      } else {
         for (long q = b0; q < b1; ++q) ym[q] = act(am[(q - b0) * NC] + bm);
      }
   }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// output positions whose accumulators (BAND x Mpad) stay in cache; the generator sizes the accumulator scratch
// for it (backends/cpp/ops/conv.py: acc_floats)
constexpr long BAND = 64 * NP;
#ifndef PYSOFIE_CONV_KCHUNK
#define PYSOFIE_CONV_KCHUNK 192
#endif
constexpr long KCHUNK = PYSOFIE_CONV_KCHUNK;  // reduction indices per chunk: 16 x 192 packed weights = 12 KiB
constexpr long TP = NP;  // output positions per tile of conv_band, with either kernel
// AVX-512: output-channel blocks per micro-kernel call (two 16-channel panels at once)
constexpr long NB = 2;

// Floats of accumulator scratch that conv_indirect needs for Mp (padded) output channels.
constexpr long acc_size(long P, long Mp) { return std::min(BAND, (P + NP - 1) / NP * NP) * Mp; }

// One band of output positions b0 <= q < b1 and the channel blocks ib0 <= ib < ib1 of conv_indirect (acc: room
// for that band and those blocks).
template <class Act>
void conv_band(long b0, long b1, long ib0, long ib1, long P, const int32_t* pos, const int32_t* yidx,
               const float* xp, long K, const int32_t* off, const float* wp, long M, const float* bias, float* y,
               long ystride, float* acc, Act act, const float* res) {
   const long ntile = (b1 - b0 + TP - 1) / TP;
   const long blk = ntile * TP * NC;
   // ibout (channel blocks outermost, below; AVX2): a block's weights are one stream, read first by tile 0, which
   // prefetches them ahead (ResNet-18's 512-channel 7x7 layers, weights from memory: 2.6 -> 2.3 ms, CPU time)
   [[maybe_unused]] bool ibout = false;
   auto tiles = [&](long ib, long k0) {
      const long kn = std::min(KCHUNK, K - k0);
      const float* wb = wp + (ib * K + k0) * NC;
      float* ab = acc + (ib - ib0) * blk;
      for (long t = 0; t < ntile; ++t) {
         const float* xb[TP];
         for (long j = 0; j < TP; ++j) xb[j] = xp + pos[std::min(b0 + t * TP + j, P - 1)];
         float* at = ab + t * TP * NC;
#if defined(__AVX512F__)
         if (ib + 1 < ib1) micro_avx512<TP, NB>(kn, wb, K * NC, off + k0, xb, at, blk, k0 == 0);
         else micro_avx512<TP, 1>(kn, wb, K * NC, off + k0, xb, at, blk, k0 == 0);
#else
         if (ibout && t == 0) micro_6x16<true>(kn, wb, off + k0, xb, at, k0 == 0);
         else micro_6x16(kn, wb, off + k0, xb, at, k0 == 0);
#endif
      }
   };
#if defined(__AVX512F__)
   constexpr long step = NB;
   constexpr long few_tiles = 0;
#else
   constexpr long step = 1;
   // AVX2: also for bands of at most 12 tiles (ResNet-18's 128- and 256-channel Winograd products, 9 and 3 tiles:
   // 8-15 % faster, CPU time); their accumulators are small either way, and the weights come as one stream
   constexpr long few_tiles = 12;
#endif
   // Large weights (at least PYSOFIE_CONV_IBOUT floats, 1 MiB, for these blocks: they come from L3 or memory):
   // channel blocks outermost, each block's packed weights read as one sequential stream while the band's input
   // stays in L2 (AVX-512: 6-11% faster on the 512-channel 7x7 and the 256 -> 512 stride-2 layers of ResNet-18;
   // AVX2: the 512-channel 7x7 Winograd products ~30 % faster). Smaller weights: reduction chunks outermost
   // (ResNet-18's other Winograd products). Every output's sum runs over the chunks in the same order either way.
#ifndef PYSOFIE_CONV_IBOUT
#define PYSOFIE_CONV_IBOUT (1L << 18)
#endif
   if (K * (ib1 - ib0) * NC >= PYSOFIE_CONV_IBOUT || (few_tiles > 0 && ntile <= few_tiles)) {
      ibout = true;
      for (long ib = ib0; ib < ib1; ib += step)
         for (long k0 = 0; k0 < K || k0 == 0; k0 += KCHUNK) {
            tiles(ib, k0);
            if (K == 0) break;
         }
   } else {
      for (long k0 = 0; k0 < K || k0 == 0; k0 += KCHUNK) {
         for (long ib = ib0; ib < ib1; ib += step) tiles(ib, k0);
         if (K == 0) break;
      }
   }
   const long m0 = ib0 * NC;
   store_band(acc, blk, b0, b1, yidx, std::min(M, ib1 * NC) - m0, bias ? bias + m0 : nullptr,
              y + m0 * ystride, ystride, act, res ? res + m0 * ystride : nullptr);
}

// y[m * ystride + (yidx ? yidx[q] : q)] = act(bias[m] + sum_k W[m, k] * xp[pos[q] + off[k]] (+ res[same index]))
// for m < M, q < P.
// wp: weights packed as [Mp / NC][K][NC] (zero rows pad M to Mp); bias may be null; acc: acc_size(P, Mp) floats
// for each thread of the pool (thread t's at acc + t * acc_stride). With a pool, the tasks are bands of output
// positions times groups of channel blocks (more groups when there are few bands); every output is computed as
// with one thread.
template <class Act>
void conv_indirect(long P, const int32_t* pos, const int32_t* yidx, const float* xp, long K, const int32_t* off,
                   const float* wp, long M, long Mp, const float* bias, float* y, long ystride, float* acc, Act act,
                   const float* res = nullptr, pysofie_par::Pool* pool = nullptr, long acc_stride = 0) {
   const long nblk = Mp / NC;
   const long nband = (P + BAND - 1) / BAND;
   const long threads = pool ? pool->size() : 1;
   long groups = 1;  // channel-block groups per band
   while (threads > 1 && nband * groups < 4 * threads && groups < nblk) ++groups;
   const long per = (nblk + groups - 1) / groups;
   groups = (nblk + per - 1) / per;
   auto task = [&](long t, int tid) {
      const long b0 = (t / groups) * BAND, ib0 = (t % groups) * per;
      conv_band(b0, std::min(P, b0 + BAND), ib0, std::min(nblk, ib0 + per), P, pos, yidx, xp, K, off, wp, M, bias,
                y, ystride, acc + tid * acc_stride, act, res);
   };
   if (threads > 1) {
      pool->run(nband * groups, task);
   } else {
      for (long t = 0; t < nband; ++t) task(t, 0);
   }
}


// Few output channels (MR <= 4): vectors run along an output row instead (8 consecutive positions per AVX
// register, NV registers per channel), reading the input with unit stride; weights packed [K][MR].
// out[r * ldo + j] = sum_k w[k * MR + r] * x[off[k] + j] for r < MR, j < 8 * NV.
template <int MR, int NV>
PYSOFIE_CONV_NOINLINE void micro_rows(long K, const float* __restrict w, const int32_t* __restrict off,
                                      const float* __restrict x, float* __restrict out, long ldo) {
#if defined(__AVX2__) && defined(__FMA__)
   __m256 acc[MR][NV];
   for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_setzero_ps();
   for (long k = 0; k < K; ++k, w += MR) {
      const float* xk = x + off[k];
      __m256 v[NV];
      for (int j = 0; j < NV; ++j) v[j] = _mm256_loadu_ps(xk + 8 * j);
      for (int r = 0; r < MR; ++r) {
         const __m256 b = _mm256_broadcast_ss(w + r);
         for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_fmadd_ps(b, v[j], acc[r][j]);
      }
   }
   for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NV; ++j) _mm256_storeu_ps(out + r * ldo + 8 * j, acc[r][j]);
#else
   float acc[MR][8 * NV] = {};
   for (long k = 0; k < K; ++k, w += MR)
      for (int r = 0; r < MR; ++r)
         for (int j = 0; j < 8 * NV; ++j) acc[r][j] += w[r] * x[off[k] + j];
   for (int r = 0; r < MR; ++r) std::copy(acc[r], acc[r] + 8 * NV, out + r * ldo);
#endif
}

// conv_rows on one thread (see conv_rows).
template <int MR, int NV, class Act>
void conv_rows_serial(long OD, long OH, long OW, long sd, long sh, long Hp, long Wp, const float* xp, long K,
                      const int32_t* off, const float* wp, const float* bias, float* y, float* row, Act act) {
   constexpr long step = 8 * NV;
   const bool plane = sh == 1;
   const long run = plane ? OH * Wp : OW;
   const long rowlen = (run + step - 1) / step * step;
   for (long od = 0; od < OD; ++od)
      for (long oh = 0; oh < (plane ? 1 : OH); ++oh) {
         const float* xr = xp + ((od * sd) * Hp + oh * sh) * Wp;
         for (long j = 0; j < rowlen; j += step) micro_rows<MR, NV>(K, wp, off, xr + j, row + j, rowlen);
         for (int r = 0; r < MR; ++r) {
            const float b = bias ? bias[r] : 0.f;
            for (long h = plane ? 0 : oh; h < (plane ? OH : oh + 1); ++h) {
               float* yr = y + ((r * OD + od) * OH + h) * OW;
               const float* rr = row + r * rowlen + (plane ? h * Wp : 0);
               for (long j = 0; j < OW; ++j) yr[j] = act(rr[j] + b);
            }
         }
      }
}

// y[m][od][oh][ow] = act(bias[m] + sum_k W[m, k] * xp[((od * sd) * Hp + oh * sh) * Wp + ow + off[k]]) for the
// MR output channels, from a padded image xp that has at least 8 * NV floats of zeros past its end. With sh == 1
// the output rows of a plane are computed as one run of OH * Wp positions (the Wp - OW positions past each row
// end are computed and dropped), else row by row. row: scratch of MR * rowlen floats, rowlen = the run length
// (OH * Wp or OW) rounded up to 8 * NV, for each thread of the pool (thread t's at row + t * row_stride). With a
// pool, a plane's run is cut into pieces of 8 * NV positions, or the rows of a plane are spread over the threads.
template <int MR, int NV, class Act>
void conv_rows(long OD, long OH, long OW, long sd, long sh, long Hp, long Wp, const float* xp, long K,
               const int32_t* off, const float* wp, const float* bias, float* y, float* row, Act act,
               pysofie_par::Pool* pool = nullptr, long row_stride = 0) {
   constexpr long step = 8 * NV;
   const bool plane = sh == 1;
   const long run = plane ? OH * Wp : OW;
   const long rowlen = (run + step - 1) / step * step;
   if (!pool || pool->size() == 1) {
      // one thread: the plain loops, in a function of their own (with the threaded code below in the same
      // function, GCC 12 made the one-thread path 2.4x slower on Conv3d_d32_L4_B1's layers, measured)
      conv_rows_serial<MR, NV>(OD, OH, OW, sd, sh, Hp, Wp, xp, K, off, wp, bias, y, row, act);
      return;
   }
   // rows h0 <= h < h1 of plane od from the run(s) in rr (row h's at rr + (plane ? h * Wp : 0))
   auto store = [&](long od, long h0, long h1, const float* rr) {
      for (int r = 0; r < MR; ++r) {
         const float b = bias ? bias[r] : 0.f;
         for (long h = h0; h < h1; ++h) {
            float* yr = y + ((r * OD + od) * OH + h) * OW;
            const float* rh = rr + r * rowlen + (plane ? h * Wp : 0);
            for (long j = 0; j < OW; ++j) yr[j] = act(rh[j] + b);
         }
      }
   };
   for (long od = 0; od < OD; ++od) {
      if (plane) {
         const float* xr = xp + (od * sd) * Hp * Wp;
         pool->run_range(rowlen / step, 1, [&](long s0, long s1, int) {
            for (long j = s0 * step; j < s1 * step; j += step)
               micro_rows<MR, NV>(K, wp, off, xr + j, row + j, rowlen);
         });
         pool->run_range(OH, 1, [&](long h0, long h1, int) { store(od, h0, h1, row); });
      } else {
         pool->run_range(OH, 1, [&](long h0, long h1, int tid) {
            float* rt = row + tid * row_stride;
            for (long oh = h0; oh < h1; ++oh) {
               const float* xr = xp + ((od * sd) * Hp + oh * sh) * Wp;
               for (long j = 0; j < rowlen; j += step) micro_rows<MR, NV>(K, wp, off, xr + j, rt + j, rowlen);
               store(od, oh, oh + 1, rt);
            }
         });
      }
   }
}

// Copy one image (C x D x H x W) into a zero-padded one (C x Dp x Hp x Wp), begin pads pd, ph, pw: only the
// border is written with zeros.
inline void pad_image(const float* x, long C, long D, long H, long W, long pd, long ph, long pw, long Dp, long Hp,
                      long Wp, float* xp) {
   const long plane = Hp * Wp;
   for (long c = 0; c < C; ++c) {
      float* xc = xp + c * Dp * plane;
      std::fill(xc, xc + pd * plane, 0.f);
      for (long d = 0; d < D; ++d) {
         float* xd = xc + (d + pd) * plane;
         std::fill(xd, xd + ph * Wp, 0.f);
         for (long h = 0; h < H; ++h) {
            float* row = xd + (h + ph) * Wp;
            const float* src = x + ((c * D + d) * H + h) * W;
            std::fill(row, row + pw, 0.f);
            std::copy(src, src + W, row + pw);
            std::fill(row + pw + W, row + Wp, 0.f);
         }
         std::fill(xd + (H + ph) * Wp, xd + plane, 0.f);
      }
      std::fill(xc + (D + pd) * plane, xc + Dp * plane, 0.f);
   }
}

// pad_image with the channels spread over the threads of a pool.
inline void pad_image(pysofie_par::Pool& pool, const float* x, long C, long D, long H, long W, long pd, long ph,
                      long pw, long Dp, long Hp, long Wp, float* xp) {
   pool.run_range(C, 1, [&](long c0, long c1, int) {
      pad_image(x + c0 * D * H * W, c1 - c0, D, H, W, pd, ph, pw, Dp, Hp, Wp, xp + c0 * Dp * Hp * Wp);
   });
}

}  // namespace pysofie_conv

#endif  // PYSOFIE_CONV_H
