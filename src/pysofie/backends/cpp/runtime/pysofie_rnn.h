// pysofie recurrent-layer helpers: the gate activations of an RNN / GRU / LSTM step applied to a whole gate
// vector at once, in place. With AVX2 + FMA 8 lanes at a time (pysofie_vmath.h's exp8 / tanh8; a tail shorter
// than 8 goes through the same vector code on a zero-padded copy, so every element sees the same formula);
// otherwise the scalar std::exp / std::tanh forms. A per-element std::exp / std::tanh call was most of a small
// layer's time (an LSTM of hidden size 8 spends ~5 library calls per unit and step).
#ifndef PYSOFIE_RNN_H
#define PYSOFIE_RNN_H

#include <cmath>

namespace pysofie_rnn {

#if defined(__AVX2__) && defined(__FMA__)
inline __m256 sigmoid8(__m256 x) {
   const __m256 one = _mm256_set1_ps(1.f);
   return _mm256_div_ps(one, _mm256_add_ps(one, pysofie_vm::exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

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
   apply8(x, n, [](__m256 v) { return sigmoid8(v); });
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

}  // namespace pysofie_rnn

#endif  // PYSOFIE_RNN_H
