// pysofie recurrent-layer helpers: the gate activations of an RNN / GRU / LSTM step applied to a whole gate
// vector at once, in place. With AVX2 + FMA 8 lanes at a time (pysofie_vmath.h's exp8 / tanh8; a tail shorter
// than 8 goes through the same vector code on a zero-padded copy, so every element sees the same formula);
// otherwise the scalar std::exp / std::tanh forms. A per-element std::exp / std::tanh call was most of a small
// layer's time (an LSTM of hidden size 8 spends ~5 library calls per unit and step). And the per-step product
// of a small batch's state with the recurrent weights, row by row of R.
#ifndef PYSOFIE_RNN_H
#define PYSOFIE_RNN_H

#include <cmath>

namespace pysofie_rnn {

#if defined(__AVX2__) && defined(__FMA__)
// f applied to x[0, n) in place, 8 lanes at a time.
template <class F>
inline void apply8(float* x, long n, F f) {
   long j = 0;
   for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, f(_mm256_loadu_ps(x + j)));
   if (j < n) {
      alignas(32) float t[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      for (long k = j; k < n; ++k) t[k - j] = x[k];
      _mm256_store_ps(t, f(_mm256_load_ps(t)));
      for (long k = j; k < n; ++k) x[k] = t[k - j];
   }
}
#endif

// x = 1 / (1 + exp(-x)) on x[0, n)
inline void sigmoid(float* x, long n) {
#if defined(__AVX2__) && defined(__FMA__)
   apply8(x, n, [](__m256 v) { return pysofie_vm::sigmoid8(v); });
#else
   for (long j = 0; j < n; ++j) x[j] = 1.f / (1.f + std::exp(-x[j]));
#endif
}

// x = tanh(x) on x[0, n)
inline void tanh(float* x, long n) {
#if defined(__AVX2__) && defined(__FMA__)
   apply8(x, n, [](__m256 v) { return pysofie_vm::tanh8(v); });
#else
   for (long j = 0; j < n; ++j) x[j] = std::tanh(x[j]);
#endif
}

// y[n] = R[n, 0:K) . x[0:K) (+ add[n] when add is given) for n < N (R row-major with row stride K): a step's
// recurrent projections h_{t-1} R^T of one batch entry, straight from R (no per-call transposed copy), or the
// input projection W x_t + b of one time step. AVX2: 8 rows at a time, one
// accumulator per row over 8-wide chunks of K (a masked last chunk), the 8 sums reduced into one vector.
inline void matvec(const float* __restrict R, long N, long K, const float* __restrict x, float* __restrict y,
                   const float* __restrict add = nullptr) {
   long n = 0;
#if defined(__AVX2__) && defined(__FMA__)
   alignas(32) static const int kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
   const long kf = K & ~7L;
   const __m256i tail = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - (K - kf)));
   for (; n + 8 <= N; n += 8) {
      const float* r = R + n * K;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
      for (long k = 0; k < kf; k += 8) {
         const __m256 v = _mm256_loadu_ps(x + k);
         a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k), v, a0);
         a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r + K + k), v, a1);
         a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r + 2 * K + k), v, a2);
         a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r + 3 * K + k), v, a3);
         a4 = _mm256_fmadd_ps(_mm256_loadu_ps(r + 4 * K + k), v, a4);
         a5 = _mm256_fmadd_ps(_mm256_loadu_ps(r + 5 * K + k), v, a5);
         a6 = _mm256_fmadd_ps(_mm256_loadu_ps(r + 6 * K + k), v, a6);
         a7 = _mm256_fmadd_ps(_mm256_loadu_ps(r + 7 * K + k), v, a7);
      }
      if (kf < K) {
         const long k = kf;
         const __m256 v = _mm256_maskload_ps(x + k, tail);
         a0 = _mm256_fmadd_ps(_mm256_maskload_ps(r + k, tail), v, a0);
         a1 = _mm256_fmadd_ps(_mm256_maskload_ps(r + K + k, tail), v, a1);
         a2 = _mm256_fmadd_ps(_mm256_maskload_ps(r + 2 * K + k, tail), v, a2);
         a3 = _mm256_fmadd_ps(_mm256_maskload_ps(r + 3 * K + k, tail), v, a3);
         a4 = _mm256_fmadd_ps(_mm256_maskload_ps(r + 4 * K + k, tail), v, a4);
         a5 = _mm256_fmadd_ps(_mm256_maskload_ps(r + 5 * K + k, tail), v, a5);
         a6 = _mm256_fmadd_ps(_mm256_maskload_ps(r + 6 * K + k, tail), v, a6);
         a7 = _mm256_fmadd_ps(_mm256_maskload_ps(r + 7 * K + k, tail), v, a7);
      }
      // lanes of s0123: partial sums of rows 0..3 from the low halves, then from the high halves
      const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
      const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
      __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                                 _mm256_permute2f128_ps(s0123, s4567, 0x31));
      if (add) sum = _mm256_add_ps(sum, _mm256_loadu_ps(add + n));
      _mm256_storeu_ps(y + n, sum);
   }
   for (; n < N; ++n) {  // left-over rows: one vector accumulator each (a scalar sum would be one long chain)
      const float* r = R + n * K;
      __m256 a = _mm256_setzero_ps();
      for (long k = 0; k < kf; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(r + k), _mm256_loadu_ps(x + k), a);
      if (kf < K) a = _mm256_fmadd_ps(_mm256_maskload_ps(r + kf, tail), _mm256_maskload_ps(x + kf, tail), a);
      y[n] = pysofie_vm::hsum8(a) + (add ? add[n] : 0.f);
   }
#endif
   for (; n < N; ++n) {
      const float* r = R + n * K;
      float s = 0.f;
      for (long k = 0; k < K; ++k) s += r[k] * x[k];
      y[n] = s + (add ? add[n] : 0.f);
   }
}

}  // namespace pysofie_rnn

#endif  // PYSOFIE_RNN_H
