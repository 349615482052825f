// pysofie runtime helpers: weight-file readers and the BLAS declarations that generated code uses.
// Inlined into every generated header; the guard lets several generated models share one translation unit.
#ifndef PYSOFIE_RUNTIME_H
#define PYSOFIE_RUNTIME_H

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

// BLAS: the CBLAS sgemm entry point. scipy-openblas32 (pysofie's default, from pip) prefixes its symbols
// with "scipy_"; define PYSOFIE_SGEMM to the name your BLAS exports (e.g. cblas_sgemm) to use another one.
#ifndef PYSOFIE_SGEMM
#define PYSOFIE_SGEMM scipy_cblas_sgemm
#endif
extern "C" void PYSOFIE_SGEMM(int order, int transA, int transB, int M, int N, int K, float alpha,
                              const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);

namespace pysofie_rt {

enum { RowMajor = 101, NoTrans = 111, Trans = 112 };

// Allocator of cache-line (64-byte) aligned storage: a Session's weights and buffers use it, so that vector loads
// of packed weights never straddle two cache lines.
template <typename T>
struct AlignedAllocator {
   using value_type = T;
   AlignedAllocator() noexcept = default;
   template <typename U>
   AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
   T* allocate(size_t n) {
      if (n > std::numeric_limits<size_t>::max() / sizeof(T)) throw std::bad_alloc();
      return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
   }
   void deallocate(T* p, size_t) noexcept { ::operator delete(p, std::align_val_t(64)); }
   template <typename U>
   bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
   template <typename U>
   bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};
template <typename T>
using avector = std::vector<T, AlignedAllocator<T>>;

// C = alpha * op(A) * op(B) + beta * C, row major.
inline void sgemm(bool transA, bool transB, size_t M, size_t N, size_t K, float alpha, const float* A,
                  size_t lda, const float* B, size_t ldb, float beta, float* C, size_t ldc) {
   if (M == 0 || N == 0) return;
   if (K == 0) {
      for (size_t i = 0; i < M; ++i)
         for (size_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
      return;
   }
   PYSOFIE_SGEMM(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, static_cast<int>(M),
                 static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
                 static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

// Generic matrix product for types without a BLAS routine (double, integers).
template <typename T>
inline void gemm_ref(bool transA, bool transB, size_t M, size_t N, size_t K, T alpha, const T* A, size_t lda,
                     const T* B, size_t ldb, T beta, T* C, size_t ldc) {
   for (size_t i = 0; i < M; ++i) {
      T* c = C + i * ldc;
      for (size_t j = 0; j < N; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
      for (size_t k = 0; k < K; ++k) {
         const T a = alpha * (transA ? A[k * lda + i] : A[i * lda + k]);
         if (!transB) {
            const T* b = B + k * ldb;
            for (size_t j = 0; j < N; ++j) c[j] += a * b[j];
         } else {
            for (size_t j = 0; j < N; ++j) c[j] += a * B[j * ldb + k];
         }
      }
   }
}
inline void gemm_ref(bool tA, bool tB, size_t M, size_t N, size_t K, float alpha, const float* A, size_t lda,
                     const float* B, size_t ldb, float beta, float* C, size_t ldc) {
   sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// CRC-32 (zlib polynomial), used to verify binary weight files.
inline uint32_t crc32(const unsigned char* data, size_t n, uint32_t crc = 0) {
   static uint32_t table[256];
   static bool init = false;
   if (!init) {
      for (uint32_t i = 0; i < 256; ++i) {
         uint32_t c = i;
         for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
         table[i] = c;
      }
      init = true;
   }
   crc = ~crc;
   for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
   return ~crc;
}

template <typename T>
inline T parse_number(const std::string& tok, bool& ok) {
   char* end = nullptr;
   errno = 0;
   T v;
   if (std::is_floating_point<T>::value) {
      v = static_cast<T>(std::is_same<T, float>::value ? std::strtof(tok.c_str(), &end) : std::strtod(tok.c_str(), &end));
   } else if (std::is_signed<T>::value) {
      v = static_cast<T>(std::strtoll(tok.c_str(), &end, 10));
   } else {
      v = static_cast<T>(std::strtoull(tok.c_str(), &end, 10));
   }
   ok = end && *end == '\0' && !tok.empty();
   return v;
}

// SOFIE's text weight format: for each tensor a line "tensor_<name> <length>" followed by its values.
class DatReader {
 public:
   explicit DatReader(const std::string& file) : file_(file), in_(file) {
      if (!in_) throw std::runtime_error("pysofie: cannot open weight file '" + file + "'");
   }
   template <typename T>
   void read(const std::string& name, T* dst, size_t length) {
      std::string tag;
      size_t n = 0;
      if (!(in_ >> tag >> n))
         throw std::runtime_error("pysofie: weight file '" + file_ + "' ends before tensor '" + name + "' (truncated?)");
      if (tag != "tensor_" + name)
         throw std::runtime_error("pysofie: weight file '" + file_ + "' holds '" + tag + "' where tensor '" + name +
                                  "' was expected (file from another model?)");
      if (n != length)
         throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' has " +
                                  std::to_string(n) + " values, expected " + std::to_string(length));
      std::string tok;
      for (size_t i = 0; i < length; ++i) {
         bool ok = false;
         if (!(in_ >> tok)) ok = false;
         else dst[i] = parse_number<T>(tok, ok);
         if (!ok)
            throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' is truncated or has a bad value at index " + std::to_string(i));
      }
   }
   void finish() {
      std::string extra;
      if (in_ >> extra)
         throw std::runtime_error("pysofie: weight file '" + file_ + "' has unexpected data after the last tensor ('" + extra + "')");
   }

 private:
   std::string file_;
   std::ifstream in_;
};

// pysofie's binary weight format (little endian):
//   "PYSOFIEW" | u32 version=1 | u32 tensor count | u64 data bytes | u32 crc32 of data | u32 reserved
//   per tensor: u32 name length | name | u32 dtype code (ONNX) | u64 element count | u64 byte offset in data
//   data (each tensor 64-byte aligned relative to the data start)
class BinReader {
 public:
   explicit BinReader(const std::string& file) : file_(file) {
      std::ifstream in(file, std::ios::binary | std::ios::ate);
      if (!in) throw std::runtime_error("pysofie: cannot open weight file '" + file + "'");
      std::streamsize size = in.tellg();
      in.seekg(0);
      buf_.resize(static_cast<size_t>(size));
      if (size > 0 && !in.read(reinterpret_cast<char*>(buf_.data()), size))
         throw std::runtime_error("pysofie: cannot read weight file '" + file + "'");
      if (buf_.size() < 32 || std::memcmp(buf_.data(), "PYSOFIEW", 8) != 0)
         throw std::runtime_error("pysofie: '" + file + "' is not a pysofie binary weight file");
      uint32_t version = get<uint32_t>(8);
      if (version != 1) throw std::runtime_error("pysofie: weight file '" + file + "' has unknown version " + std::to_string(version));
      count_ = get<uint32_t>(12);
      uint64_t data_bytes = get<uint64_t>(16);
      uint32_t crc = get<uint32_t>(24);
      pos_ = 32;
      // index
      for (uint32_t t = 0; t < count_; ++t) {
         uint32_t len = get<uint32_t>(pos_);
         pos_ += 4;
         need(pos_ + len + 20);
         Entry e;
         e.name.assign(reinterpret_cast<const char*>(buf_.data() + pos_), len);
         pos_ += len;
         e.dtype = get<uint32_t>(pos_);
         e.count = get<uint64_t>(pos_ + 4);
         e.offset = get<uint64_t>(pos_ + 12);
         pos_ += 20;
         entries_.push_back(e);
      }
      data_ = (pos_ + 63) / 64 * 64;
      if (buf_.size() < data_ + data_bytes)
         throw std::runtime_error("pysofie: weight file '" + file + "' is truncated (" + std::to_string(buf_.size()) +
                                  " bytes, expected " + std::to_string(data_ + data_bytes) + ")");
      if (crc32(buf_.data() + data_, static_cast<size_t>(data_bytes)) != crc)
         throw std::runtime_error("pysofie: weight file '" + file + "' is corrupted (checksum mismatch)");
      data_bytes_ = data_bytes;
   }
   template <typename T>
   void read(const std::string& name, T* dst, size_t length, uint32_t dtype) {
      if (next_ >= entries_.size())
         throw std::runtime_error("pysofie: weight file '" + file_ + "' has no tensor '" + name + "' (file from another model?)");
      const Entry& e = entries_[next_++];
      if (e.name != name)
         throw std::runtime_error("pysofie: weight file '" + file_ + "' holds '" + e.name + "' where tensor '" + name + "' was expected (file from another model?)");
      if (e.count != length || e.dtype != dtype)
         throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' has " + std::to_string(e.count) +
                                  " elements of type " + std::to_string(e.dtype) + ", expected " + std::to_string(length) +
                                  " of type " + std::to_string(dtype));
      if (e.offset + length * sizeof(T) > data_bytes_)
         throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' lies outside the data");
      if (length) std::memcpy(dst, buf_.data() + data_ + e.offset, length * sizeof(T));
   }
   void finish() {
      if (next_ != entries_.size())
         throw std::runtime_error("pysofie: weight file '" + file_ + "' has more tensors than the model (file from another model?)");
   }

 private:
   struct Entry {
      std::string name;
      uint32_t dtype;
      uint64_t count, offset;
   };
   void need(size_t n) const {
      if (buf_.size() < n) throw std::runtime_error("pysofie: weight file '" + file_ + "' is truncated");
   }
   template <typename T>
   T get(size_t at) const {
      need(at + sizeof(T));
      T v;
      std::memcpy(&v, buf_.data() + at, sizeof(T));
      return v;
   }
   std::string file_;
   std::vector<unsigned char> buf_;
   std::vector<Entry> entries_;
   uint32_t count_ = 0;
   size_t pos_ = 0, data_ = 0, next_ = 0;
   uint64_t data_bytes_ = 0;
};

}  // namespace pysofie_rt

#endif  // PYSOFIE_RUNTIME_H
