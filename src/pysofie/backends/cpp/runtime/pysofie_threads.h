// pysofie thread pool: the intra-op threads of one generated Session (Session::set_num_threads).
//
// Workers are started once (set_num_threads / Pool::resize) and live as long as the Session: a parallel region
// wakes them, hands out task indices from an atomic counter (the calling thread works too, as thread 0), and
// returns when every worker has finished. Between regions the workers spin briefly (the next node's region
// usually follows within microseconds), then sleep on a condition variable. With one thread (the default) run()
// is a plain loop on the calling thread and no worker exists.
//
// Kernels split their work into tasks that each write their own outputs, computed in the same order whatever the
// thread count, so results do not depend on the number of threads. A task gets the index of the thread running
// it (0 <= tid < size()), for per-thread scratch buffers. Tasks must not throw. One Pool runs one region at a
// time: a region started from inside a task runs serially on that thread, with that thread's index.
#ifndef PYSOFIE_THREADS_H
#define PYSOFIE_THREADS_H

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define PYSOFIE_CPU_RELAX() _mm_pause()
#else
#define PYSOFIE_CPU_RELAX() std::this_thread::yield()
#endif

namespace pysofie_par {

class Pool {
public:
   Pool() = default;
   explicit Pool(int n) { resize(n); }
   // a copied Session gets a pool of its own with as many threads
   Pool(const Pool& o) : Pool() { resize(o.size()); }
   Pool& operator=(const Pool& o) {
      if (this != &o) resize(o.size());
      return *this;
   }
   ~Pool() { stop(); }

   int size() const { return static_cast<int>(workers_.size()) + 1; }

   // n threads in all (the caller of run() is one of them); n < 1 counts as 1.
   void resize(int n) {
      if (n < 1) n = 1;
      if (n == size()) return;
      stop();
      st_.reset(new State);
      for (int t = 1; t < n; ++t) workers_.emplace_back([this, t] { worker(t); });
   }

   // f(task, tid) for task = 0 .. n-1, spread over the threads; returns when all are done.
   template <class F>
   void run(long n, F&& f) {
      if (n <= 0) return;
      if (workers_.empty() || n == 1 || busy_.exchange(true, std::memory_order_acquire)) {
         const int tid = current_tid();  // inside another region's task: that task's thread and scratch
         for (long t = 0; t < n; ++t) f(t, tid);
         return;
      }
      using Fn = typename std::remove_reference<F>::type;
      Job job;
      job.call = [](void* ctx, long task, int tid) { (*static_cast<Fn*>(ctx))(task, tid); };
      job.ctx = const_cast<void*>(static_cast<const void*>(&f));
      job.ntasks = n;
      State& s = *st_;
      s.cur.store(&job, std::memory_order_seq_cst);
      {
         std::lock_guard<std::mutex> lock(s.m);
         s.gen.fetch_add(1, std::memory_order_release);
      }
      if (s.sleeping.load(std::memory_order_relaxed) > 0) s.wake.notify_all();
      work(job, 0);
      // every task finished (a worker that never woke up is not waited for: the tasks went to the others) ...
      for (int i = 0; job.done.load(std::memory_order_acquire) != n; ++i) relax(i);
      // ... and no worker still holds the job
      s.cur.store(nullptr, std::memory_order_seq_cst);
      for (int i = 0; s.inside.load(std::memory_order_seq_cst) != 0; ++i) relax(i);
      busy_.store(false, std::memory_order_release);
   }

   // Contiguous chunks of [0, n) of at least `grain` indices, about `per_thread` chunks per thread:
   // f(begin, end, tid).
   template <class F>
   void run_range(long n, long grain, F&& f, int per_thread = 4) {
      if (n <= 0) return;
      const long threads = size();
      long chunk = threads == 1 ? n : (n + threads * per_thread - 1) / (threads * per_thread);
      if (chunk < grain) chunk = grain;
      const long tasks = (n + chunk - 1) / chunk;
      run(tasks, [&](long t, int tid) {
         const long b = t * chunk, e = b + chunk < n ? b + chunk : n;
         f(b, e, tid);
      });
   }

private:
   static constexpr int kSpin = 1 << 11;  // pauses before sleeping or yielding (some tens of microseconds)

   struct Job {
      void (*call)(void*, long, int) = nullptr;
      void* ctx = nullptr;
      long ntasks = 0;
      alignas(64) std::atomic<long> next{0};
      alignas(64) std::atomic<long> done{0};
   };

   struct State {
      std::atomic<Job*> cur{nullptr};  // the region running now
      alignas(64) std::atomic<int> inside{0};  // workers that may be reading cur's job
      alignas(64) std::atomic<unsigned long> gen{0};  // regions started
      std::atomic<int> sleeping{0};
      std::atomic<bool> stop{false};
      std::mutex m;
      std::condition_variable wake;
   };

   // short waits spin; long ones (a preempted thread on a busy machine) give the core away
   static void relax(int i) {
      if (i < kSpin) PYSOFIE_CPU_RELAX();
      else std::this_thread::yield();
   }

   // the index of the pool thread running the current task on this thread (0 outside any region)
   static int& current_tid() {
      static thread_local int tid = 0;
      return tid;
   }

   static void work(Job& j, int tid) {
      const int outer = current_tid();
      current_tid() = tid;
      for (long t; (t = j.next.fetch_add(1, std::memory_order_relaxed)) < j.ntasks;) {
         j.call(j.ctx, t, tid);
         j.done.fetch_add(1, std::memory_order_release);
      }
      current_tid() = outer;
   }

   void worker(int tid) {
      State& s = *st_;
      unsigned long seen = 0;
      for (;;) {
         for (int i = 0; s.gen.load(std::memory_order_acquire) == seen && !s.stop.load(std::memory_order_relaxed) &&
                         i < kSpin;
              ++i)
            PYSOFIE_CPU_RELAX();
         if (s.gen.load(std::memory_order_acquire) == seen && !s.stop.load(std::memory_order_relaxed)) {
            std::unique_lock<std::mutex> lock(s.m);
            s.sleeping.fetch_add(1, std::memory_order_relaxed);
            s.wake.wait(lock, [&] {
               return s.gen.load(std::memory_order_acquire) != seen || s.stop.load(std::memory_order_relaxed);
            });
            s.sleeping.fetch_sub(1, std::memory_order_relaxed);
         }
         if (s.stop.load(std::memory_order_acquire)) return;
         seen = s.gen.load(std::memory_order_acquire);
         s.inside.fetch_add(1, std::memory_order_seq_cst);
         if (Job* j = s.cur.load(std::memory_order_seq_cst)) work(*j, tid);
         s.inside.fetch_sub(1, std::memory_order_seq_cst);
      }
   }

   void stop() {
      if (workers_.empty()) return;
      {
         std::lock_guard<std::mutex> lock(st_->m);
         st_->stop.store(true, std::memory_order_release);
      }
      st_->wake.notify_all();
      for (std::thread& t : workers_) t.join();
      workers_.clear();
   }

   std::unique_ptr<State> st_{new State};
   std::vector<std::thread> workers_;
   std::atomic<bool> busy_{false};
};

// f(task, tid) for task = 0 .. n-1: on the pool, or in order on this thread (tid 0) without one
template <class F>
inline void run(Pool* pool, long n, F&& f) {
   if (pool) pool->run(n, f);
   else for (long t = 0; t < n; ++t) f(t, 0);
}

}  // namespace pysofie_par

#endif  // PYSOFIE_THREADS_H
