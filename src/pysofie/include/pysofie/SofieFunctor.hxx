// pysofie/SofieFunctor.hxx: evaluate a pysofie (or SOFIE) model per event inside ROOT's RDataFrame.
//
//   #include "pysofie/SofieFunctor.hxx"        // on the include path of `pysofie config --cflags`
//   pysofie::SofieFunctor<SOFIE_mlp::Session, float, float, float, double> score(df.GetNSlots(), 2, "mlp.dat");
//   auto df2 = df.DefineSlot("score", score, {"pt", "eta"});   // score: ROOT::RVec<float>, 2 values per event
//
// In the style of ROOT's TMVA::Experimental::SofieFunctor: one Session per processing slot (so it works with
// ROOT::EnableImplicitMT and the slots never share a Session's buffers), the input columns in order (each
// converted to the model's input type In) filling the model's single input for one event, and the values of the
// model's output for that event as an RVec<Out>. The Session's infer is called for a batch of one: infer(1, x, y)
// when the model has a batch size parameter, infer(x, y) when it has none. SofieFunction (below) does the same
// without slots, for string expressions. SofieFunctor allocates nothing per event: its RVec is a view of a buffer
// of the slot, valid for the event (see below); SofieFunction returns an RVec of its own (one allocation per event
// for outputs larger than an RVec's own storage of 12 floats or 6 doubles).
#ifndef PYSOFIE_SOFIEFUNCTOR_HXX
#define PYSOFIE_SOFIEFUNCTOR_HXX

#include <ROOT/RVec.hxx>

#include <atomic>
#include <cstddef>
#include <memory>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pysofie {
namespace detail {

template <class S, class In, class Out, class = void>
struct HasBatchInfer : std::false_type {};
template <class S, class In, class Out>
struct HasBatchInfer<S, In, Out,
                     std::void_t<decltype(std::declval<S&>().infer(std::size_t(1), std::declval<const In*>(),
                                                                   std::declval<Out*>()))>> : std::true_type {};

// One event through the Session: the batch size parameter (if any) is 1.
template <class S, class In, class Out>
inline void InferOne(S& session, const In* x, Out* y) {
   if constexpr (HasBatchInfer<S, In, Out>::value)
      session.infer(std::size_t(1), x, y);
   else
      session.infer(x, y);
}

// Per-slot output storage of one SofieFunctor: `nslots` buffers of `nout` values, each starting on its own cache line
// (two slots never write to one line). Not shared between copies of the functor: see SofieFunctor.
template <class Out>
class SlotBuffers {
   struct Free {
      void operator()(Out* p) const noexcept { ::operator delete(p, std::align_val_t(64)); }
   };
   std::unique_ptr<Out, Free> fData;
   std::size_t fStride = 0;  // values from one slot's buffer to the next's
   unsigned fNSlots = 0;

 public:
   SlotBuffers() = default;
   SlotBuffers(unsigned nslots, std::size_t nout) : fNSlots(nslots) {
      static_assert(std::is_trivially_copyable<Out>::value, "pysofie::SofieFunctor: outputs of plain numbers");
      constexpr std::size_t per_line = 64 / sizeof(Out) ? 64 / sizeof(Out) : 1;
      fStride = (nout + per_line - 1) / per_line * per_line;
      const std::size_t n = fStride * nslots;
      if (n) {
         fData.reset(static_cast<Out*>(::operator new(n * sizeof(Out), std::align_val_t(64))));
         std::memset(static_cast<void*>(fData.get()), 0, n * sizeof(Out));
      }
   }
   SlotBuffers(const SlotBuffers& o) : SlotBuffers(o.fNSlots, o.fStride) {}
   SlotBuffers& operator=(const SlotBuffers& o) {
      if (this != &o) *this = SlotBuffers(o.fNSlots, o.fStride);
      return *this;
   }
   SlotBuffers(SlotBuffers&&) noexcept = default;
   SlotBuffers& operator=(SlotBuffers&&) noexcept = default;
   Out* operator[](unsigned slot) const { return fData.get() + slot * fStride; }
};

// The Sessions of one SofieFunctor, one per slot, in one allocation, each on cache lines of its own: the per-event
// path reaches a slot's Session by address arithmetic (base + slot * a compile-time stride), not through a pointer
// loaded per event, and two slots never write to one line. Constructed and destroyed in one place, never copied
// (the copies of a SofieFunctor share it).
template <class Session>
class SlotSessions {
 public:
   static constexpr std::size_t kAlign = alignof(Session) > 64 ? alignof(Session) : 64;
   static constexpr std::size_t kStride = (sizeof(Session) + kAlign - 1) / kAlign * kAlign;

   template <class... A>
   SlotSessions(unsigned nslots, const A&... session_args) {
      fData = static_cast<unsigned char*>(::operator new(kStride * nslots, std::align_val_t(kAlign)));
      try {
         for (; fN < nslots; ++fN) new (fData + fN * kStride) Session(session_args...);
      } catch (...) {
         Destroy();
         throw;
      }
   }
   SlotSessions(const SlotSessions&) = delete;
   SlotSessions& operator=(const SlotSessions&) = delete;
   ~SlotSessions() { Destroy(); }

   unsigned size() const { return fN; }
   unsigned char* data() const { return fData; }
   static Session& At(unsigned char* data, unsigned slot) {
      return *std::launder(reinterpret_cast<Session*>(data + slot * kStride));
   }

 private:
   unsigned char* fData = nullptr;
   unsigned fN = 0;  // Sessions constructed
   void Destroy() noexcept {
      for (unsigned i = fN; i-- > 0;) At(fData, i).~Session();
      ::operator delete(fData, std::align_val_t(kAlign));
   }
};

}  // namespace detail

// Session: the model's Session class. Out / In: its output and input element types. Cols: the column types.
//
// The RVec returned for an event is a view of this functor's buffer for the slot (as the RVecs that RDataFrame
// reads from a TTree's arrays are views of its buffers): no allocation and no copy per event, whatever the size of
// the output. Like every RDataFrame value it is valid for its event: the slot's next call overwrites it. What keeps
// values beyond their event copies them (Take, AsNumpy, Cache and Snapshot do: copying an RVec makes an owning
// one), and so must a caller who calls the functor directly and keeps a result past the slot's next call
// (`ROOT::RVec<float> kept = f(0, x...);` keeps the view; `ROOT::RVec<float> kept(view.begin(), view.end());`
// copies). A copy of the functor (RDataFrame copies it; one functor given to two Defines) shares the Sessions but
// gets buffers of its own, so two columns never view one buffer.
template <class Session, class Out, class In, class... Cols>
class SofieFunctor {
   using Sessions = detail::SlotSessions<Session>;
   std::shared_ptr<const Sessions> fOwner;  // one Session per slot, shared by the copies of the functor
   unsigned char* fSessions = nullptr;      // fOwner->data(), for the per-event path
   detail::SlotBuffers<Out> fOut;           // this copy's output buffers
   std::size_t fNOut = 0;
   unsigned fNSlots = 0;                    // fOwner->size(), kept here for the per-event slot check

   template <class... A>
   void Init(unsigned nslots, std::size_t nout, A&&... session_args) {
      if (nslots == 0) throw std::invalid_argument("pysofie::SofieFunctor: nslots must be at least 1");
      fNOut = nout;
      fNSlots = nslots;
      auto owner = std::make_shared<Sessions>(nslots, session_args...);
      fSessions = owner->data();
      fOwner = std::move(owner);
      fOut = detail::SlotBuffers<Out>(nslots, nout);
   }

 public:
   // nslots: df.GetNSlots() (a call for a slot >= nslots throws std::out_of_range); nout: values of the output per
   // event; weight_file: passed to each Session.
   SofieFunctor(unsigned nslots, std::size_t nout, const std::string& weight_file) {
      Init(nslots, nout, weight_file);
   }
   // Sessions constructed with their default weight file.
   SofieFunctor(unsigned nslots, std::size_t nout) { Init(nslots, nout); }

   // The model's output for one event of `slot` (see above: a view, valid until the slot's next call).
   ROOT::RVec<Out> operator()(unsigned slot, Cols... cols) {
      if (slot >= fNSlots) OutOfSlots(slot);
      const In x[sizeof...(Cols)] = {static_cast<In>(cols)...};
      Out* y = fOut[slot];
      detail::InferOne(Sessions::At(fSessions, slot), x, y);
      return ROOT::RVec<Out>(y, fNOut);
   }

   unsigned GetNSlots() const { return fNSlots; }

 private:
   // a slot beyond those the functor was made for (nslots smaller than the RDataFrame's GetNSlots())
   [[noreturn]] void OutOfSlots(unsigned slot) const {
      throw std::out_of_range("pysofie::SofieFunctor: called for slot " + std::to_string(slot) + ", made for " +
                              std::to_string(fNSlots) + " slot(s): construct it with df.GetNSlots()");
   }
};

// The same evaluation without slots, for RDataFrame string expressions (distributed RDataFrame builds its graph
// from them): one Session per calling thread, made on the thread's first call. Its RVecs own their values: one
// function may serve several columns of one event (Define("a", "f(x, y)").Define("b", "f(y, x)")), so a view of a
// per-thread buffer would change under the first column's feet.
template <class Session, class Out, class In, class... Cols>
class SofieFunction {
   static unsigned long long NextId() {
      static std::atomic<unsigned long long> next{1};
      return next.fetch_add(1, std::memory_order_relaxed);
   }
   struct State {
      std::mutex mutex;
      std::unordered_map<std::thread::id, std::unique_ptr<Session>> sessions;
      std::string weight_file;
      bool default_weights = true;
      const unsigned long long id = NextId();  // never reused, unlike the address of a State
   };
   std::shared_ptr<State> fState = std::make_shared<State>();
   std::size_t fNOut = 0;

   // The calling thread's Session. The per-event path takes no lock: each thread remembers the last function
   // (State id) it called and that function's Session for it; the map, under the lock, is for a thread's first
   // call and for threads that alternate between functions. The Sessions live as long as the State.
   Session& ThisThreadSession() {
      thread_local unsigned long long cached_id = 0;
      thread_local Session* cached = nullptr;
      State& st = *fState;
      if (cached_id == st.id) return *cached;
      std::lock_guard<std::mutex> lock(st.mutex);
      auto& s = st.sessions[std::this_thread::get_id()];
      if (!s) s = st.default_weights ? std::make_unique<Session>() : std::make_unique<Session>(st.weight_file);
      cached_id = st.id;
      cached = s.get();
      return *s;
   }

 public:
   SofieFunction(std::size_t nout, const std::string& weight_file) : fNOut(nout) {
      fState->weight_file = weight_file;
      fState->default_weights = false;
   }
   explicit SofieFunction(std::size_t nout) : fNOut(nout) {}

   ROOT::RVec<Out> operator()(Cols... cols) {
      const In x[sizeof...(Cols)] = {static_cast<In>(cols)...};
      ROOT::RVec<Out> y(fNOut);
      detail::InferOne(ThisThreadSession(), x, y.data());
      return y;
   }
};

}  // namespace pysofie

#endif  // PYSOFIE_SOFIEFUNCTOR_HXX
