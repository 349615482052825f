// pysofie dense-layer kernel: C = A * B (+ bias, + activation) for a constant B packed at generation time
// (passes.gemm_pack.PackGemmWeights), register-blocked for AVX2/FMA with a portable scalar fallback; with AVX-512F
// the 12 x 32 tiles of pysofie_gemm512.h (same packed layout).
//
// Packed B: the K x N matrix cut into panels of NR = 16 columns (the last one 8 wide when at most 8 columns
// remain), each panel k-major (row k of a panel: its columns at k); zeros pad the last panel. Panel p starts at
// element p * 16 * K. The bias (when any) is padded with zeros to a multiple of 16 entries.
#ifndef PYSOFIE_GEMM_H
#define PYSOFIE_GEMM_H

#include <algorithm>
#include <cmath>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#ifndef PYSOFIE_THREADS_H  // generated files inline these before this header
#include "pysofie_threads.h"
#endif
#ifndef PYSOFIE_VMATH_H
#include "pysofie_vmath.h"
#endif
#ifndef PYSOFIE_GEMM512_H
#include "pysofie_gemm512.h"  // the AVX-512 micro-kernel (empty without AVX-512F)
#endif

namespace pysofie_gemm {

constexpr long MR = 6;    // rows of C per micro-tile
constexpr long NR = 16;   // columns of C per micro-tile (a panel of packed B)
constexpr long KC = 256;  // reduction block: a 16-column panel block (16 KiB) stays in L1
constexpr long NC = 512;  // column block: KC x NC of packed B (512 KiB) stays in L2 while A rows stream
constexpr long MC = 96;   // row block: 96 x KC of A (96 KiB) stays in L2 while the panels of B pass

#if defined(__AVX512F__)
constexpr long MT = MR512;  // rows per tile of gemm_block: row blocks and thread chunks are multiples of it
#else
constexpr long MT = MR;
#endif

enum Act { NONE = 0, RELU = 1, LEAKY = 2, SIGMOID = 3, TANH = 4, GELU = 5, GELU_TANH = 6 };
#if defined(__AVX512F__)
static_assert(ACT512_RELU == RELU && ACT512_LEAKY == LEAKY && ACT512_GELU == GELU && ACT512_GELU_TANH == GELU_TANH,
              "pysofie_gemm512.h's activation codes");
#endif

// One micro-tile: c[r * ldc + j] for r < R, j < nv <= 8 * NV (masked when nv < 8 * NV), from
// kc steps of A (element (r, k) at a[r * rs + k * cs]) and a packed panel b (8 * NV floats per k). load: add to
// the values in c; epi: add bias[j] and apply Relu / LeakyRelu (the others are applied by the caller on the
// stored tile); GELU in both forms too. PF: also prefetch (into L2), per k, the line at pf + k * pfs while
// k * pfs < pfn (the next panel's k block: see gemm_block).
template <int R, int NV, bool PF = false>
inline void tile(long kc, const float* __restrict a, long rs, long cs, const float* __restrict b,
                 float* __restrict c, long ldc, long nv, bool load, bool epi, const float* __restrict bias, int act,
                 float slope, const float* pf = nullptr, long pfs = 0, long pfn = 0) {
#if defined(__AVX2__) && defined(__FMA__)
   // named accumulators (x<row><vector>), not an array, so that they live in registers
#define PG_EACH(OP) OP(0, 0) OP(0, 1) OP(1, 0) OP(1, 1) OP(2, 0) OP(2, 1) OP(3, 0) OP(3, 1) OP(4, 0) OP(4, 1) \
   OP(5, 0) OP(5, 1)
#define PG_DECL(r, v) __m256 x##r##v = _mm256_setzero_ps();
#define PG_LOAD(r, v) \
   if constexpr (R > r && NV > v) x##r##v = _mm256_loadu_ps(c + r * ldc + 8 * v);
#define PG_LOADM(r, v) \
   if constexpr (R > r && NV > v) x##r##v = _mm256_maskload_ps(c + r * ldc + 8 * v, m##v);
#define PG_STOREM(r, v) \
   if constexpr (R > r && NV > v) { \
      if (nv >= 8 * (v + 1)) { \
         _mm256_storeu_ps(c + r * ldc + 8 * v, x##r##v); \
      } else if (nv > 8 * v) { \
         _mm256_storeu_ps(part, x##r##v); \
         std::copy(part, part + (nv - 8 * v), c + r * ldc + 8 * v); \
      } \
   }
#define PG_FMA(r, v) \
   if constexpr (R > r && NV > v) x##r##v = _mm256_fmadd_ps(_mm256_broadcast_ss(ar##r + k * cs), b##v, x##r##v);
#define PG_FMA1(r, v) \
   if constexpr (R > r && NV > v) x##r##v = _mm256_fmadd_ps(_mm256_broadcast_ss(ar##r + k), b##v, x##r##v);
#define PG_QEACH(OP) OP(0, 0) OP(0, 1) OP(1, 0) OP(1, 1) OP(2, 0) OP(2, 1) OP(3, 0) OP(3, 1)
#define PG_QDECL(t, v) __m256 q##t##v = _mm256_setzero_ps();
#define PG_QFMA(t, v) \
   if constexpr (NV > v) \
      q##t##v = _mm256_fmadd_ps(_mm256_broadcast_ss(a + (t % R) * rs + (k + t / R) * cs), \
                                _mm256_loadu_ps(b + (k + t / R) * 8 * NV + 8 * v), q##t##v);
#define PG_QSUM(t, v) \
   if constexpr (NV > v) { \
      if constexpr (t % R == 0) x0##v = _mm256_add_ps(x0##v, q##t##v); \
      else x1##v = _mm256_add_ps(x1##v, q##t##v); \
   }
#define PG_BIAS(r, v) \
   if constexpr (R > r && NV > v) x##r##v = _mm256_add_ps(x##r##v, bb##v);
#define PG_RELU(r, v) \
   if constexpr (R > r && NV > v) x##r##v = _mm256_max_ps(z, x##r##v);  // NaN stays NaN, as std::max(v, 0)
#define PG_LEAKY(r, v) \
   if constexpr (R > r && NV > v) \
      x##r##v = _mm256_blendv_ps(x##r##v, _mm256_mul_ps(x##r##v, s), _mm256_cmp_ps(x##r##v, z, _CMP_LT_OQ));
#define PG_GELU(r, v) \
   if constexpr (R > r && NV > v) x##r##v = pysofie_vm::gelu8(x##r##v);
#define PG_GELUT(r, v) \
   if constexpr (R > r && NV > v) x##r##v = pysofie_vm::gelu_tanh8(x##r##v);
#define PG_STORE(r, v) \
   if constexpr (R > r && NV > v) _mm256_storeu_ps(c + r * ldc + 8 * v, x##r##v);
   const bool full = nv >= 8 * NV;
   const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
   const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nv)), lanes);
   const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nv) - 8), lanes);
   PG_EACH(PG_DECL)
   if (load) {
      if (full) {
         PG_EACH(PG_LOAD)
      } else {
         PG_EACH(PG_LOADM)
      }
   }
   const float* ar0 = a;
   const float* ar1 = a + (R > 1 ? 1 : 0) * rs;
   const float* ar2 = a + (R > 2 ? 2 : 0) * rs;
   const float* ar3 = a + (R > 3 ? 3 : 0) * rs;
   const float* ar4 = a + (R > 4 ? 4 : 0) * rs;
   const float* ar5 = a + (R > 5 ? 5 : 0) * rs;
   long k0 = 0;
   if constexpr (R <= 2) {
      // one or two rows: 2 * NV chains of dependent FMAs would wait on the FMA latency; independent partial
      // sums over S consecutive k (slot t: row t % R, k offset t / R) keep both FMA pipes busy
      constexpr long S = 4 / R;
      k0 = kc / S * S;
      PG_QEACH(PG_QDECL)
      for (long k = 0; k < k0; k += S) {
         PG_QEACH(PG_QFMA)
      }
      PG_QEACH(PG_QSUM)
   }
#define PG_PF \
   if constexpr (PF) { \
      if (k * pfs < pfn) _mm_prefetch(reinterpret_cast<const char*>(pf + k * pfs), _MM_HINT_T1); \
   }
   if (cs == 1) {
      for (long k = k0; k < kc; ++k) {
         PG_PF
         const __m256 b0 = _mm256_loadu_ps(b + k * 8 * NV);
         const __m256 b1 = NV > 1 ? _mm256_loadu_ps(b + k * 8 * NV + 8) : b0;
         PG_EACH(PG_FMA1)
      }
   } else {
      for (long k = k0; k < kc; ++k) {
         PG_PF
         const __m256 b0 = _mm256_loadu_ps(b + k * 8 * NV);
         const __m256 b1 = NV > 1 ? _mm256_loadu_ps(b + k * 8 * NV + 8) : b0;
         PG_EACH(PG_FMA)
      }
   }
   if (epi) {
      if (bias) {
         const __m256 bb0 = _mm256_loadu_ps(bias);
         const __m256 bb1 = NV > 1 ? _mm256_loadu_ps(bias + 8) : bb0;
         PG_EACH(PG_BIAS)
      }
      const __m256 z = _mm256_setzero_ps();
      if (act == RELU) {
         PG_EACH(PG_RELU)
      } else if (act == LEAKY) {
         const __m256 s = _mm256_set1_ps(slope);
         PG_EACH(PG_LEAKY)
      } else if (act == GELU) {
         PG_EACH(PG_GELU)
      } else if (act == GELU_TANH) {
         PG_EACH(PG_GELUT)
      }
   }
   if (full) {
      PG_EACH(PG_STORE)
   } else {  // masked stores are slow on AMD Zen: partial rows through a small buffer
      float part[8];
      PG_EACH(PG_STOREM)
   }
#undef PG_EACH
#undef PG_DECL
#undef PG_LOAD
#undef PG_FMA
#undef PG_FMA1
#undef PG_BIAS
#undef PG_RELU
#undef PG_LEAKY
#undef PG_GELU
#undef PG_GELUT
#undef PG_STORE
#undef PG_LOADM
#undef PG_QEACH
#undef PG_QDECL
#undef PG_QFMA
#undef PG_QSUM
#undef PG_STOREM
#undef PG_PF
#else
   (void)pf;  // nothing to prefetch for the portable loops
   (void)pfs;
   (void)pfn;
   constexpr int W = 8 * NV;
   const long w = std::min<long>(nv, W);
   float acc[R][W];
   for (int r = 0; r < R; ++r)
      for (int j = 0; j < W; ++j) acc[r][j] = load && j < w ? c[r * ldc + j] : 0.f;
   for (long k = 0; k < kc; ++k, b += W) {
      for (int r = 0; r < R; ++r) {
         const float av = a[r * rs + k * cs];
         for (int j = 0; j < W; ++j) acc[r][j] += av * b[j];
      }
   }
   if (epi) {
      for (int r = 0; r < R; ++r)
         for (int j = 0; j < W; ++j) {
            float x = acc[r][j] + (bias ? bias[j] : 0.f);
            if (act == RELU) x = std::max(x, 0.f);
            else if (act == LEAKY) x = x < 0.f ? slope * x : x;
            else if (act == GELU) x = pysofie_vm::gelu(x);
            else if (act == GELU_TANH) x = pysofie_vm::gelu_tanh(x);
            acc[r][j] = x;
         }
   }
   for (int r = 0; r < R; ++r)
      for (int j = 0; j < w; ++j) c[r * ldc + j] = acc[r][j];
#endif
}

template <int NV>
inline void tile_rows(long mr, long kc, const float* a, long rs, long cs, const float* b, float* c, long ldc,
                      long nv, bool load, bool epi, const float* bias, int act, float slope) {
   switch (mr) {
      case 6: tile<6, NV>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bias, act, slope); break;
      case 5: tile<5, NV>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bias, act, slope); break;
      case 4: tile<4, NV>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bias, act, slope); break;
      case 3: tile<3, NV>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bias, act, slope); break;
      case 2: tile<2, NV>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bias, act, slope); break;
      default: tile<1, NV>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bias, act, slope); break;
   }
}

inline float act_scalar(float x, int act, float slope) {
   switch (act) {
      case RELU: return std::max(x, 0.f);
      case LEAKY: return x < 0.f ? slope * x : x;
      case SIGMOID: return 1.f / (1.f + std::exp(-x));
      case TANH: return std::tanh(x);
      case GELU: return pysofie_vm::gelu(x);
      case GELU_TANH: return pysofie_vm::gelu_tanh(x);
      default: return x;
   }
}

// the activations that the tiles leave to a scalar pass (sigmoid, tanh) on an mr x nv block of C
inline void scalar_act(long mr, long nv, float* c, long ldc, int act, float slope) {
   if (act != SIGMOID && act != TANH) return;
   for (long r = 0; r < mr; ++r)
      for (long t = 0; t < nv; ++t) c[r * ldc + t] = act_scalar(c[r * ldc + t], act, slope);
}

// Rows i0 <= i < i1 and columns j0 <= j < j1 (j0 a multiple of NR) of gemm_packed, K blocks of kcb.
// next / next_n: the packed weights the caller multiplies by next (e.g. the next layer of a chain), prefetched
// while the last pair of columns runs (nullptr: none).
inline void gemm_block(long i0b, long i1b, long j0b, long j1b, long N, long K, long kcb, const float* A, long rs,
                       long cs, const float* Bp, float* C, long ldc, bool accumulate, const float* bias, int act,
                       float slope, const float* next = nullptr, long next_n = 0) {
   for (long j0 = j0b; j0 < j1b; j0 += NC) {
      const long j1 = std::min(j1b, j0 + NC);
      for (long k0 = 0; k0 < K; k0 += kcb) {
         const long kc = std::min(kcb, K - k0);
         const bool load = accumulate || k0 > 0, epi = k0 + kc >= K;
         const int vact = epi ? act : NONE;
         for (long i0 = i0b; i0 < i1b; i0 += MC) {
            const long i1 = std::min(i1b, i0 + MC);
            // a panel of B (KC x 16: 16 KiB) stays in L1 while the row tiles of A's block (in L2) pass; the other
            // order would need the whole KC x NC block of B in L2, and streams it from memory when it is not
#if defined(__AVX512F__)
            // AVX-512: two consecutive panels (32 columns) per tile when both lie in this column block and the
            // second is 16 wide; an 8 wide last panel goes to the 8-lane tiles (Zen 4 runs a 16-lane FMA as two
            // 8-lane halves: a pair with a masked 8-wide half spends a quarter of its FMAs on zeros; 8-12 % faster
            // on 16..64 x 50 x 50 layers)
            for (long j = j0; j < j1;) {
               const long nv0 = std::min(NR, N - j);
               const bool pair = nv0 == NR && j + NR < j1 && N - j - NR > NR / 2;
               const long nv1 = pair ? std::min(NR, N - j - NR) : nv0;
               const long w1 = nv1 <= 8 ? 8 : 16;  // packed width of the tile's last panel
               const long nv = pair ? NR + nv1 : nv0;
               const float* b0 = Bp + j * K + k0 * (pair ? NR : w1);
               const float* b1 = pair ? Bp + (j + NR) * K + k0 * w1 : b0;
               const float* bj = bias ? bias + j : nullptr;
               // the first row tile of a pair pulls the next panels' k block into L1 while B streams from memory /
               // L3 (a weight matrix larger than the caches, e.g. a language-model head: ~4 % faster there): the
               // next pair; after the last pair, the last panel (8 or 16 wide) and the next product's first panel
               // (a chain of small layers whose weights come from L3 each call: a GNN's MLPs)
               Prefetch512 pf;
               if (pair) {
                  const long jn = j + 2 * NR;  // the panels after this pair
                  long t = 0;
                  for (long jp = jn; jp < std::min(N, jn + 2 * NR) && t < 2; jp += NR, ++t) {
                     const long w = N - jp <= NR / 2 ? NR / 2 : NR;
                     pf.p[t] = Bp + jp * K + k0 * w;
                     pf.stride[t] = w;
                     pf.n[t] = w * kc;
                  }
                  if (t < 2 && next && k0 + kc >= K) {
                     pf.p[t] = next;
                     pf.n[t] = std::min(NR * kc, next_n);
                     ++t;
                  }
               }
               for (long i = i0; i < i1; i += MT) {
                  const long mr = std::min(MT, i1 - i);
                  const float* a = A + i * rs + k0 * cs;
                  float* c = C + i * ldc + j;
                  if (pair) {
                     tile512_rows<2>(mr, kc, a, rs, cs, b0, b1, w1, c, ldc, nv, load, epi, bj, vact, slope,
                                     i == i0 && (pf.n[0] > 0 || pf.n[1] > 0) ? &pf : nullptr);
                  } else if (w1 == 16) {
                     tile512_rows<1>(mr, kc, a, rs, cs, b0, b1, w1, c, ldc, nv, load, epi, bj, vact, slope);
                  } else if (cs == 1) {  // an 8 wide last panel: 4 columns x 4 k per 16-lane FMA (rem512)
                     rem512_rows(mr, kc, a, rs, b0, c, ldc, nv, load, epi, bj, vact, slope);
                  } else {  // (A transposed) the 8-lane tiles do half the work of 16-lane ones
                     for (long r = 0; r < mr; r += MR)
                        tile_rows<1>(std::min(MR, mr - r), kc, a + r * rs, rs, cs, b0, c + r * ldc, ldc, nv, load,
                                     epi, bj, vact, slope);
                  }
                  if (epi) scalar_act(mr, nv, c, ldc, act, slope);
               }
               j += pair ? 2 * NR : NR;
            }
#else
            for (long j = j0; j < j1; j += NR) {
               const long nv = std::min(NR, N - j);  // valid columns of this panel
               const long wid = nv <= 8 ? 8 : 16;    // its packed width
               const float* b = Bp + j * K + k0 * wid;
               const float* bj = bias ? bias + j : nullptr;
               // with several row tiles per panel, the first prefetches the next panel's k block (one line per
               // k; into L2: into L1 it was slower), or after the last panel the next product's first one: weights
               // larger than the caches (a language-model head) otherwise come from memory at each panel's first
               // tile (64 x 256 x 8000, 24 x 256 x 8000: 3-20 % faster in interleaved A/B runs; cache-resident
               // shapes unchanged). One row tile streams the panels in order: the hardware prefetches them.
               const float* pf = nullptr;
               long pfs = NR, pfn = 0;
               const bool several_tiles = i1 - i0 > MR;
               if (several_tiles && j + NR < N) {
                  pfs = N - j - NR <= NR / 2 ? NR / 2 : NR;
                  pf = Bp + (j + NR) * K + k0 * pfs;
                  pfn = pfs * kc;
               } else if (several_tiles && next && k0 + kc >= K) {
                  pf = next;
                  pfn = std::min(NR * kc, next_n);
               }
               for (long i = i0; i < i1; i += MR) {
                  const long mr = std::min(MR, i1 - i);
                  const float* a = A + i * rs + k0 * cs;
                  float* c = C + i * ldc + j;
                  if (pf && i == i0 && mr == MR) {
                     if (wid == 16) tile<MR, 2, true>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bj, vact, slope, pf, pfs,
                                                       pfn);
                     else tile<MR, 1, true>(kc, a, rs, cs, b, c, ldc, nv, load, epi, bj, vact, slope, pf, pfs, pfn);
                  } else if (wid == 16) {
                     tile_rows<2>(mr, kc, a, rs, cs, b, c, ldc, nv, load, epi, bj, vact, slope);
                  } else {
                     tile_rows<1>(mr, kc, a, rs, cs, b, c, ldc, nv, load, epi, bj, vact, slope);
                  }
                  if (epi) scalar_act(mr, nv, c, ldc, act, slope);
               }
            }
#endif
         }
      }
   }
}

// C (M x N, row stride ldc) = A * Bp (+ C when accumulate) (+ bias) then act. A's element (i, k) is at
// A[i * rs + k * cs] (rs = lda, cs = 1 for A; rs = 1, cs = lda for A transposed). Bp: packed as described above.
// Loops: column blocks of NC, K blocks of KC, row blocks of MC (A's block stays in L2), then panels of NR columns,
// then MR x NR tiles. With a pool, blocks of rows x columns are tasks (narrower column blocks when there are
// few); the K blocking, and so every output's sum, is the same whatever the thread count. next (next_n floats):
// packed weights the caller multiplies by next, to prefetch while the last columns run, or nullptr.
inline void gemm_packed(long M, long N, long K, const float* A, long rs, long cs, const float* Bp, float* C,
                        long ldc, bool accumulate, const float* bias, int act, float slope,
                        pysofie_par::Pool* pool = nullptr, const float* next = nullptr, long next_n = 0) {
   if (M <= 0 || N <= 0) return;
   if (K <= 0) {
      for (long i = 0; i < M; ++i)
         for (long j = 0; j < N; ++j) {
            const float x = (accumulate ? C[i * ldc + j] : 0.f) + (bias ? bias[j] : 0.f);
            C[i * ldc + j] = act_scalar(x, act, slope);
         }
      return;
   }
   // one block of rows reads every panel of B once: no reuse for K blocks to keep in L1, no C reloads then
   const long kcb = M <= MT ? K : KC;
   const long threads = pool ? pool->size() : 1;
   // tiny products are not worth waking the threads
   if (threads == 1 || M * N * K < (1L << 15)) {
      gemm_block(0, M, 0, N, N, K, kcb, A, rs, cs, Bp, C, ldc, accumulate, bias, act, slope, next, next_n);
      return;
   }
   const long rb = (M + MC - 1) / MC;
   long cw = NC;  // column chunk (a multiple of NR)
   const long want = 4 * threads;
   if (rb * ((N + cw - 1) / cw) < want) {
      const long ncol = (want + rb - 1) / rb;
      cw = std::max(NR, ((N + ncol - 1) / ncol + NR - 1) / NR * NR);
   }
   long rh = MC;  // row chunk (a multiple of MT), smaller when the columns still give too few tasks
   const long cb = (N + cw - 1) / cw;
   if (rb * cb < want && M > MT) {
      const long nrow = (want + cb - 1) / cb;
      rh = std::max(MT, ((M + nrow - 1) / nrow + MT - 1) / MT * MT);
   }
   const long nr = (M + rh - 1) / rh;
   pool->run(nr * cb, [&](long t, int) {
      const long i0 = (t / cb) * rh, j0 = (t % cb) * cw;
      gemm_block(i0, std::min(M, i0 + rh), j0, std::min(N, j0 + cw), N, K, kcb, A, rs, cs, Bp, C, ldc, accumulate,
                 bias, act, slope, next, next_n);
   });
}

}  // namespace pysofie_gemm

#endif  // PYSOFIE_GEMM_H
