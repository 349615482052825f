// pysofie runtime helpers: weight-file readers and the BLAS declarations that generated code uses.
// Inlined into every generated header; the guard lets several generated models share one translation unit.
#ifndef PYSOFIE_RUNTIME_H
#define PYSOFIE_RUNTIME_H

#include <algorithm>
#include <cerrno>
#include <cctype>
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
#include <utility>
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

// max and min that propagate NaN, as onnxruntime's Relu, MaxPool and ReduceMax/Min do (std::max(a, NaN) is a).
// Host and device functions: the CUDA back end's kernels use the same expressions.
#if defined(__CUDACC__)
#define PYSOFIE_HOST_DEVICE __host__ __device__
#else
#define PYSOFIE_HOST_DEVICE
#endif
template <typename T>
PYSOFIE_HOST_DEVICE inline T max_nan(T a, T b) {
   if constexpr (std::is_floating_point<T>::value) {
      if (b != b) return b;  // NaN
   }
   return b > a ? b : a;
}
template <typename T>
PYSOFIE_HOST_DEVICE inline T min_nan(T a, T b) {
   if constexpr (std::is_floating_point<T>::value) {
      if (b != b) return b;  // NaN
   }
   return b < a ? b : a;
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
   struct Table {
      uint32_t v[256];
      Table() {
         for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            v[i] = c;
         }
      }
   };
   static const Table t;  // initialized once, thread-safely
   const uint32_t* table = t.v;
   crc = ~crc;
   for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
   return ~crc;
}

// Reads a whole file into memory (weight files are read once, when a Session is constructed).
inline std::vector<char> read_file(const std::string& file) {
   std::ifstream in(file, std::ios::binary | std::ios::ate);
   if (!in) throw std::runtime_error("pysofie: cannot open weight file '" + file + "'");
   std::streamsize size = in.tellg();
   if (size < 0) throw std::runtime_error("pysofie: cannot read weight file '" + file + "'");
   in.seekg(0);
   std::vector<char> buf(static_cast<size_t>(size));
   if (size > 0 && !in.read(buf.data(), size))
      throw std::runtime_error("pysofie: cannot read weight file '" + file + "'");
   return buf;
}

// One value of a text weight file. Floats: decimal numbers in range, or the explicit tokens inf, -inf, nan
// (a value that overflows, such as 1e999, is an error, not an infinity). Integers: decimal, in T's range.
template <typename T>
inline bool parse_number(const std::string& tok, T& out) {
   if (tok.empty()) return false;
   char* end = nullptr;
   errno = 0;
   if (std::is_floating_point<T>::value) {
      if (tok == "inf" || tok == "+inf") { out = std::numeric_limits<T>::infinity(); return true; }
      if (tok == "-inf") { out = -std::numeric_limits<T>::infinity(); return true; }
      if (tok == "nan" || tok == "-nan") { out = std::numeric_limits<T>::quiet_NaN(); return true; }
      const double v = std::is_same<T, float>::value ? static_cast<double>(std::strtof(tok.c_str(), &end))
                                                     : std::strtod(tok.c_str(), &end);
      if (!end || *end != '\0' || !std::isfinite(v)) return false;  // "infinity", "1e999", "nan(...)"
      if (errno == ERANGE && v != 0 && std::fabs(v) >= 1.0) return false;
      out = static_cast<T>(v);
      return true;
   } else if (std::is_same<T, bool>::value) {
      if (tok != "0" && tok != "1") return false;
      out = static_cast<T>(tok == "1");
      return true;
   } else if (std::is_signed<T>::value) {
      const long long v = std::strtoll(tok.c_str(), &end, 10);
      if (!end || *end != '\0' || errno == ERANGE) return false;
      if (v < static_cast<long long>(std::numeric_limits<T>::lowest()) ||
          v > static_cast<long long>(std::numeric_limits<T>::max()))
         return false;
      out = static_cast<T>(v);
      return true;
   } else {
      if (tok[0] == '-') return false;
      const unsigned long long v = std::strtoull(tok.c_str(), &end, 10);
      if (!end || *end != '\0' || errno == ERANGE) return false;
      if (v > static_cast<unsigned long long>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(v);
      return true;
   }
}

// SOFIE's text weight format: for each tensor a line "tensor_<name> <length>" followed by its values.
// pysofie ends the file with a line "#pysofie-crc32 <8 hex digits>", the CRC-32 of every byte before that line;
// SOFIE's readers stop after the last tensor and never see it. A file without that line (written by SOFIE) is
// read without the check.
class DatReader {
 public:
   explicit DatReader(const std::string& file) : file_(file), buf_(read_file(file)) {
      static const char kTag[] = "#pysofie-crc32 ";
      const size_t tag_len = sizeof(kTag) - 1;
      size_t end = buf_.size();
      while (end > 0 && (buf_[end - 1] == '\n' || buf_[end - 1] == '\r' || buf_[end - 1] == ' ')) --end;
      size_t line = end;
      while (line > 0 && buf_[line - 1] != '\n') --line;
      limit_ = buf_.size();
      if (end - line >= tag_len && std::memcmp(buf_.data() + line, kTag, tag_len) == 0) {
         const std::string hex(buf_.data() + line + tag_len, end - line - tag_len);
         char* stop = nullptr;
         const unsigned long want = std::strtoul(hex.c_str(), &stop, 16);
         const uint32_t got = crc32(reinterpret_cast<const unsigned char*>(buf_.data()), line);
         if (hex.size() != 8 || !stop || *stop != '\0' || static_cast<uint32_t>(want) != got)
            throw std::runtime_error("pysofie: weight file '" + file_ + "' is corrupted (checksum mismatch)");
         limit_ = line;
      }
   }
   template <typename T>
   void read(const std::string& name, T* dst, size_t length) {
      std::string tag, count;
      if (!next(tag) || !next(count))
         throw std::runtime_error("pysofie: weight file '" + file_ + "' ends before tensor '" + name + "' (truncated?)");
      if (tag != "tensor_" + name)
         throw std::runtime_error("pysofie: weight file '" + file_ + "' holds '" + tag + "' where tensor '" + name +
                                  "' was expected (file from another model?)");
      size_t n = 0;
      if (!parse_number<size_t>(count, n) || n != length)
         throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' has " + count +
                                  " values, expected " + std::to_string(length));
      std::string tok;
      for (size_t i = 0; i < length; ++i) {
         if (!next(tok))
            throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' is truncated at index " + std::to_string(i));
         if (!parse_number<T>(tok, dst[i]))
            throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' has a bad value ('" +
                                     tok.substr(0, 40) + "') at index " + std::to_string(i));
      }
   }
   void finish() {
      std::string extra;
      if (next(extra) && extra[0] == '#')
         throw std::runtime_error("pysofie: weight file '" + file_ + "' is truncated or corrupted (damaged checksum line)");
      if (!extra.empty())
         throw std::runtime_error("pysofie: weight file '" + file_ + "' has unexpected data after the last tensor ('" + extra.substr(0, 40) + "')");
   }

 private:
   bool next(std::string& tok) {
      while (pos_ < limit_ && std::isspace(static_cast<unsigned char>(buf_[pos_]))) ++pos_;
      const size_t start = pos_;
      while (pos_ < limit_ && !std::isspace(static_cast<unsigned char>(buf_[pos_]))) ++pos_;
      tok.assign(buf_.data() + start, pos_ - start);
      return pos_ > start;
   }
   std::string file_;
   std::vector<char> buf_;
   size_t pos_ = 0, limit_ = 0;
};

// pysofie's binary weight format (little endian), version 2:
//   "PYSOFIEW" | u32 version=2 | u32 tensor count | u64 data bytes | u32 crc32 | u32 reserved=0
//   per tensor: u32 name length | name | u32 dtype code (ONNX) | u64 element count | u64 byte offset in data
//   zero padding to a multiple of 64 bytes, then the data (each tensor 64-byte aligned relative to its start).
// The CRC-32 covers every byte after the 32-byte header (index, padding and data), and the file ends exactly where
// the data ends. Every offset and size is checked against the file with arithmetic that cannot wrap, and no two
// tensors may overlap. (Version 1 files had no checksum over the index: regenerate them.)
class BinReader {
 public:
   explicit BinReader(const std::string& file) : file_(file) {
      buf_ = read_file(file);
      if (buf_.size() < 32 || std::memcmp(buf_.data(), "PYSOFIEW", 8) != 0)
         throw std::runtime_error("pysofie: '" + file + "' is not a pysofie binary weight file");
      const uint32_t version = get<uint32_t>(8);
      if (version == 1)
         throw std::runtime_error("pysofie: weight file '" + file + "' has format version 1, written by an older "
                                  "pysofie: regenerate it");
      if (version != 2) throw std::runtime_error("pysofie: weight file '" + file + "' has unknown version " + std::to_string(version));
      count_ = get<uint32_t>(12);
      const uint64_t data_bytes = get<uint64_t>(16);
      const uint32_t crc = get<uint32_t>(24);
      if (count_ > (buf_.size() - 32) / 24)
         throw std::runtime_error("pysofie: weight file '" + file + "' is corrupted (tensor count " +
                                  std::to_string(count_) + " does not fit in the file)");
      pos_ = 32;
      for (uint32_t t = 0; t < count_; ++t) {
         const uint32_t len = get<uint32_t>(pos_);
         pos_ += 4;
         if (len > buf_.size() - pos_ || buf_.size() - pos_ - len < 20)
            throw std::runtime_error("pysofie: weight file '" + file + "' is truncated or corrupted (index entry " +
                                     std::to_string(t) + ")");
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
      if (data_ > buf_.size() || buf_.size() - data_ != data_bytes)
         throw std::runtime_error("pysofie: weight file '" + file + "' is truncated or corrupted (" + std::to_string(buf_.size()) +
                                  " bytes, its header promises " + std::to_string(data_bytes) + " bytes of data after " +
                                  std::to_string(data_) + ")");
      if (crc32(reinterpret_cast<const unsigned char*>(buf_.data()) + 32, buf_.size() - 32) != crc)
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
      // e.offset + length * sizeof(T) <= data_bytes_, written so that no term can wrap
      if (e.offset > data_bytes_ || length > (data_bytes_ - e.offset) / sizeof(T))
         throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' lies outside the data");
      for (const auto& r : read_)
         if (e.offset < r.first + r.second && r.first < e.offset + length * sizeof(T) && length && r.second)
            throw std::runtime_error("pysofie: weight file '" + file_ + "': tensor '" + name + "' overlaps another tensor (corrupted file)");
      read_.emplace_back(e.offset, length * sizeof(T));
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
   template <typename T>
   T get(size_t at) const {
      if (at > buf_.size() || buf_.size() - at < sizeof(T))
         throw std::runtime_error("pysofie: weight file '" + file_ + "' is truncated");
      T v;
      std::memcpy(&v, buf_.data() + at, sizeof(T));
      return v;
   }
   std::string file_;
   std::vector<char> buf_;
   std::vector<Entry> entries_;
   std::vector<std::pair<uint64_t, uint64_t>> read_;
   uint32_t count_ = 0;
   size_t pos_ = 0, data_ = 0, next_ = 0;
   uint64_t data_bytes_ = 0;
};

}  // namespace pysofie_rt

#endif  // PYSOFIE_RUNTIME_H
