// pysofie_lowp.h: low-precision element types (float16, bfloat16, float8, float8e8m0, float4, int4/uint4,
// int2/uint2).
// Generated code stores them as bit patterns (uint16_t / uint8_t; the 4- and 2-bit types one element per byte,
// in its low bits) and converts through these functions. Inlined into generated code by pysofie only when a
// model uses such a type.
#ifndef PYSOFIE_LOWP_H
#define PYSOFIE_LOWP_H

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace pysofie_lp {

// A binary floating-point format with E exponent bits, M mantissa bits and the given bias. KIND says which
// special values it has:
//   0  IEEE-like: exponent all ones is Inf (mantissa 0) or NaN           float16, bfloat16, e5m2
//   1  "FN": no Inf, only the all-ones pattern (either sign) is NaN       e4m3fn
//   2  "FNUZ": no Inf, no -0, the pattern of -0 (sign bit only) is NaN    e4m3fnuz, e5m2fnuz
//   3  no Inf, no NaN                                                     e2m1 (float4)
template <int E, int M, int BIAS, int KIND>
struct FloatFormat {
   static constexpr uint32_t sign_bit = 1u << (E + M);
   static constexpr uint32_t exp_mask = (1u << E) - 1;
   static constexpr uint32_t man_mask = (1u << M) - 1;
   static constexpr uint32_t max_exp = KIND == 0 ? exp_mask - 1 : exp_mask;
   static constexpr uint32_t max_bits = (max_exp << M) | (KIND == 1 ? man_mask - 1 : man_mask);

   // Exact: every value of these formats is a float.
   static float decode(uint32_t b) {
      const bool neg = (b & sign_bit) != 0;
      const uint32_t e = (b >> M) & exp_mask, m = b & man_mask;
      const float nan = std::numeric_limits<float>::quiet_NaN();
      if (KIND == 2 && (b & (2 * sign_bit - 1)) == sign_bit) return -nan;  // its sign bit is set (as ml_dtypes)
      if (KIND == 0 && e == exp_mask) {
         const float inf = std::numeric_limits<float>::infinity();
         return m ? std::copysign(nan, neg ? -1.f : 1.f) : (neg ? -inf : inf);
      }
      if (KIND == 1 && e == exp_mask && m == man_mask) return std::copysign(nan, neg ? -1.f : 1.f);
      const float v = e == 0 ? std::ldexp(static_cast<float>(m), 1 - BIAS - M)
                             : std::ldexp(static_cast<float>(m | (1u << M)), static_cast<int>(e) - BIAS - M);
      return neg ? -v : v;
   }

   // Round to nearest, ties to even (one rounding from double: float and double sources are exact there).
   // Overflow: saturate -> the largest finite value; otherwise Inf (KIND 0) or NaN (KIND 1, 2). KIND 3 always
   // saturates and, having no NaN, maps NaN to a zero (of the opposite sign, as ml_dtypes does).
   static uint32_t encode(double x, bool saturate) {
      const uint32_t sign = std::signbit(x) ? sign_bit : 0u;
      uint32_t nan_bits = 0;
      if (KIND == 0) nan_bits = sign | (exp_mask << M) | (1u << (M - 1));
      if (KIND == 1) nan_bits = sign | (exp_mask << M) | man_mask;
      if (KIND == 2) nan_bits = sign_bit;
      if (KIND == 3) nan_bits = sign ^ sign_bit;
      if (std::isnan(x)) return nan_bits;
      uint32_t overflow;
      if (KIND == 3 || saturate) overflow = sign | max_bits;
      else if (KIND == 0) overflow = sign | (exp_mask << M);
      else overflow = nan_bits;
      const double a = std::fabs(x);
      const uint32_t zero = KIND == 2 ? 0u : sign;
      if (std::isinf(a)) return overflow;
      if (a == 0) return zero;
      int k = 0;
      (void)std::frexp(a, &k);  // a = f * 2^k, 0.5 <= f < 1
      int e = k - 1;
      if (e < 1 - BIAS) e = 1 - BIAS;  // subnormal range: fixed quantum
      const double r = std::ldexp(a, M - e);  // a in units of the quantum 2^(e - M): exact
      double n = std::floor(r);
      const double d = r - n;
      if (d > 0.5 || (d == 0.5 && std::fmod(n, 2.0) != 0)) n += 1;
      uint64_t q = static_cast<uint64_t>(n);  // 0 .. 2^(M+1)
      if (q == 0) return zero;
      if (q < (1u << M)) return sign | static_cast<uint32_t>(q);  // subnormal
      if (q == (2u << M)) {
         q >>= 1;
         ++e;
      }
      const int ef = e + BIAS;
      if (ef > static_cast<int>(max_exp)) return overflow;
      const uint32_t bits = (static_cast<uint32_t>(ef) << M) | (static_cast<uint32_t>(q) & man_mask);
      if (bits > max_bits) return overflow;
      return sign | bits;
   }
};

using F16 = FloatFormat<5, 10, 15, 0>;
using BF16 = FloatFormat<8, 7, 127, 0>;
using E4M3FN = FloatFormat<4, 3, 7, 1>;
using E4M3FNUZ = FloatFormat<4, 3, 8, 2>;
using E5M2 = FloatFormat<5, 2, 15, 0>;
using E5M2FNUZ = FloatFormat<5, 2, 16, 2>;
using E2M1 = FloatFormat<2, 1, 1, 3>;

// float8e8m0 (MX scales): an exponent only, value 2^(b - 127); 0xFF is NaN; no sign, no zero.
struct E8M0 {
   static float decode(uint32_t b) {
      b &= 0xFFu;
      if (b == 0xFFu) return std::numeric_limits<float>::quiet_NaN();
      return std::ldexp(1.0f, static_cast<int>(b) - 127);
   }
   // From the float's own exponent, rounded by mode (0 up, 1 down, 2 nearest) as onnx's reference
   // (numpy_helper.to_float8e8m0) does: NaN and Inf give NaN; the sign is ignored (negative input is unspecified).
   static uint32_t encode(float x, bool saturate, int mode) {
      uint32_t f = 0;
      std::memcpy(&f, &x, sizeof f);
      const uint32_t e = (f >> 23) & 0xFFu;
      if (e == 0xFFu) return 0xFFu;
      bool up = false;
      if (mode == 0) {
         up = (f & 0x7FFFFFu) != 0;
      } else if (mode == 2) {
         const bool g = (f & 0x400000u) != 0, r = (f & 0x200000u) != 0, s = (f & 0x1FFFFFu) != 0;
         up = g && (r || s || e > 0);
      }
      if (up && saturate && e == 0xFEu) up = false;
      return e + (up ? 1u : 0u);  // 0xFE rounded up without saturation: NaN
   }
};

// Two's complement / unsigned integers of BITS bits, one per byte in its low bits.
template <int BITS, bool SIGNED>
struct SmallInt {
   static constexpr uint32_t mask = (1u << BITS) - 1;
   static int decode(uint8_t b) {
      const int v = static_cast<int>(b & mask);
      return SIGNED && v >= (1 << (BITS - 1)) ? v - (1 << BITS) : v;
   }
   // From an integer: keep the low bits (as any narrowing integer cast).
   template <typename T>
   static uint8_t from_int(T v) {
      return static_cast<uint8_t>(static_cast<uint64_t>(v) & mask);
   }
   // From a float: truncate toward zero, then keep the low bits; NaN and Inf give 0 (as ml_dtypes does).
   static uint8_t from_float(double x) {
      if (!std::isfinite(x)) return 0;
      const double t = std::fmod(std::trunc(x), static_cast<double>(1u << BITS));
      return static_cast<uint8_t>(static_cast<uint64_t>(static_cast<int64_t>(t)) & mask);
   }
};

using I4 = SmallInt<4, true>;
using U4 = SmallInt<4, false>;
using I2 = SmallInt<2, true>;
using U2 = SmallInt<2, false>;

}  // namespace pysofie_lp

#endif  // PYSOFIE_LOWP_H
