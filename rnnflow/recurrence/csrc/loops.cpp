// rnnflow's compiled step loops: the per-step part of the fused kernels (_fused_kernels.py).
//
// Each function runs the time loop of one layer, forward or backward, exactly as the Python
// fallback in _fused_kernels.py does (same buffers, same results up to float rounding). What
// moves here is what Python did once per step: the recurrent GEMM (our packed GEMM in float32,
// see loops_isa.h; ATen's addmm in float64) and the gate maths, fused into one pass per step
// over the [n, G] block, each thread taking a range of rows (the RNN's and LSTM's input
// projections too, each step's with its recurrent GEMM). The GEMMs over all steps (the GRU's
// input projections, weight and input gradients) are called from Python as `linear` and
// `weight_grad`, with the same packed kernel. Large buffers come from a per-thread pool.
//
// Kernel variants: the arithmetic (loops_isa.h) is compiled once per instruction set into its
// own namespace, under `#pragma GCC target`: avx512 (AVX-512 F/VL/BW/DQ + FMA), avx2 (AVX2 +
// FMA) and generic (portable C++ for the build's baseline, 128-bit generic vectors: SSE2 on
// x86-64, NEON on aarch64; the only one on other architectures and with compilers other than
// GCC). The build itself targets the baseline (no -march=native), so
// a library built on one machine runs on any other; the widest variant the CPU supports
// (cpuid, __builtin_cpu_supports) runs unless `set_isa` (RNNFLOW_ISA, _ext.py) picks another.
//
// Every entry point checks its arguments (TORCH_CHECK: ranks, sizes against each other, dtype,
// device, the strides the loops assume, batch_sizes within the buffers): no caller can make the
// loops read or write outside its tensors.
//
// Shrinking batch: rows are sorted by length (descending) by the caller, and batch_sizes[t] is
// the number of rows still active at step t; step t touches only those. Rows past their
// length are never written (the caller zero-initialises every buffer they would occupy; the
// backward's gradient buffers are zeroed here when some row is inactive).
//
// Backward convention (all cells): d_out [T, B, H] is the gradient of the outputs, d_final [B, H]
// that of the final state, which enters row b at its last step (rows [batch_sizes[t+1],
// batch_sizes[t]) end at step t). Returned gradients are zero for inactive rows. d_out may be a
// zero block expanded over time (stride 0): only d_out[t] rows are read. need_h0 false skips the
// GEMM of the initial state's gradient (the returned dh0 is then an empty tensor: no [B, H]
// copy of d_final made for nothing).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

// The x86 variants need GCC's target pragmas (clang ignores them: generic only there).
// -DRNNFLOW_X86_VARIANTS=0 builds the generic variant alone (how other platforms build).
#ifndef RNNFLOW_X86_VARIANTS
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#define RNNFLOW_X86_VARIANTS 1
#else
#define RNNFLOW_X86_VARIANTS 0
#endif
#endif
#if RNNFLOW_X86_VARIANTS
#include <immintrin.h>  // the avx512 variant's activations (loops_isa.h, act_zmm)
#endif

namespace {

using at::Tensor;
enum Act : int64_t { kTanh = 0, kSigmoid = 1, kRelu = 2, kLinear = 3 };

// Calls f.template operator()<A>() for the runtime activation code.
template <typename F>
void with_act(int64_t a, F&& f) {
  switch (a) {
    case kTanh: f(std::integral_constant<int, kTanh>()); break;
    case kSigmoid: f(std::integral_constant<int, kSigmoid>()); break;
    case kRelu: f(std::integral_constant<int, kRelu>()); break;
    case kLinear: f(std::integral_constant<int, kLinear>()); break;
    default: TORCH_CHECK(false, "rnnflow_loops: unknown activation code ", a);
  }
}

// Step t of an [S, B, W] buffer whose [B, W] blocks are row-major (checked by `expect_steps`);
// a buffer with one step or a zero time stride (an expanded zero block) gives
// the same block at every t.
template <typename T>
struct Steps {
  T* base;
  int64_t stride;
  T* operator[](int64_t t) const { return base + t * stride; }
};

template <typename T>
Steps<T> steps_of(const Tensor& t) {
  return {t.data_ptr<T>(), t.size(0) > 1 ? t.stride(0) : 0};
}

// ------------------------------------------------------------------ buffer pool
// The large buffers of a layer (the [T, B, 4H] gates and their gradient: 7 MB each at the
// tutorial size) come back with the same sizes at the next training step. Fresh ones cost page
// faults: glibc hands the freed memory back to the OS after each step, and an LSTM training
// step then took ~2,300 page faults (15.4 ms vs 12.2 ms without them, measured here). So each
// thread keeps its last large buffers and hands one out again once nothing else holds its
// storage (the autograd graph that saved it is gone). Uninitialised, like at::empty.
class BufferPool {
 public:
  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const int64_t numel = c10::multiply_integers(sizes);
    if (numel * static_cast<int64_t>(options.dtype().itemsize()) < kMinBytes ||
        !options.device().is_cpu())
      return at::empty(sizes, options);
    const bool inference = c10::InferenceMode::is_enabled();
    const auto dtype = options.dtype();
    ++clock_;
    Entry* free_entry = nullptr;  // the free entry handed out longest ago
    for (Entry& e : entries_) {
      if (e.storage.use_count() != 1) continue;
      if (e.numel == numel && e.dtype == dtype && e.inference == inference) {
        e.last_use = clock_;
        return view(e, sizes, options);
      }
      if (!free_entry || e.last_use < free_entry->last_use) free_entry = &e;
    }
    Tensor fresh = at::empty({numel}, options);
    Entry e{fresh.storage(), numel, dtype, inference, clock_};
    if (entries_.size() < kMaxEntries)
      entries_.push_back(e);
    else if (free_entry)  // the least recently used, not the first free one: with one buffer
      *free_entry = e;    // held past its step, that dropped the step's next buffer, whose
                          // request then dropped the one after, every step (~1,600 page
                          // faults per LSTM training step of 128, measured)
    return view(e, sizes, options);
  }

 private:
  struct Entry {
    c10::Storage storage;
    int64_t numel;
    caffe2::TypeMeta dtype;
    bool inference;
    uint64_t last_use;  // clock_ when last handed out
  };
  static constexpr int64_t kMinBytes = 1 << 20;  // smaller ones are malloc's free-list business
  static constexpr size_t kMaxEntries = 16;

  static Tensor view(const Entry& e, at::IntArrayRef sizes, const at::TensorOptions& options) {
    Tensor t = at::empty({0}, options);
    t.set_(e.storage, 0, sizes, c10::contiguous_strides(sizes));
    return t;
  }

  std::vector<Entry> entries_;
  uint64_t clock_ = 0;
};

Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  thread_local BufferPool pool;
  return pool.empty(sizes, options);
}

// A [steps, batch, width] gradient buffer: zeros where some row is inactive at some step (the
// weight GEMMs over all rows read those zeros), uninitialised when every row runs every step.
Tensor grad_buffer(const std::vector<int64_t>& bs, int64_t batch, int64_t width,
                   const at::TensorOptions& options) {
  const int64_t steps = static_cast<int64_t>(bs.size());
  const bool full = steps == 0 || bs[steps - 1] == batch;
  Tensor buffer = pooled_empty({steps, batch, width}, options);
  return full ? buffer : buffer.zero_();
}


// ------------------------------------------------------------------ argument checks
// One allowed range per dimension: [lo, hi].
struct Dim {
  int64_t lo, hi;
};
constexpr int64_t kAnySize = std::numeric_limits<int64_t>::max();
constexpr Dim exactly(int64_t v) { return {v, v}; }
constexpr Dim at_least(int64_t v) { return {v, kAnySize}; }
constexpr Dim any_size() { return {0, kAnySize}; }

std::string describe(std::initializer_list<Dim> dims) {
  std::ostringstream out;
  out << "[";
  const char* sep = "";
  for (const Dim& d : dims) {
    out << sep;
    if (d.lo == d.hi) out << d.lo;
    else if (d.hi == kAnySize && d.lo == 0) out << "*";
    else if (d.hi == kAnySize) out << ">= " << d.lo;
    else out << d.lo << ".." << d.hi;
    sep = ", ";
  }
  out << "]";
  return out.str();
}

// `t` is a CPU tensor of `dtype` whose sizes lie in `dims`.
void expect(const char* fn, const char* name, const Tensor& t, at::ScalarType dtype,
            std::initializer_list<Dim> dims) {
  bool ok = t.defined() && t.device().is_cpu() && t.scalar_type() == dtype &&
            t.dim() == static_cast<int64_t>(dims.size());
  int64_t k = 0;
  for (const Dim& d : dims) {
    if (!ok) break;
    ok = t.size(k) >= d.lo && t.size(k) <= d.hi;
    ++k;
  }
  if (ok) return;
  if (!t.defined()) TORCH_CHECK(false, "rnnflow_loops.", fn, ": ", name, " is undefined");
  TORCH_CHECK(false, "rnnflow_loops.", fn, ": ", name, " must be a ", c10::toString(dtype),
              " CPU tensor of sizes ", describe(dims), ", got ", c10::toString(t.scalar_type()),
              " ", t.device(), " ", t.sizes());
}

// ... and [S, B, W] with each step's [B, W] block row-major (the loops address it by pointer).
void expect_steps(const char* fn, const char* name, const Tensor& t, at::ScalarType dtype,
                  std::initializer_list<Dim> dims) {
  expect(fn, name, t, dtype, dims);
  TORCH_CHECK(t.stride(2) == 1 && (t.size(1) <= 1 || t.stride(1) == t.size(2)),
              "rnnflow_loops.", fn, ": ", name, " must have row-major [batch, width] steps "
              "(strides [*, ", t.size(2), ", 1]), got strides ", t.strides());
}

// A training loop's x [>= S, B, D] (the RNN's and LSTM's, forward and the LSTM's in-loop weight
// gradient): any step and row strides, unit stride within a row. The loops read each step's rows
// through their stride (a batch-major input's transposed view, a slice of a wider D, a step
// slice: no copy first), as the inference loops do.
void expect_x(const char* fn, const Tensor& x, at::ScalarType dtype, int64_t steps,
              int64_t batch) {
  expect(fn, "x", x, dtype, {at_least(steps), exactly(batch), any_size()});
  TORCH_CHECK(x.size(2) <= 1 || x.stride(2) == 1, "rnnflow_loops.", fn,
              ": x must have unit stride within a row (strides [*, *, 1]), got strides ",
              x.strides());
}

// The rows of a float32 matrix [R, K] (any strides), or of an [S, B, K] tensor read as its S * B
// rows step by step (any strides): row k at base + (k / per) * st + (k % per) * sr, its column j
// at + j * sc. The one-off GEMMs (linear, weight_grad) take a layer's x [S, B, D] so (a
// batch-major input's transposed view: no copy to [S * B, D] first). Rows one stride apart
// throughout (a matrix; a tensor whose steps follow at the row stride: dense, a step slice, one
// step or one row) are one run of R rows. A 3-D tensor's rows are summed in order, one chain
// per row (panel_kernel's kChains false), so its runs give the bits of one run: a strided x,
// the same values laid out densely, the same numbers.
struct RowsView {
  const float* base;
  int64_t rows, cols;  // R, K
  int64_t per;         // rows per run (a step's B, or R when uniform); >= 1
  int64_t st, sr, sc;  // run (step), row and column strides
  bool by_step;        // a 3-D tensor's rows (one chain per row in the kernels)

  // f(k, n, p): rows [k, k + n) of [lo, hi), one stride apart (sr), row k at p; in order.
  template <typename F>
  void runs(int64_t lo, int64_t hi, F&& f) const {
    for (int64_t k = lo; k < hi;) {
      const int64_t s = k / per, end = std::min(hi, (s + 1) * per);
      f(k, end - k, base + s * st + (k - s * per) * sr);
      k = end;
    }
  }
};

RowsView rows_view(const Tensor& t) {
  const float* base = t.data_ptr<float>();
  if (t.dim() == 2)
    return {base, t.size(0), t.size(1), std::max<int64_t>(1, t.size(0)), 0, t.stride(0),
            t.stride(1), false};
  const int64_t S = t.size(0), B = t.size(1), R = S * B;
  const int64_t sr = B == 1 ? t.stride(0) : t.stride(1);  // B = 1: the steps are the rows
  if (S <= 1 || B <= 1 || t.stride(0) == B * t.stride(1))
    return {base, R, t.size(2), std::max<int64_t>(1, R), 0, sr, t.stride(2), true};
  return {base, R, t.size(2), B, t.stride(0), t.stride(1), t.stride(2), true};
}

// A dense [S * B, K] matrix of t's rows (2-D: t), for ATen (float64).
Tensor as_rows(const Tensor& t) { return t.dim() == 3 ? t.reshape({-1, t.size(2)}) : t; }

// ... and a contiguous [B, H] block.
void expect_rows(const char* fn, const char* name, const Tensor& t, at::ScalarType dtype,
                 int64_t batch, int64_t units) {
  expect(fn, name, t, dtype, {exactly(batch), exactly(units)});
  TORCH_CHECK(t.is_contiguous(), "rnnflow_loops.", fn, ": ", name,
              " must be contiguous, got strides ", t.strides());
}

void check_act(const char* fn, int64_t a) {
  TORCH_CHECK(a >= kTanh && a <= kLinear, "rnnflow_loops.", fn,
              ": act must be 0 (tanh), 1 (sigmoid), 2 (relu) or 3 (linear), got ", a);
}

// The loops' own dtype: float32 or float64, from the tensor that defines the layer's sizes.
at::ScalarType loop_dtype(const char* fn, const Tensor& t, const char* name) {
  TORCH_CHECK(t.defined() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble),
              "rnnflow_loops.", fn, ": ", name, " must be float32 or float64, got ",
              t.defined() ? c10::toString(t.scalar_type()) : "undefined");
  return t.scalar_type();
}

// batch_sizes: one count per step, non-increasing, each within [0, batch], at most `max_steps`
// steps (what the buffers hold).
std::vector<int64_t> check_batch_sizes(const char* fn, at::IntArrayRef batch_sizes,
                                       int64_t batch, int64_t max_steps) {
  std::vector<int64_t> bs(batch_sizes.begin(), batch_sizes.end());
  TORCH_CHECK(static_cast<int64_t>(bs.size()) <= max_steps, "rnnflow_loops.", fn,
              ": batch_sizes has ", bs.size(), " steps, more than the ", max_steps,
              " the buffers hold");
  for (size_t t = 0; t < bs.size(); ++t) {
    TORCH_CHECK(bs[t] >= 0 && bs[t] <= batch && (t == 0 || bs[t] <= bs[t - 1]),
                "rnnflow_loops.", fn, ": batch_sizes must be non-increasing, each within [0, ",
                batch, "] (the batch), got ", bs[t], " at step ", t,
                t ? " after " + std::to_string(bs[t - 1]) : std::string());
  }
  return bs;
}


// What every loop's other arguments are checked against, from the [>= S+1, B, H] state buffer
// that defines the layer (hs; cs in the LSTM's backward): its dtype, B, H and batch_sizes.
struct Layer {
  at::ScalarType dtype;
  int64_t batch, units, steps;
  std::vector<int64_t> bs;
};

Layer check_layer(const char* fn, int64_t act, const Tensor& t, const char* name,
                  at::IntArrayRef batch_sizes) {
  check_act(fn, act);
  const auto dt = loop_dtype(fn, t, name);
  expect_steps(fn, name, t, dt, {at_least(1), any_size(), any_size()});
  auto bs = check_batch_sizes(fn, batch_sizes, t.size(1), t.size(0) - 1);
  const auto steps = static_cast<int64_t>(bs.size());
  return {dt, t.size(1), t.size(2), steps, std::move(bs)};
}

// ------------------------------------------------------------------ kernel variants
#include "bf16_gemm.h"

#define RNNFLOW_LANES 4  // 128-bit generic vectors: SSE2 on x86-64, NEON on aarch64
#define RNNFLOW_NV 2
#define RNNFLOW_ROWS 4
namespace isa_generic {
#include "loops_isa.h"
}  // namespace isa_generic
#undef RNNFLOW_LANES
#undef RNNFLOW_NV
#undef RNNFLOW_ROWS

#if RNNFLOW_X86_VARIANTS
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define RNNFLOW_LANES 8  // ymm: 6 x 16 blocks, 12 accumulators + 2 panel rows + 1 broadcast
#define RNNFLOW_NV 2
#define RNNFLOW_ROWS 6
namespace isa_avx2 {
#include "loops_isa.h"
}  // namespace isa_avx2
#undef RNNFLOW_LANES
#undef RNNFLOW_NV
#undef RNNFLOW_ROWS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")
#define RNNFLOW_LANES 16  // zmm: 12 x 32 blocks, 24 accumulators
#define RNNFLOW_NV 2
#define RNNFLOW_ROWS 12
namespace isa_avx512 {
#include "loops_isa.h"
}  // namespace isa_avx512
#undef RNNFLOW_LANES
#undef RNNFLOW_NV
#undef RNNFLOW_ROWS
#pragma GCC pop_options
#endif

enum class Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr const char* kIsaNames[] = {"generic", "avx2", "avx512"};

// The CPU flags a variant's code uses (its target pragma), none for the generic one.
std::vector<std::string> isa_flags(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return {"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"};
    case Isa::kAvx2: return {"avx2", "fma"};
    default: return {};
  }
}

bool cpu_has(const std::string& flag) {
#if RNNFLOW_X86_VARIANTS
  __builtin_cpu_init();
  if (flag == "avx2") return __builtin_cpu_supports("avx2");
  if (flag == "fma") return __builtin_cpu_supports("fma");
  if (flag == "avx512f") return __builtin_cpu_supports("avx512f");
  if (flag == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (flag == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (flag == "avx512dq") return __builtin_cpu_supports("avx512dq");
#endif
  (void)flag;
  return false;
}

bool compiled(Isa isa) { return isa == Isa::kGeneric || RNNFLOW_X86_VARIANTS; }

Isa parse_isa(const std::string& name) {
  for (int i = 0; i < 3; ++i)
    if (name == kIsaNames[i]) return static_cast<Isa>(i);
  TORCH_CHECK(false, "rnnflow_loops: unknown kernel variant '", name,
              "' (known: avx512, avx2, generic)");
}

// What the CPU lacks for variant `name` (its flags; "compiled" when this build has no such
// variant); empty when it can run.
std::vector<std::string> missing_flags(c10::string_view name) {
  const Isa isa = parse_isa(std::string(name));
  if (!compiled(isa)) return {"(not compiled in this build: needs GCC on x86)"};
  std::vector<std::string> missing;
  for (const std::string& flag : isa_flags(isa))
    if (!cpu_has(flag)) missing.push_back(flag);
  return missing;
}

Isa widest_isa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2})
    if (missing_flags(kIsaNames[static_cast<int>(isa)]).empty()) return isa;
  return Isa::kGeneric;
}

std::atomic<int> g_isa{-1};  // the running variant, chosen at the first call

Isa current_isa() {
  int isa = g_isa.load(std::memory_order_relaxed);
  if (isa < 0) {
    isa = static_cast<int>(widest_isa());
    g_isa.store(isa);
  }
  return static_cast<Isa>(isa);
}

std::string isa_name() { return kIsaNames[static_cast<int>(current_isa())]; }

// The AVX512-BF16 kernel (bf16_gemm.h) runs only where the CPU has it and the avx512 variant
// runs: RNNFLOW_ISA=avx2|generic never reaches it.
bool bf16_supported() { return current_isa() == Isa::kAvx512 && cpu_has_bf16(); }

void check_bf16(const char* fn, bool bf16, at::ScalarType dt) {
  if (!bf16) return;
  TORCH_CHECK(dt == at::kFloat, "rnnflow_loops.", fn, ": bf16=True needs float32 buffers, got ",
              dt);
  TORCH_CHECK(bf16_supported(), "rnnflow_loops.", fn,
              ": bf16=True needs AVX512-BF16 and the avx512 kernel variant (running: ",
              isa_name(), ", avx512_bf16 ", cpu_has_bf16() ? "present" : "absent", ")");
}

// Runs variant `name` from now on; refuses one this CPU (or this build) cannot run.
void set_isa(c10::string_view name) {
  const std::vector<std::string> missing = missing_flags(name);
  std::string lacks;
  for (const std::string& flag : missing) lacks += (lacks.empty() ? "" : " ") + flag;
  TORCH_CHECK(missing.empty(), "rnnflow_loops: this CPU cannot run the '", std::string(name),
              "' kernels: it lacks ", lacks);
  g_isa.store(static_cast<int>(parse_isa(std::string(name))));
}

#if RNNFLOW_X86_VARIANTS
#define RNNFLOW_DISPATCH(...)                                      \
  switch (current_isa()) {                                         \
    case Isa::kAvx512: return isa_avx512::__VA_ARGS__;             \
    case Isa::kAvx2: return isa_avx2::__VA_ARGS__;                 \
    default: return isa_generic::__VA_ARGS__;                       \
  }
#else
#define RNNFLOW_DISPATCH(...) return isa_generic::__VA_ARGS__;
#endif

template <typename T>
void rnn_forward_any(const Tensor& x, const Tensor& w_x, const Tensor& bias, Tensor hs,
                     const Tensor& w, const std::vector<int64_t>& bs, int64_t a, bool zero_h0) {
  RNNFLOW_DISPATCH(rnn_forward_impl<T>(x, w_x, bias, hs, w, bs, a, zero_h0))
}
template <typename T>
std::tuple<Tensor, Tensor> rnn_backward_any(const Tensor& d_out, const Tensor& d_final,
                                            const Tensor& hs, const Tensor& w,
                                            const std::vector<int64_t>& bs, int64_t a,
                                            bool need_h0) {
  RNNFLOW_DISPATCH(rnn_backward_impl<T>(d_out, d_final, hs, w, bs, a, need_h0))
}
template <typename T>
void lstm_forward_any(const Tensor& x, const Tensor& w_x, const Tensor& bias, Tensor gates,
                      Tensor cs, Tensor hs, Tensor tcs, const Tensor& w,
                      const std::vector<int64_t>& bs, int64_t a, bool bf16, uint16_t* out16,
                      bool zero_h0) {
  RNNFLOW_DISPATCH(
      lstm_forward_impl<T>(x, w_x, bias, gates, cs, hs, tcs, w, bs, a, bf16, out16, zero_h0))
}
template <typename T>
std::tuple<Tensor, Tensor, Tensor> lstm_backward_any(
    const Tensor& d_out, const Tensor& d_final_c, const Tensor& d_final_h, const Tensor& gates,
    const Tensor& cs, const Tensor& tcs, const Tensor& w, const std::vector<int64_t>& bs,
    int64_t a, bool need_h0, bool bf16, const LoopWeightGrad* wg) {
  RNNFLOW_DISPATCH(lstm_backward_impl<T>(d_out, d_final_c, d_final_h, gates, cs, tcs, w, bs, a,
                                         need_h0, bf16, wg))
}
template <typename T>
void gru_forward_any(Tensor gates, Tensor cands, Tensor rhs, Tensor hs, const Tensor& w_g,
                     const Tensor& w_c, const std::vector<int64_t>& bs, int64_t a) {
  RNNFLOW_DISPATCH(gru_forward_impl<T>(gates, cands, rhs, hs, w_g, w_c, bs, a))
}
template <typename T>
std::tuple<Tensor, Tensor, Tensor> gru_backward_any(
    const Tensor& d_out, const Tensor& d_final, const Tensor& gates, const Tensor& cands,
    const Tensor& hs, const Tensor& w_g, const Tensor& w_c, const std::vector<int64_t>& bs,
    int64_t a, bool need_h0) {
  RNNFLOW_DISPATCH(
      gru_backward_impl<T>(d_out, d_final, gates, cands, hs, w_g, w_c, bs, a, need_h0))
}
template <typename T>
void rnn_infer_any(const Tensor& x, const Tensor& w_x, const Tensor& bias, const Tensor& w_h,
                   const Tensor& h0, Tensor out, Tensor h_final, const std::vector<int64_t>& bs,
                   int64_t a) {
  RNNFLOW_DISPATCH(rnn_infer_impl<T>(x, w_x, bias, w_h, h0, out, h_final, bs, a))
}
template <typename T>
void lstm_infer_any(const Tensor& x, const Tensor& w_x, const Tensor& bias, const Tensor& w_h,
                    Tensor out, Tensor c_final, Tensor h_final, const std::vector<int64_t>& bs,
                    int64_t a) {
  RNNFLOW_DISPATCH(lstm_infer_impl<T>(x, w_x, bias, w_h, out, c_final, h_final, bs, a))
}
template <typename T>
void gru_infer_any(const Tensor& x, const Tensor& w_gx, const Tensor& b_g, const Tensor& w_cx,
                   const Tensor& b_c, const Tensor& w_gh, const Tensor& w_ch, Tensor out,
                   Tensor h_final, const std::vector<int64_t>& bs, int64_t a) {
  RNNFLOW_DISPATCH(
      gru_infer_impl<T>(x, w_gx, b_g, w_cx, b_c, w_gh, w_ch, out, h_final, bs, a))
}
void linear_any(const RowsView& a, const Tensor& w, const float* add, int64_t ldadd,
                Tensor& out) {
  RNNFLOW_DISPATCH(linear_impl(a, w, add, ldadd, out))
}
void weight_grad_any(const std::vector<RowsView>& inputs, const Tensor& d, Tensor& d_kernel,
                     Tensor& d_bias) {
  RNNFLOW_DISPATCH(weight_grad_impl(inputs, d, d_kernel, d_bias))
}

// ------------------------------------------------------------------ entry points
// Each checks every argument, then runs the chosen variant. `onednn` is accepted for the
// Python loops' interface and unused here (every variant has its packed float32 GEMM).

// x [S, B, D], w_x [H, D] = W_x^T, bias [H]; hs [T+1, B, H]: hs[0] = h0, zeros after; w [H, H]
// = W_h^T. Each step's input projection is computed in the loop, with its recurrent product.
// zero_h0: the caller knows hs[0] is zeros (a zero initial state; not checked): step 0 skips
// h_{-1} W_h (only zero products are left out: equal up to float rounding, the x products
// summed in another grouping where a register block has few rows).
void rnn_forward(const Tensor& x, const Tensor& w_x, const Tensor& bias, Tensor hs,
                 const Tensor& w, at::IntArrayRef batch_sizes, int64_t a, bool onednn,
                 bool zero_h0) {
  constexpr const char* fn = "rnn_forward";
  const Layer l = check_layer(fn, a, hs, "hs", batch_sizes);
  const auto dt = l.dtype;
  const int64_t batch = l.batch, units = l.units;
  const int64_t steps = l.steps;
  expect_x(fn, x, dt, steps, batch);
  const int64_t depth = x.size(2);
  expect(fn, "w_x", w_x, dt, {exactly(units), exactly(depth)});
  expect(fn, "bias", bias, dt, {exactly(units)});
  expect(fn, "w", w, dt, {exactly(units), exactly(units)});
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    rnn_forward_any<scalar_t>(x, w_x, bias, hs, w, l.bs, a, zero_h0);
  });
}

// Returns d_pre [S, B, H] and dh0 [B, H]. w [H, H] = W_h (dh_prev = d_pre W_h^T).
std::tuple<Tensor, Tensor> rnn_backward(const Tensor& d_out, const Tensor& d_final,
                                        const Tensor& hs, const Tensor& w,
                                        at::IntArrayRef batch_sizes, int64_t a, bool onednn,
                                        bool need_h0) {
  constexpr const char* fn = "rnn_backward";
  const Layer l = check_layer(fn, a, hs, "hs", batch_sizes);
  const auto dt = l.dtype;
  const int64_t batch = l.batch, units = l.units;
  const int64_t steps = l.steps;
  expect_steps(fn, "d_out", d_out, dt, {at_least(steps), exactly(batch), exactly(units)});
  expect_rows(fn, "d_final", d_final, dt, batch, units);
  expect(fn, "w", w, dt, {exactly(units), exactly(units)});
  std::tuple<Tensor, Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    out = rnn_backward_any<scalar_t>(d_out, d_final, hs, w, l.bs, a, need_h0);
  });
  return out;
}

// x [S, B, D], w_x [4H, D] = W_x^T, bias [4H]; gates [S, B, 4H] (TF's i, j, f, o: x W_x + b +
// h W_h, written here, activated in place), cs [S+1, B, H] (cs[0] = c0), hs [S+1, B, H]
// (hs[0] = h0), tcs [S, B, H] = act(c); w [4H, H] = W_h^T. (No-grad runs: lstm_infer.)
// out16 (bf16=True only; may be undefined): [>= S, B, H] bfloat16, h_t rounded to it (as
// `Tensor.bfloat16()`) while the row is in cache, the outputs autocast hands on, instead of a
// conversion pass over hs afterwards; rows past each step's batch size are left as they are.
// zero_h0: the caller knows hs[0] is zeros (a zero initial state; not checked): step 0 skips
// h_{-1} W_h (only zero products are left out: equal up to float rounding, the x products
// summed in another grouping where a register block has few rows).
void lstm_forward(const Tensor& x, const Tensor& w_x, const Tensor& bias, Tensor gates, Tensor cs,
                  Tensor hs, Tensor tcs, const Tensor& w, at::IntArrayRef batch_sizes, int64_t a,
                  bool onednn, bool bf16, const std::optional<Tensor>& out16, bool zero_h0) {
  constexpr const char* fn = "lstm_forward";
  const Layer l = check_layer(fn, a, hs, "hs", batch_sizes);
  check_bf16(fn, bf16, l.dtype);
  const auto dt = l.dtype;
  const int64_t batch = l.batch, units = l.units, width = 4 * units;
  const int64_t steps = l.steps;
  expect_x(fn, x, dt, steps, batch);
  const int64_t depth = x.size(2);
  expect(fn, "w_x", w_x, dt, {exactly(width), exactly(depth)});
  expect(fn, "bias", bias, dt, {exactly(width)});
  expect(fn, "w", w, dt, {exactly(width), exactly(units)});
  expect_steps(fn, "cs", cs, dt, {at_least(steps + 1), exactly(batch), exactly(units)});
  expect_steps(fn, "tcs", tcs, dt, {at_least(steps), exactly(batch), exactly(units)});
  expect_steps(fn, "gates", gates, dt, {at_least(steps), exactly(batch), exactly(width)});
  uint16_t* o16 = nullptr;
  if (out16 && out16->defined()) {
    TORCH_CHECK(bf16, "rnnflow_loops.", fn, ": out16 needs bf16=True");
    expect_steps(fn, "out16", *out16, at::kBFloat16,
                 {at_least(steps), exactly(batch), exactly(units)});
    TORCH_CHECK(out16->size(0) <= 1 || out16->stride(0) == batch * units, "rnnflow_loops.", fn,
                ": out16 must be contiguous, got strides ", out16->strides());
    o16 = reinterpret_cast<uint16_t*>(out16->data_ptr<at::BFloat16>());
  }
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    lstm_forward_any<scalar_t>(x, w_x, bias, gates, cs, hs, tcs, w, l.bs, a, bf16, o16, zero_h0);
  });
}

// Returns d_gates [S, B, 4H], dc0, dh0 [B, H]. w [H, 4H] = W_h.
// d_kernel [D + H, 4H] and d_bias [4H] (float32 only; both or neither): the layer's weight
// gradient is computed inside the loop into them (loops_isa.h, LoopWeightGrad), from x
// [>= S, B, D] (the layer's inputs) and hs [S + 1, B, H] (lstm_forward's: hs[t] = h_{t-1}).
// keep_d_gates=False (with them only): no input gradient will need d_gates, and the returned
// one holds the last two steps' rows only ([min(S, 2), B, 4H]). zero_h0 (with them only): hs[0]
// is zeros (a zero initial state; not checked), so d_kernel's h rows take no products from
// step 0 (only zero products are left out: equal up to float rounding).
std::tuple<Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& d_out, const Tensor& d_final_c, const Tensor& d_final_h, const Tensor& gates,
    const Tensor& cs, const Tensor& tcs, const Tensor& w, at::IntArrayRef batch_sizes, int64_t a,
    bool onednn, bool need_h0, bool bf16, const std::optional<Tensor>& x,
    const std::optional<Tensor>& hs, const std::optional<Tensor>& d_kernel,
    const std::optional<Tensor>& d_bias, bool keep_d_gates, bool zero_h0) {
  constexpr const char* fn = "lstm_backward";
  const Layer l = check_layer(fn, a, cs, "cs", batch_sizes);
  check_bf16(fn, bf16, l.dtype);
  const auto dt = l.dtype;
  const int64_t batch = l.batch, units = l.units, width = 4 * units;
  const int64_t steps = l.steps;
  expect_steps(fn, "d_out", d_out, dt, {at_least(steps), exactly(batch), exactly(units)});
  expect_rows(fn, "d_final_c", d_final_c, dt, batch, units);
  expect_rows(fn, "d_final_h", d_final_h, dt, batch, units);
  expect_steps(fn, "gates", gates, dt, {at_least(steps), exactly(batch), exactly(width)});
  expect_steps(fn, "tcs", tcs, dt, {at_least(steps), exactly(batch), exactly(units)});
  expect(fn, "w", w, dt, {exactly(units), exactly(width)});
  const bool given[4] = {x && x->defined(), hs && hs->defined(), d_kernel && d_kernel->defined(),
                         d_bias && d_bias->defined()};
  std::optional<LoopWeightGrad> wg;
  Tensor dk, db;
  if (given[0] || given[1] || given[2] || given[3]) {
    TORCH_CHECK(given[0] && given[1] && given[2] && given[3], "rnnflow_loops.", fn,
                ": the weight gradient in the loop needs x, hs, d_kernel and d_bias together");
    TORCH_CHECK(dt == at::kFloat, "rnnflow_loops.", fn,
                ": the weight gradient in the loop needs float32, got ", dt);
    expect_x(fn, *x, dt, steps, batch);
    expect_steps(fn, "hs", *hs, dt, {at_least(steps + 1), exactly(batch), exactly(units)});
    expect(fn, "d_kernel", *d_kernel, dt, {exactly(x->size(2) + units), exactly(width)});
    expect(fn, "d_bias", *d_bias, dt, {exactly(width)});
    TORCH_CHECK(d_kernel->is_contiguous() && d_bias->is_contiguous(), "rnnflow_loops.", fn,
                ": d_kernel and d_bias must be contiguous");
    dk = *d_kernel;
    db = *d_bias;
    wg.emplace(LoopWeightGrad{*x, *hs, dk, db, keep_d_gates, zero_h0});
  }
  TORCH_CHECK(!zero_h0 || wg, "rnnflow_loops.", fn,
              ": zero_h0=True needs the weight gradient in the loop (x, hs, d_kernel, d_bias)");
  TORCH_CHECK(keep_d_gates || wg, "rnnflow_loops.", fn,
              ": keep_d_gates=False needs the weight gradient in the loop (x, hs, d_kernel, "
              "d_bias)");
  std::tuple<Tensor, Tensor, Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    out = lstm_backward_any<scalar_t>(d_out, d_final_c, d_final_h, gates, cs, tcs, w, l.bs, a,
                                      need_h0, bf16, wg ? &*wg : nullptr);
  });
  return out;
}

// gates [S, B, 2H] (r, u; x W_gx + b_g; sigmoid in place), cands [S, B, H] (x W_cx + b_c; act in
// place), rhs [S, B, H] = r h_prev, hs [T+1, B, H]; w_g [2H, H] = W_gh^T, w_c [H, H] = W_ch^T.
void gru_forward(Tensor gates, Tensor cands, Tensor rhs, Tensor hs, const Tensor& w_g,
                 const Tensor& w_c, at::IntArrayRef batch_sizes, int64_t a, bool onednn) {
  constexpr const char* fn = "gru_forward";
  const Layer l = check_layer(fn, a, hs, "hs", batch_sizes);
  const auto dt = l.dtype;
  const int64_t batch = l.batch, units = l.units;
  const Dim steps = at_least(l.steps);
  expect_steps(fn, "gates", gates, dt, {steps, exactly(batch), exactly(2 * units)});
  expect_steps(fn, "cands", cands, dt, {steps, exactly(batch), exactly(units)});
  expect_steps(fn, "rhs", rhs, dt, {steps, exactly(batch), exactly(units)});
  expect(fn, "w_g", w_g, dt, {exactly(2 * units), exactly(units)});
  expect(fn, "w_c", w_c, dt, {exactly(units), exactly(units)});
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    gru_forward_any<scalar_t>(gates, cands, rhs, hs, w_g, w_c, l.bs, a);
  });
}

// Returns d_gates [S, B, 2H], d_cands [S, B, H], dh0 [B, H]. w_g [H, 2H] = W_gh, w_c [H, H] = W_ch.
std::tuple<Tensor, Tensor, Tensor> gru_backward(const Tensor& d_out, const Tensor& d_final,
                                                const Tensor& gates, const Tensor& cands,
                                                const Tensor& hs, const Tensor& w_g,
                                                const Tensor& w_c, at::IntArrayRef batch_sizes,
                                                int64_t a, bool onednn, bool need_h0) {
  constexpr const char* fn = "gru_backward";
  const Layer l = check_layer(fn, a, hs, "hs", batch_sizes);
  const auto dt = l.dtype;
  const int64_t batch = l.batch, units = l.units;
  const Dim steps = at_least(l.steps);
  expect_steps(fn, "d_out", d_out, dt, {steps, exactly(batch), exactly(units)});
  expect_rows(fn, "d_final", d_final, dt, batch, units);
  expect_steps(fn, "gates", gates, dt, {steps, exactly(batch), exactly(2 * units)});
  expect_steps(fn, "cands", cands, dt, {steps, exactly(batch), exactly(units)});
  expect(fn, "w_g", w_g, dt, {exactly(units), exactly(2 * units)});
  expect(fn, "w_c", w_c, dt, {exactly(units), exactly(units)});
  std::tuple<Tensor, Tensor, Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    out = gru_backward_any<scalar_t>(d_out, d_final, gates, cands, hs, w_g, w_c, l.bs, a, need_h0);
  });
  return out;
}

// ------------------------------------------------------------------ inference entry points
// x [T, B, D]: any step and row strides (a batch-major tensor's transpose), unit stride within a
// row; h0 (and c0) [B, H] contiguous; batch_sizes as the loops' (at most T steps). The outputs
// [T, B, H] are allocated here: batch-major memory ([B, T, H], returned transposed) when
// batch_major, zeros where a row is past its length; the final state is each row's state after
// its last step.
struct InferLayer {
  at::ScalarType dtype;
  int64_t steps, batch, depth, units;
  std::vector<int64_t> bs;
};

InferLayer check_infer(const char* fn, const Tensor& x, const Tensor& h0, const char* h0_name,
                       at::IntArrayRef batch_sizes, int64_t a) {
  check_act(fn, a);
  const auto dt = loop_dtype(fn, x, "x");
  expect(fn, "x", x, dt, {any_size(), any_size(), any_size()});
  TORCH_CHECK(x.size(2) <= 1 || x.stride(2) == 1, "rnnflow_loops.", fn,
              ": x must have unit stride within a row (strides [*, *, 1]), got strides ",
              x.strides());
  const int64_t total = x.size(0), batch = x.size(1);
  expect(fn, h0_name, h0, dt, {exactly(batch), any_size()});
  expect_rows(fn, h0_name, h0, dt, batch, h0.size(1));
  auto bs = check_batch_sizes(fn, batch_sizes, batch, total);
  return {dt, total, batch, x.size(2), h0.size(1), std::move(bs)};
}

// The outputs' buffer [T, B, H] (see above), from the buffer pool: a model calling this in a
// loop drops the previous outputs before the next call, and their storage comes back instead
// of a fresh 14 MB (batch 1000) page-faulted in at every call.
Tensor infer_outputs(const InferLayer& l, bool batch_major, const at::TensorOptions& options) {
  const int64_t n = static_cast<int64_t>(l.bs.size());
  const bool full = n == l.steps && (n == 0 || l.bs[n - 1] == l.batch);
  Tensor out = batch_major ? pooled_empty({l.batch, l.steps, l.units}, options).transpose(0, 1)
                           : pooled_empty({l.steps, l.batch, l.units}, options);
  return full ? out : out.zero_();
}

// BasicRNNCell: w_x [H, D] = W_x^T, bias [H], w_h [H, H] = W_h^T. Returns (out, final h).
std::tuple<Tensor, Tensor> rnn_infer(const Tensor& x, const Tensor& w_x, const Tensor& bias,
                                     const Tensor& w_h, const Tensor& h0,
                                     at::IntArrayRef batch_sizes, int64_t a, bool batch_major) {
  constexpr const char* fn = "rnn_infer";
  const InferLayer l = check_infer(fn, x, h0, "h0", batch_sizes, a);
  const auto dt = l.dtype;
  expect(fn, "w_x", w_x, dt, {exactly(l.units), exactly(l.depth)});
  expect(fn, "bias", bias, dt, {exactly(l.units)});
  expect(fn, "w_h", w_h, dt, {exactly(l.units), exactly(l.units)});
  Tensor out = infer_outputs(l, batch_major, x.options());
  Tensor h = h0.clone();
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    rnn_infer_any<scalar_t>(x, w_x, bias, w_h, h0, out, h, l.bs, a);
  });
  return {out, h};
}

// BasicLSTMCell (TF's gate columns i, j, f, o, forget_bias folded into bias): w_x [4H, D],
// bias [4H], w_h [4H, H]. Returns (out, final c, final h).
std::tuple<Tensor, Tensor, Tensor> lstm_infer(const Tensor& x, const Tensor& w_x,
                                              const Tensor& bias, const Tensor& w_h,
                                              const Tensor& c0, const Tensor& h0,
                                              at::IntArrayRef batch_sizes, int64_t a,
                                              bool batch_major) {
  constexpr const char* fn = "lstm_infer";
  const InferLayer l = check_infer(fn, x, h0, "h0", batch_sizes, a);
  const auto dt = l.dtype;
  const int64_t width = 4 * l.units;
  expect_rows(fn, "c0", c0, dt, l.batch, l.units);
  expect(fn, "w_x", w_x, dt, {exactly(width), exactly(l.depth)});
  expect(fn, "bias", bias, dt, {exactly(width)});
  expect(fn, "w_h", w_h, dt, {exactly(width), exactly(l.units)});
  Tensor out = infer_outputs(l, batch_major, x.options());
  Tensor c = c0.clone(), h = h0.clone();
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    lstm_infer_any<scalar_t>(x, w_x, bias, w_h, out, c, h, l.bs, a);
  });
  return {out, c, h};
}

// GRUCell: w_gx [2H, D], b_g [2H], w_cx [H, D], b_c [H], w_gh [2H, H], w_ch [H, H] (each W^T).
// Returns (out, final h).
std::tuple<Tensor, Tensor> gru_infer(const Tensor& x, const Tensor& w_gx, const Tensor& b_g,
                                     const Tensor& w_cx, const Tensor& b_c, const Tensor& w_gh,
                                     const Tensor& w_ch, const Tensor& h0,
                                     at::IntArrayRef batch_sizes, int64_t a, bool batch_major) {
  constexpr const char* fn = "gru_infer";
  const InferLayer l = check_infer(fn, x, h0, "h0", batch_sizes, a);
  const auto dt = l.dtype;
  const int64_t units = l.units;
  expect(fn, "w_gx", w_gx, dt, {exactly(2 * units), exactly(l.depth)});
  expect(fn, "b_g", b_g, dt, {exactly(2 * units)});
  expect(fn, "w_cx", w_cx, dt, {exactly(units), exactly(l.depth)});
  expect(fn, "b_c", b_c, dt, {exactly(units)});
  expect(fn, "w_gh", w_gh, dt, {exactly(2 * units), exactly(units)});
  expect(fn, "w_ch", w_ch, dt, {exactly(units), exactly(units)});
  Tensor out = infer_outputs(l, batch_major, x.options());
  Tensor h = h0.clone();
  AT_DISPATCH_FLOATING_TYPES(dt, fn, [&] {
    gru_infer_any<scalar_t>(x, w_gx, b_g, w_cx, b_c, w_gh, w_ch, out, h, l.bs, a);
  });
  return {out, h};
}

// out = a w^T (+ add) for the GEMMs over all steps in _fused_kernels.py (input projections,
// weight and input gradients): a [n, K], or a layer's x [S, B, K] as its n = S * B rows (step
// by step: RowsView), and w [N, K], each with any strides (a transposed view costs nothing),
// add [N] (a bias) or [n, N]. Returns [n, N]. float32: the packed kernel (1.1-3x oneDNN's
// _linear_pointwise at these shapes with AVX-512 here); float64: ATen's addmm.
Tensor linear(const Tensor& a, const Tensor& w, const std::optional<Tensor>& add) {
  constexpr const char* fn = "linear";
  const auto dt = loop_dtype(fn, a, "a");
  if (a.dim() == 3) expect(fn, "a", a, dt, {any_size(), any_size(), any_size()});
  else expect(fn, "a", a, dt, {any_size(), any_size()});
  const int64_t K = a.size(a.dim() - 1);
  const int64_t n = a.dim() == 3 ? a.size(0) * a.size(1) : a.size(0);
  expect(fn, "w", w, dt, {any_size(), exactly(K)});
  const int64_t N = w.size(0);
  if (add) {
    if (add->dim() == 1) expect(fn, "add", *add, dt, {exactly(N)});
    else expect(fn, "add", *add, dt, {exactly(n), exactly(N)});
  }
  if (dt != at::kFloat || n == 0 || K == 0) {
    if (add) return at::addmm(*add, as_rows(a), w.t());
    return at::mm(as_rows(a), w.t());
  }
  Tensor out = pooled_empty({n, N}, a.options());
  Tensor bias;
  if (add) bias = add->contiguous();
  linear_any(rows_view(a), w, add ? bias.data_ptr<float>() : nullptr,
             add && add->dim() == 2 ? N : 0, out);
  return out;
}

// The parameter gradients of a layer from the gradient of its pre-activations d [R, G] (R = all
// steps' rows) and the inputs its kernel multiplied, each [R_i, K_i], or [S_i, B, K_i] read as
// its R_i = S_i * B rows (a layer's x through its strides: RowsView), with R_i <= R, paired with
// d's last R_i rows (the rows before them are zeros, left out: a zero initial state's h_{-1}):
// d_kernel = the inputs_i^T d stacked on rows [sum K_i, G], d_bias = d's column sums [G]. One
// pass over d (7 MB for the tutorial's LSTM) for all of them in float32 (loops_isa.h); ATen's
// GEMMs in float64.
std::tuple<Tensor, Tensor> weight_grad(at::TensorList inputs, const Tensor& d) {
  constexpr const char* fn = "weight_grad";
  const auto dt = loop_dtype(fn, d, "d");
  expect(fn, "d", d, dt, {any_size(), any_size()});
  const int64_t R = d.size(0), G = d.size(1);
  int64_t total = 0;
  for (const Tensor& x : inputs) {
    if (x.dim() == 3) {
      expect(fn, "inputs[i]", x, dt, {any_size(), any_size(), any_size()});
      TORCH_CHECK(x.size(0) * x.size(1) <= R, "rnnflow_loops.", fn, ": inputs[i] [S, B, K] "
                  "must have at most ", R, " rows (S * B; d's rows), got ", x.sizes());
    } else {
      expect(fn, "inputs[i]", x, dt, {Dim{0, R}, any_size()});
    }
    total += x.size(x.dim() - 1);
  }
  if (dt != at::kFloat || R == 0) {
    std::vector<Tensor> parts;
    for (const Tensor& x : inputs) {
      const Tensor rows = as_rows(x);
      parts.push_back(at::mm(rows.t(), d.narrow(0, R - rows.size(0), rows.size(0))));
    }
    if (parts.empty()) return {at::empty({0, G}, d.options()), d.sum(0)};
    return {at::cat(parts), d.sum(0)};
  }
  std::vector<RowsView> views;
  for (const Tensor& x : inputs) views.push_back(rows_view(x));
  Tensor d_kernel = at::empty({total, G}, d.options());
  Tensor d_bias = at::empty({G}, d.options());
  weight_grad_any(views, d, d_kernel, d_bias);
  return {d_kernel, d_bias};
}

// Whether the packed GEMM is the fast path for the one-off GEMMs (_fused_kernels.lin): with
// the avx512 and avx2 variants; the generic one (128-bit vectors) is for portability, and
// oneDNN or ATen serve those GEMMs better there. The step loops use the packed GEMM always.
bool packed_gemm() { return current_isa() != Isa::kGeneric; }

// weight_grad's bfloat16 form (bf16_gemm.h, bf16_weight_grad): d_kernel from both sides
// rounded to bfloat16, float32 accumulation; d_bias = d summed over rows in float32. The LSTM's
// bf16 backward computes its own inside the loop (lstm_backward's d_kernel, the same chunks);
// this op: tests, and timing the kernel alone.
std::tuple<Tensor, Tensor> weight_grad_bf16(at::TensorList inputs, const Tensor& d) {
  constexpr const char* fn = "weight_grad_bf16";
  check_bf16(fn, true, d.scalar_type());
  expect(fn, "d", d, at::kFloat, {any_size(), any_size()});
  const int64_t R = d.size(0), G = d.size(1);
  int64_t total = 0;
  std::vector<Tensor> dense;
  for (const Tensor& x : inputs) {
    expect(fn, "inputs[i]", x, at::kFloat, {exactly(R), any_size()});
    dense.push_back(x.stride(1) == 1 ? x : x.contiguous());
    total += x.size(1);
  }
  Tensor dd = d.contiguous();
  Tensor d_kernel = at::empty({total, G}, d.options());
  if (R == 0 || total == 0 || G == 0) return {d_kernel.zero_(), dd.sum(0)};
  Tensor d_bias = at::empty({G}, d.options());
  bf16_weight_grad(dense, dd, d_kernel, d_bias);
  return {d_kernel, d_bias};
}

// a [n, K] bf16(a) bf16(w)^T with w [N, K] (float32, any strides): the bfloat16 step GEMM
// alone, rows split over threads (the LSTM's input gradient under bf16; tests, benchmarks).
Tensor linear_bf16(const Tensor& a, const Tensor& w) {
  constexpr const char* fn = "linear_bf16";
  check_bf16(fn, true, a.scalar_type());
  TORCH_CHECK(a.dim() == 2 && w.dim() == 2 && a.size(1) == w.size(1) && w.scalar_type() == at::kFloat,
              "rnnflow_loops.linear_bf16: expected a [n, K] and w [N, K] float32, got a ",
              a.sizes(), " ", a.scalar_type(), " and w ", w.sizes(), " ", w.scalar_type());
  const Tensor ac = a.contiguous();
  const Tensor wd = w.detach();
  const Tensor packed = bf16_pack(wd.data_ptr<float>(), wd.stride(0), wd.stride(1), wd.size(0),
                                  wd.size(1));
  const int64_t K = a.size(1), N = w.size(0);
  Tensor out = at::empty({a.size(0), N}, a.options());
  const float* pa = ac.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const auto* pw = reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>());
  at::parallel_for(0, a.size(0), 8 * kBfRows, [&](int64_t r0, int64_t r1) {
    bf16_step_gemm(r1 - r0, pa + r0 * K, K, K, pw, N, nullptr, 0, po + r0 * N, N);
  });
  return out;
}

// act(x) elementwise, as the running variant's loops compute it (float32 or float64, any
// shape; x is read dense): for the tests of the activations' accuracy.
template <typename T>
void activation_any(const T* src, T* dst, int64_t n, int64_t a) {
  RNNFLOW_DISPATCH(activation_impl<T>(src, dst, n, a))
}

Tensor activation(const Tensor& x, int64_t act) {
  check_act("activation", act);
  const bool real = x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble;
  TORCH_CHECK(x.device().is_cpu() && real,
              "rnnflow_loops.activation: x must be a float32 or float64 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  const Tensor src = x.contiguous();
  Tensor out = at::empty_like(src);
  if (x.scalar_type() == at::kFloat)
    activation_any<float>(src.data_ptr<float>(), out.data_ptr<float>(), src.numel(), act);
  else
    activation_any<double>(src.data_ptr<double>(), out.data_ptr<double>(), src.numel(), act);
  return out;
}

// The pool to Python (_fused_kernels._buffer): float32/float64 CPU step buffers.
Tensor pool_empty(at::IntArrayRef size, at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16,
              "rnnflow_loops.empty: dtype must be float32, float64 or bfloat16 (lstm_forward's "
              "out16), got ", c10::toString(dtype));
  for (int64_t s : size)
    TORCH_CHECK(s >= 0, "rnnflow_loops.empty: sizes must be >= 0, got ", size);
  return pooled_empty(size, at::TensorOptions().dtype(dtype));
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> names;
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kGeneric})
    if (compiled(isa)) names.emplace_back(kIsaNames[static_cast<int>(isa)]);
  return names;
}

}  // namespace

TORCH_LIBRARY(rnnflow_loops, m) {
  m.def("linear(Tensor a, Tensor w, Tensor? add) -> Tensor");
  m.def("weight_grad(Tensor[] inputs, Tensor d) -> (Tensor, Tensor)");
  m.def("packed_gemm() -> bool", &packed_gemm);
  m.def("bf16_supported() -> bool", &bf16_supported);
  m.def("linear_bf16(Tensor a, Tensor w) -> Tensor");
  m.def("activation(Tensor x, int act) -> Tensor");
  m.def("weight_grad_bf16(Tensor[] inputs, Tensor d) -> (Tensor, Tensor)");
  m.def("isa() -> str", &isa_name);
  m.def("set_isa(str name) -> ()", &set_isa);
  m.def("missing_flags(str name) -> str[]", &missing_flags);
  m.def("compiled_isas() -> str[]", &compiled_isas);
  m.def("empty(int[] size, ScalarType dtype) -> Tensor", &pool_empty);
  m.def("rnn_forward(Tensor x, Tensor w_x, Tensor bias, Tensor(a!) hs, Tensor w, "
        "int[] batch_sizes, int act, bool onednn, bool zero_h0=False) -> ()");
  m.def("rnn_backward(Tensor d_out, Tensor d_final, Tensor hs, Tensor w, int[] batch_sizes, "
        "int act, bool onednn, bool need_h0) -> (Tensor, Tensor)");
  m.def("lstm_forward(Tensor x, Tensor w_x, Tensor bias, Tensor(a!) gates, Tensor(b!) cs, "
        "Tensor(c!) hs, Tensor(d!) tcs, Tensor w, int[] batch_sizes, int act, bool onednn, "
        "bool bf16=False, Tensor(e!)? out16=None, bool zero_h0=False) -> ()");
  m.def("lstm_backward(Tensor d_out, Tensor d_final_c, Tensor d_final_h, Tensor gates, "
        "Tensor cs, Tensor tcs, Tensor w, int[] batch_sizes, int act, bool onednn, bool need_h0, "
        "bool bf16=False, Tensor? x=None, Tensor? hs=None, Tensor(f!)? d_kernel=None, "
        "Tensor(g!)? d_bias=None, bool keep_d_gates=True, bool zero_h0=False) -> "
        "(Tensor, Tensor, Tensor)");
  m.def("rnn_infer(Tensor x, Tensor w_x, Tensor bias, Tensor w_h, Tensor h0, int[] batch_sizes, "
        "int act, bool batch_major) -> (Tensor, Tensor)");
  m.def("lstm_infer(Tensor x, Tensor w_x, Tensor bias, Tensor w_h, Tensor c0, Tensor h0, "
        "int[] batch_sizes, int act, bool batch_major) -> (Tensor, Tensor, Tensor)");
  m.def("gru_infer(Tensor x, Tensor w_gx, Tensor b_g, Tensor w_cx, Tensor b_c, Tensor w_gh, "
        "Tensor w_ch, Tensor h0, int[] batch_sizes, int act, bool batch_major) "
        "-> (Tensor, Tensor)");
  m.def("gru_forward(Tensor(a!) gates, Tensor(b!) cands, Tensor(c!) rhs, Tensor(d!) hs, "
        "Tensor w_g, Tensor w_c, int[] batch_sizes, int act, bool onednn) -> ()");
  m.def("gru_backward(Tensor d_out, Tensor d_final, Tensor gates, Tensor cands, Tensor hs, "
        "Tensor w_g, Tensor w_c, int[] batch_sizes, int act, bool onednn, bool need_h0) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rnnflow_loops, CPU, m) {
  m.impl("linear", &linear);
  m.impl("linear_bf16", &linear_bf16);
  m.impl("activation", &activation);
  m.impl("weight_grad_bf16", &weight_grad_bf16);
  m.impl("weight_grad", &weight_grad);
  m.impl("rnn_forward", &rnn_forward);
  m.impl("rnn_backward", &rnn_backward);
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
  m.impl("rnn_infer", &rnn_infer);
  m.impl("lstm_infer", &lstm_infer);
  m.impl("gru_infer", &gru_infer);
}
