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
// without slots, for string expressions. Per event nothing is allocated for outputs that fit in an RVec's own
// storage (up to 12 floats or 6 doubles); larger outputs take one allocation per event.
#ifndef PYSOFIE_SOFIEFUNCTOR_HXX
#define PYSOFIE_SOFIEFUNCTOR_HXX

#include <ROOT/RVec.hxx>

#include <cstddef>
#include <memory>
#include <mutex>
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

}  // namespace detail

// Session: the model's Session class. Out / In: its output and input element types. Cols: the column types.
template <class Session, class Out, class In, class... Cols>
class SofieFunctor {
   std::shared_ptr<std::vector<std::unique_ptr<Session>>> fSlots;  // shared: RDataFrame copies the functor
   std::size_t fNOut = 0;

   template <class... A>
   void Init(unsigned nslots, std::size_t nout, A&&... session_args) {
      if (nslots == 0) throw std::invalid_argument("pysofie::SofieFunctor: nslots must be at least 1");
      fNOut = nout;
      fSlots = std::make_shared<std::vector<std::unique_ptr<Session>>>(nslots);
      for (auto& s : *fSlots) s = std::make_unique<Session>(session_args...);
   }

 public:
   // nslots: df.GetNSlots(); nout: values of the output per event; weight_file: passed to each Session.
   SofieFunctor(unsigned nslots, std::size_t nout, const std::string& weight_file) {
      Init(nslots, nout, weight_file);
   }
   // Sessions constructed with their default weight file.
   SofieFunctor(unsigned nslots, std::size_t nout) { Init(nslots, nout); }

   ROOT::RVec<Out> operator()(unsigned slot, Cols... cols) {
      const In x[sizeof...(Cols)] = {static_cast<In>(cols)...};
      ROOT::RVec<Out> y(fNOut);
      detail::InferOne(*(*fSlots)[slot], x, y.data());
      return y;
   }

   unsigned GetNSlots() const { return static_cast<unsigned>(fSlots->size()); }
};

// The same evaluation without slots, for RDataFrame string expressions (distributed RDataFrame builds its graph
// from them): one Session per calling thread, made on the thread's first call.
template <class Session, class Out, class In, class... Cols>
class SofieFunction {
   struct State {
      std::mutex mutex;
      std::unordered_map<std::thread::id, std::unique_ptr<Session>> sessions;
      std::string weight_file;
      bool default_weights = true;
   };
   std::shared_ptr<State> fState = std::make_shared<State>();
   std::size_t fNOut = 0;

   Session& ThisThreadSession() {
      std::lock_guard<std::mutex> lock(fState->mutex);
      auto& s = fState->sessions[std::this_thread::get_id()];
      if (!s) s = fState->default_weights ? std::make_unique<Session>() : std::make_unique<Session>(fState->weight_file);
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
