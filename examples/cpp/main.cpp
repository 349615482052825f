// Calls code emitted by pysofie from a plain C++ program: no Python, only a BLAS.
//
//   pysofie emit examples/models/example_cnn.onnx -o build/example
//   g++ -O2 -I build/example examples/cpp/main.cpp $(pysofie config --cflags --libs) -o build/example/classify
//   cd build/example && ./classify
#include "example_cnn.hxx"

#include <cstdio>
#include <vector>

int main() {
   const size_t batch = 2;  // the model's symbolic "batch" dimension is a size parameter
   SOFIE_example_cnn::Session session("example_cnn.bin", batch);

   std::vector<float> image(batch * 1 * 16 * 16);
   for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<float>((i * 37) % 101) / 101.f - 0.5f;

   // allocating form: returns the output
   std::vector<float> probs = session.infer(batch, image.data());

   // non-allocating form: writes into a caller-owned buffer (the hot-loop form)
   std::vector<float> again(batch * 10);
   session.infer(batch, image.data(), again.data());

   for (size_t b = 0; b < batch; ++b) {
      std::printf("event %zu:", b);
      for (size_t k = 0; k < 10; ++k) std::printf(" %.4f", probs[b * 10 + k]);
      std::printf("\n");
   }
   return probs == again ? 0 : 1;
}
