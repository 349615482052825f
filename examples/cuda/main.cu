// Calls CUDA code emitted by pysofie from a plain C++/CUDA program: no Python; the CUDA runtime and cuBLAS.
//
//   pysofie emit --target cuda examples/models/example_cnn.onnx -o build/example_cuda
//   cmake -S examples/cuda -B build/example_cuda -DMODEL_DIR=build/example_cuda && cmake --build build/example_cuda
//   cd build/example_cuda && ./classify_cuda
#include "example_cnn.cuh"

#include <cstdio>
#include <vector>

int main() {
   const size_t batch = 2;  // the model's symbolic "batch" dimension is a size parameter
   SOFIE_example_cnn::Session session("example_cnn.dat", batch);  // uploads the weights to the GPU once

   std::vector<float> image(batch * 1 * 16 * 16);
   for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<float>((i * 37) % 101) / 101.f - 0.5f;

   // host pointers: copies in, runs on the Session's stream, copies out, waits
   std::vector<float> probs = session.infer_host(batch, image.data());

   // device pointers (the hot-loop form): asynchronous on session.stream(), nothing allocated
   float *d_image = nullptr, *d_probs = nullptr;
   pysofie_cuda::check(cudaMalloc(&d_image, image.size() * sizeof(float)), "cudaMalloc");
   pysofie_cuda::check(cudaMalloc(&d_probs, batch * 10 * sizeof(float)), "cudaMalloc");
   pysofie_cuda::check(cudaMemcpy(d_image, image.data(), image.size() * sizeof(float), cudaMemcpyHostToDevice),
                       "cudaMemcpy");
   session.infer(batch, d_image, d_probs);
   session.check_errors();  // waits for the stream
   std::vector<float> again(batch * 10);
   pysofie_cuda::check(cudaMemcpy(again.data(), d_probs, again.size() * sizeof(float), cudaMemcpyDeviceToHost),
                       "cudaMemcpy");
   cudaFree(d_image);
   cudaFree(d_probs);

   for (size_t b = 0; b < batch; ++b) {
      std::printf("event %zu:", b);
      for (size_t k = 0; k < 10; ++k) std::printf(" %.4f", probs[b * 10 + k]);
      std::printf("\n");
   }
   return probs == again ? 0 : 1;
}
