// The ISA-dependent half of loops.cpp: the packed step GEMM, the gate maths and the time loops.
//
// loops.cpp includes this file once per kernel variant, each time inside its own namespace and
// under its own `#pragma GCC target` (avx512: 16 float lanes, 12 x 32 register blocks; avx2:
// 8 lanes, 6 x 16; generic: 4 lanes, 4 x 8, the build's baseline), with these macros set:
//   RNNFLOW_LANES  floats per vector register (the vector width)
//   RNNFLOW_NV     vectors per panel row (the panel is RNNFLOW_LANES * RNNFLOW_NV columns)
//   RNNFLOW_ROWS   rows per register block (RNNFLOW_ROWS * RNNFLOW_NV accumulators)
// so one source gives every variant, and the compiler vectorises the gate maths to the same
// width. No intrinsics: GCC's vector extensions carry the width. Everything the variants share
// and that is not arithmetic (argument checks, the buffer pool, dispatch) stays in loops.cpp.
// Not a header of its own: no include guard, no includes (loops.cpp includes everything first).

using at::Tensor;

// ------------------------------------------------------------------ elementwise maths
// expf after Cephes (range reduction + degree-6 polynomial, ~1 ulp), written so that GCC
// vectorises the loops that call it: no libm call, rounding by the 1.5 * 2^23 trick, 2^n built
// from the bits. NaN propagates; the clamp keeps 2^n a normal float.
inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shifted = x * 1.44269504088896341f + 12582912.0f;  // round(x log2 e) + 1.5 * 2^23
  const float fx = shifted - 12582912.0f;
  uint32_t sbits;
  std::memcpy(&sbits, &shifted, sizeof(sbits));
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;  // x - fx ln 2, in two parts
  const float z = x * x;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const uint32_t bits = (sbits - 0x4B400000u + 127u) << 23;  // 2^fx
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

template <typename T>
struct Math;
template <>
struct Math<float> {
  static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
  // 1 - 2 / (1 + e^{2x}): within ~1e-7 absolute of tanh (the Python path's 2 sigmoid(2x) - 1).
  static inline float tanh(float x) { return 1.0f - 2.0f / (1.0f + exp_f(2.0f * x)); }
};
template <>
struct Math<double> {
  static inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static inline double tanh(double x) { return std::tanh(x); }
};

template <int A, typename T>
inline T act(T x) {
  if constexpr (A == kTanh) return Math<T>::tanh(x);
  else if constexpr (A == kSigmoid) return Math<T>::sigmoid(x);
  else if constexpr (A == kRelu) return x > T(0) ? x : T(0);
  else return x;
}

// d act / d pre-activation from the activation's output y.
template <int A, typename T>
inline T act_grad(T y) {
  if constexpr (A == kTanh) return T(1) - y * y;
  else if constexpr (A == kSigmoid) return y - y * y;
  else if constexpr (A == kRelu) return y > T(0) ? T(1) : T(0);
  else return T(1);
}

#if RNNFLOW_LANES == 16
// The avx512 variant's float32 sigmoid and tanh, 16 lanes at a time: the same formulas, range
// reduction and polynomial as exp_f, but 2^n applied by `vscalefps` (one instruction for the
// integer add, shift and multiply that build 2^n from bits; it also saturates to inf or 0, so
// the clamp can be wide: x in [-104, 104], where n = round(x log2 e) keeps r = x - n ln 2 exact
// to float32 rounding) and n by `vrndscaleps`: 16% less time for an LSTM step's gate maths
// (0.79 -> 0.66 ms for 28 steps x 128 rows x 640 activations, measured alone). NaN propagates
// (max/min return their second operand, x, for a NaN). Error against float64 (every 61st
// float32 in [-104, 104]): sigmoid 2.32 ulps, tanh 2.98 x 2^-24 absolute, the same as exp_f's
// (tests/recurrence/test_activations.py derives and checks the bounds).
inline __m512 exp_zmm(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(104.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // x - n ln 2, in two parts
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  const __m512 z = _mm512_mul_ps(r, r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_add_ps(_mm512_fmadd_ps(y, z, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

template <int A>
inline __m512 act_zmm(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  if constexpr (A == kSigmoid)  // 1 / (1 + e^{-x})
    return _mm512_div_ps(one, _mm512_add_ps(one, exp_zmm(_mm512_sub_ps(_mm512_setzero_ps(), x))));
  else  // tanh: 1 - 2 / (1 + e^{2x})
    return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f),
                                            _mm512_add_ps(one, exp_zmm(_mm512_add_ps(x, x)))));
}
#endif

// dst[i] = act(src[i]) (dst may be src). Every sigmoid and tanh of the loops goes through here
// or lstm_cell (below), which compute them the same way (act_zmm, or act), so a variant's
// activation has the same bits wherever it is applied.
template <int A, typename T>
inline void act_into(const T* src, T* dst, int64_t n) {
#if RNNFLOW_LANES == 16
  if constexpr (std::is_same_v<T, float> && (A == kSigmoid || A == kTanh)) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, act_zmm<A>(_mm512_loadu_ps(src + i)));
    if (i < n) {  // the tail through the same lanes, masked
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
      _mm512_mask_storeu_ps(dst + i, m, act_zmm<A>(_mm512_maskz_loadu_ps(m, src + i)));
    }
    return;
  }
#endif
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) dst[i] = act<A>(src[i]);
}

// One row of the LSTM's cell update: c = f c_prev + i j, tc = act(c) (null: not kept), h = o tc,
// units wide (c may be c_prev: updated in place). One pass; the avx512 variant's float32 runs
// act_zmm on whole vectors and a masked tail, the same lanes act_into uses.
template <int A, typename T>
inline void lstm_cell(const T* i, const T* j, const T* f, const T* o, const T* c_prev, T* c,
                      T* tc, T* h, int64_t units) {
#if RNNFLOW_LANES == 16
  if constexpr (std::is_same_v<T, float> && (A == kSigmoid || A == kTanh)) {
    for (int64_t k = 0; k < units; k += 16) {
      const int64_t left = units - k;
      const __mmask16 m = left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1);
      const __m512 cv = _mm512_fmadd_ps(
          _mm512_maskz_loadu_ps(m, f + k), _mm512_maskz_loadu_ps(m, c_prev + k),
          _mm512_mul_ps(_mm512_maskz_loadu_ps(m, i + k), _mm512_maskz_loadu_ps(m, j + k)));
      _mm512_mask_storeu_ps(c + k, m, cv);
      const __m512 ac = act_zmm<A>(cv);
      if (tc) _mm512_mask_storeu_ps(tc + k, m, ac);
      _mm512_mask_storeu_ps(h + k, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, o + k), ac));
    }
    return;
  }
#endif
#pragma GCC ivdep
  for (int64_t k = 0; k < units; ++k) {
    const T cv = f[k] * c_prev[k] + i[k] * j[k];
    c[k] = cv;
    const T ac = act<A>(cv);
    if (tc) tc[k] = ac;
    h[k] = o[k] * ac;
  }
}

// The activation alone over n elements, as the loops apply it (loops.cpp `activation`: the
// tests of its accuracy).
template <typename T>
void activation_impl(const T* src, T* dst, int64_t n, int64_t a) {
  with_act(a, [&](auto A) { act_into<decltype(A)::value>(src, dst, n); });
}

// One row of an LSTM step's gate pre-activations [4H] (TF's i, j, f, o) activated in place:
// sigmoid for i, f and o, the cell's activation for j.
template <int A, typename T>
inline void lstm_gates(T* g, int64_t units) {
  act_into<kSigmoid>(g, g, units);
  act_into<A>(g + units, g + units, units);
  act_into<kSigmoid>(g + 2 * units, g + 2 * units, 2 * units);
}

// ------------------------------------------------------------------ GEMMs
// Every step multiplies a small [n, K] block by the same recurrent weight w [N, K] (nn.Linear's
// layout: out = a w^T + add). Library GEMMs repack w and dispatch on every call: oneDNN costs
// ~25 us per call here before any arithmetic (a 128 x 128 x 128 product took 40 us, 61% of the
// machine's peak), MKL's sgemm runs AVX2 on this AMD CPU. So the float32 step GEMM is our own:
// w is packed once per loop into panels of kPanel columns ([N/kPanel][K][kPanel], the last
// panel zero-padded), and a kRows x kPanel register-blocked kernel (a's elements broadcast) runs
// over each panel while it stays in L1. AVX-512 (12 x 32, 24 zmm accumulators): 250-260 GFLOP/s
// on one core from 1 x 128 to 1000 x 1024 x 4096, 2.5x oneDNN at 128^3. The panels are split
// over threads (at::parallel_for) when a product is large enough. float64: oneDNN's
// _linear_pointwise is float32 only, so ATen's addmm.
constexpr int64_t kLanes = RNNFLOW_LANES;
constexpr int64_t kPanel = RNNFLOW_LANES * RNNFLOW_NV;  // columns per panel
constexpr int kNv = RNNFLOW_NV;
constexpr int kRows = RNNFLOW_ROWS;
constexpr int64_t kMacsPerThread = 1 << 18;
constexpr int64_t kSmallWeightBytes = 256 << 10;  // packed whole for a one-off GEMM
typedef float Vec __attribute__((vector_size(RNNFLOW_LANES * sizeof(float))));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof(v)); }

// Independent accumulator chains for a block of R rows: a full block's R * kNv accumulators
// keep the FMA units busy, but with few rows (batch 1 at inference: R = 1, 2 accumulators)
// each FMA waits for the previous one (4 cycles), so small blocks split K over C chains,
// summed at the end, within the same register budget (C * R <= kRows).
template <int R>
constexpr int chains() {
  return R * 4 <= kRows ? 4 : (R * 2 <= kRows ? 2 : 1);
}

// The kernel below for a block of R rows with C = chains<R>() > 1: k = c (mod C) accumulates
// into chain c.
template <int R>
inline void panel_kernel_chains(const float* a, int64_t lda, int64_t ak, const float* panel,
                                int64_t ldp, int64_t K, const float* add, int64_t ldadd, float* c,
                                int64_t ldc) {
  constexpr int C = chains<R>();
  Vec acc[C][R][kNv];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
      acc[0][r][v] = add ? load(add + r * ldadd + v * kLanes) : Vec{};
#pragma GCC unroll 4
      for (int ch = 1; ch < C; ++ch) acc[ch][r][v] = Vec{};
    }
  int64_t k = 0;
  for (; k + C <= K; k += C) {
#pragma GCC unroll 4
    for (int ch = 0; ch < C; ++ch) {
      Vec b[kNv];
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) b[v] = load(panel + (k + ch) * ldp + v * kLanes);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float av = a[r * lda + (k + ch) * ak];
#pragma GCC unroll 4
        for (int v = 0; v < kNv; ++v) acc[ch][r][v] += av * b[v];
      }
    }
  }
  for (; k < K; ++k) {
    Vec b[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) b[v] = load(panel + k * ldp + v * kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float av = a[r * lda + k * ak];
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[0][r][v] += av * b[v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
#pragma GCC unroll 4
      for (int ch = 1; ch < C; ++ch) acc[0][r][v] += acc[ch][r][v];
      store(c + r * ldc + v * kLanes, acc[0][r][v]);
    }
}

// c[r, :kPanel] = a[r, :K] . panel + add[r, :kPanel] for r < R (add may be null, or c). a's
// element (r, k) is a[r * lda + k * ak]: rows or columns contiguous run at the same speed.
// kChains false: one chain whatever R, so each row's sum is add + the k terms in order,
// whichever block the row is in and however K is split into calls (each call's sums stored and
// reloaded exactly): the one-off GEMMs over a layer's x read step by step (RowsView) give the
// bits of the same values laid out densely.
template <int R, bool kChains = true>
inline void panel_kernel(const float* a, int64_t lda, int64_t ak, const float* panel, int64_t ldp,
                         int64_t K, const float* add, int64_t ldadd, float* c, int64_t ldc) {
  if constexpr (kChains && chains<R>() > 1) {
    return panel_kernel_chains<R>(a, lda, ak, panel, ldp, K, add, ldadd, c, ldc);
  }
  Vec acc[R][kNv];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[r][v] = add ? load(add + r * ldadd + v * kLanes) : Vec{};
  for (int64_t k = 0; k < K; ++k) {
    Vec b[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) b[v] = load(panel + k * ldp + v * kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float av = a[r * lda + k * ak];  // scalar * vector: broadcast (not 0 + av, an add)
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[r][v] += av * b[v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) store(c + r * ldc + v * kLanes, acc[r][v]);
}

// The row remainder (fewer than kRows rows) picks its kernel at run time.
template <int R, bool kChains = true>
inline void panel_tail(int rows_left, const float* a, int64_t lda, int64_t ak, const float* panel,
                       int64_t ldp, int64_t K, const float* add, int64_t ldadd, float* c,
                       int64_t ldc) {
  if constexpr (R > 0) {
    if (rows_left == R)
      panel_kernel<R, kChains>(a, lda, ak, panel, ldp, K, add, ldadd, c, ldc);
    else
      panel_tail<R - 1, kChains>(rows_left, a, lda, ak, panel, ldp, K, add, ldadd, c, ldc);
  }
}

// Rows [k0, k0 + kc) of w's panel p (w [N, K], element (i, k) at w[i * s0 + k * s1]) into
// dst [kc][kPanel], zero past column N.
inline void pack_panel(const float* w, int64_t s0, int64_t s1, int64_t N, int64_t p, int64_t k0,
                       int64_t kc, float* dst) {
  const int64_t width = std::min(kPanel, N - p * kPanel);
  const float* src = w + p * kPanel * s0 + k0 * s1;
  if (s0 == 1) {  // w^T is row-major: each k is a run of kPanel floats
    for (int64_t k = 0; k < kc; ++k) {
      std::memcpy(dst + k * kPanel, src + k * s1, width * sizeof(float));
      std::fill(dst + k * kPanel + width, dst + (k + 1) * kPanel, 0.0f);
    }
    return;
  }
  if (width < kPanel) std::fill(dst, dst + kc * kPanel, 0.0f);
  for (int64_t j = 0; j < width; ++j)
    for (int64_t k = 0; k < kc; ++k) dst[k * kPanel + j] = src[j * s0 + k * s1];
}

// out[:, panel p's columns] = a . panel (+ add) for all n rows of a, a register block at a time.
// panel [kc][kPanel] holds rows [0, kc) of the K dimension (a and add are offset by the caller).
// A partial last panel (N not a multiple of kPanel) goes through a block on the stack, so no
// column past N is read or written.
template <bool kChains = true>
inline void panel_rows(int64_t n, const float* a, int64_t lda, int64_t ak, const float* panel,
                       int64_t ldp, int64_t kc, const float* add, int64_t ldadd, float* out, int64_t ldc,
                       int64_t p, int64_t N) {
  const int64_t col = p * kPanel, width = std::min(kPanel, N - col);
  const float* add_col = add ? add + col : nullptr;
  float* out_col = out + col;
  if (width == kPanel) {
    int64_t i = 0;
    for (; i + kRows <= n; i += kRows)
      panel_kernel<kRows, kChains>(a + i * lda, lda, ak, panel, ldp, kc, add_col ? add_col + i * ldadd : nullptr,
                          ldadd, out_col + i * ldc, ldc);
    if (i < n)
      panel_tail<kRows - 1, kChains>(static_cast<int>(n - i), a + i * lda, lda, ak, panel, ldp, kc,
                            add_col ? add_col + i * ldadd : nullptr, ldadd, out_col + i * ldc,
                            ldc);
    return;
  }
  alignas(64) float block[kRows * kPanel];
  for (int64_t i = 0; i < n; i += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, n - i));
    std::fill(block, block + kRows * kPanel, 0.0f);
    if (add_col)
      for (int r = 0; r < rows; ++r)
        std::memcpy(block + r * kPanel, add_col + (i + r) * ldadd, width * sizeof(float));
    panel_tail<kRows, kChains>(rows, a + i * lda, lda, ak, panel, ldp, kc, block, kPanel, block,
                               kPanel);
    for (int r = 0; r < rows; ++r)
      std::memcpy(out_col + (i + r) * ldc, block + r * kPanel, width * sizeof(float));
  }
}

// A recurrent weight w [N, K] and the step GEMMs with it, out[n, N] = a[n, K] w^T (+ add), on
// row-major blocks given by pointer and row stride: ATen views (select, narrow) cost ~0.5 us
// each and a step took several, half of the loop's time at batch 1. `add` may be `out`.
template <typename T>
class StepWeight {
 public:
  // Detached: the library path may run on a worker thread, where grad mode is on. `max_rows`:
  // the most rows a product will have. When they fit one register block and w^T is row-major
  // with whole panels (w = a TF kernel's rows, transposed), the float32 kernel reads w in place:
  // each panel is then used once per product, and packing it (a copy of w per call) cost more
  // than it saved at batch 1.
  // `bf16` (float32 only; the caller checked bf16_supported()): the products round both
  // operands to bfloat16 and run the AVX512-BF16 kernel (bf16_gemm.h), w packed once here.
  explicit StepWeight(const Tensor& w, int64_t max_rows = std::numeric_limits<int64_t>::max(),
                      bool bf16 = false)
      : w_(w.detach()), depth_(w_.size(1)) {
    if constexpr (std::is_same_v<T, float>) {
      if (bf16) {
        bf16_ = true;
        packed_ = bf16_pack(w_.data_ptr<float>(), w_.stride(0), w_.stride(1), w_.size(0),
                            w_.size(1));
        return;
      }
      direct_ = max_rows <= kRows && w_.size(0) % kPanel == 0 && w_.stride(0) == 1;
      if (!direct_) pack({w_});
    } else {
      w_ = w_.contiguous();  // ATen's addmm wants a dense weight
    }
  }

  // float32: the LSTM's w_x [N, D] and w [N, H] as one weight [N, D + H] (each panel's D rows
  // of w_x, then its H rows of w): products with rows [x_t | h_{t-1}] side by side.
  StepWeight(const Tensor& w_x, const Tensor& w)
      : w_(w.detach()), depth_(w_x.size(1) + w.size(1)) {
    static_assert(std::is_same_v<T, float>, "the joint weight is float32's");
    pack({w_x.detach(), w_});
  }

  void operator()(int64_t n, const T* a, int64_t lda, const T* add, int64_t ldadd, T* out,
                  int64_t ldc) const {
    if (n == 0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (bf16_)
        return bf16_step_gemm(n, a, lda, w_.size(1),
                              reinterpret_cast<const uint32_t*>(packed_.data_ptr<int32_t>()),
                              w_.size(0), add, ldadd, out, ldc);
      return run(n, a, lda, 1, add, ldadd, out, ldc);
    } else {
      library(n, a, lda, add, ldadd, out, ldc);
    }
  }

  const float* packed_data() const { return packed_.data_ptr<float>(); }

  // The packed GEMM with a's element (r, k) at a[r * lda + k * ak]; add's row stride may be 0
  // (a bias).
  void run(int64_t n, const float* a, int64_t lda, int64_t ak, const float* add, int64_t ldadd,
           float* out, int64_t ldc) const {
    run_rows(depth_, n, a, lda, ak, add, ldadd, out, ldc);
  }

  // The joint weight's first `rows` rows alone (the first part's, W_x of [W_x; W_h]): out[n, N]
  // = a[n, rows] W_x (+ add), for a step whose h_{t-1} is zeros (its products skipped, not
  // added as zeros).
  void leading(int64_t rows, int64_t n, const float* a, int64_t lda, const float* add,
               int64_t ldadd, float* out, int64_t ldc) const {
    TORCH_CHECK(!direct_ && !bf16_ && rows <= depth_, "StepWeight::leading: a packed float32 weight");
    if (n > 0) run_rows(rows, n, a, lda, 1, add, ldadd, out, ldc);
  }

 private:
  // run() over the first K rows of each packed panel (all depth_ of them: the whole weight).
  void run_rows(int64_t K, int64_t n, const float* a, int64_t lda, int64_t ak, const float* add,
                int64_t ldadd, float* out, int64_t ldc) const {
    const int64_t N = w_.size(0), panels = (N + kPanel - 1) / kPanel;
    // panel p, row k: packed at pw[(p * K + k) * kPanel], in place at w[p * kPanel + k * s1]
    const float* pw = direct_ ? w_.data_ptr<float>() : packed_.data_ptr<float>();
    const int64_t ldp = direct_ ? w_.stride(1) : kPanel, step = direct_ ? kPanel : depth_ * kPanel;
    const int64_t grain = std::max<int64_t>(1, kMacsPerThread / std::max<int64_t>(1, n * K * kPanel));
    at::parallel_for(0, panels, grain, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        panel_rows(n, a, lda, ak, pw + p * step, ldp, K, add, ldadd, out, ldc, p, N);
    });
  }

  // ATen's addmm (float64).
  void library(int64_t n, const T* a, int64_t lda, const T* add, int64_t ldadd, T* out,
               int64_t ldc) const {
    const int64_t N = w_.size(0), K = w_.size(1);
    const auto opts = w_.options();
    Tensor ta = at::from_blob(const_cast<T*>(a), {n, K}, {lda, 1}, opts);
    Tensor to = at::from_blob(out, {n, N}, {ldc, 1}, opts);
    if (add) {
      Tensor tadd = at::from_blob(const_cast<T*>(add), {n, N}, {ldadd, 1}, opts);
      at::addmm_out(to, tadd, ta, w_.t());
    } else {
      at::mm_out(to, ta, w_.t());
    }
  }

  // parts [N, K_i] packed side by side on K: panel p holds each part's K_i rows in turn.
  void pack(std::initializer_list<Tensor> parts) {
    const int64_t N = w_.size(0), K = depth_, panels = (N + kPanel - 1) / kPanel;
    packed_ = at::empty({panels, K, kPanel}, w_.options());
    for (int64_t p = 0; p < panels; ++p) {
      float* dst = packed_.data_ptr<float>() + p * K * kPanel;
      for (const Tensor& part : parts) {
        pack_panel(part.data_ptr<float>(), part.stride(0), part.stride(1), N, p, 0, part.size(1),
                   dst);
        dst += part.size(1) * kPanel;
      }
    }
  }

  Tensor w_;
  int64_t depth_;  // K: w's columns (the joint weight's: D + H)
  Tensor packed_;  // [panels, K, kPanel] float32 unless direct_ (bf16_: bf16_pack's pairs)
  bool direct_ = false;
  bool bf16_ = false;
};

// Rows of a batch never interact in a recurrence (row b's state at t depends on row b's only,
// forward and backward), so each thread can run the whole time loop for a range of rows: one
// parallel region per layer instead of one per step GEMM, and the gate maths split too (with 2
// threads, splitting each step's GEMM by panels scaled the LSTM 1.37x, nn.LSTM 1.65x). Unless
// the recurrent weights outgrow a core's L2 (1 MB here): then every thread would stream all of
// them from L3 at every step (LSTM, 1024 units: 0.83x the peer), so the loop stays on one
// thread and each step's GEMM splits its panels instead (each thread reads half the weight).
template <typename F>
void parallel_rows(int64_t batch, int64_t weight_bytes, F&& f) {
  constexpr int64_t kRowGrain = 8;
  constexpr int64_t kRowSplitMaxBytes = 1 << 20;
  if (weight_bytes > kRowSplitMaxBytes) return f(int64_t{0}, batch);
  at::parallel_for(0, batch, kRowGrain, f);
}

// ------------------------------------------------------------------ BasicRNNCell
// Step t's rows [x_t | h_{t-1}] side by side in `rows` [n, D + H] (row stride D + H), for one
// product with [W_x; W_h] packed as one weight (the float32 RNN and LSTM forward loops): one
// pass of the kernel over K = D + H instead of x_t W_x written into the step's block and read
// back by h_{t-1} W_h (a full register block sums k in the same order either way). x's rows
// are ldx apart (the layer's x read through its row stride: a batch-major input's transposed
// view needs no copy first; this copy is the one the step makes anyway), h's units apart.
template <typename T>
void side_by_side(int64_t n, const T* x, int64_t ldx, int64_t depth, const T* h, int64_t units,
                  T* rows) {
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(rows + r * (depth + units), x + r * ldx, depth * sizeof(T));
    std::memcpy(rows + r * (depth + units) + depth, h + r * units, units * sizeof(T));
  }
}

// Asks for the n rows of a step of x (depth values each, ldx apart) to be brought into cache
// while the current step computes: a layer's input comes from memory (the previous training
// step's buffers pushed it out), and read through a batch-major input's strides, 112 bytes a
// row 3 KB apart at the tutorial's size, the hardware prefetchers did not bring it in time
// (docs/PERFORMANCE.md, seventh round).
template <typename T>
inline void prefetch_rows(const T* x, int64_t n, int64_t ldx, int64_t depth) {
  const int64_t bytes = depth * static_cast<int64_t>(sizeof(T));
  for (int64_t r = 0; r < n; ++r) {
    const char* row = reinterpret_cast<const char*>(x + r * ldx);
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b);
    __builtin_prefetch(row + bytes - 1);
  }
}

// x [S, B, D] (any step and row strides, unit stride within a row: loops.cpp's expect_x), w_x
// [H, D] = W_x^T, bias [H]; hs [T+1, B, H]: hs[0] = h0, zeros after; w [H, H]
// = W_h^T. h_t = act(x_t W_x + b + h_{t-1} W_h), each step's input projection computed with its
// recurrent product while the step's rows are in cache: float32, one product [x_t | h_{t-1}]
// [W_x; W_h] + b (side_by_side; projecting all steps first, a separate pass, wrote and re-read
// a [S, B, H] block: docs/PERFORMANCE.md, sixth round); float64, ATen's addmm twice. zero_h0:
// the caller knows h0 is zeros (a zero state), so step 0 skips h_{-1} W_h (float32: the first D
// rows of the joint weight alone; only zero products are left out: equal up to float rounding,
// the x products grouped otherwise where a register block has few rows).
template <typename T>
void rnn_forward_impl(const Tensor& x, const Tensor& w_x, const Tensor& bias, Tensor hs,
                      const Tensor& w, const std::vector<int64_t>& bs, int64_t a, bool zero_h0) {
  const int64_t units = hs.size(2), depth = x.size(2), batch = hs.size(1);
  constexpr bool f32 = std::is_same_v<T, float>;
  std::optional<StepWeight<T>> gemm, gemm_x;
  Tensor xh;
  if constexpr (f32) {
    gemm.emplace(w_x, w);
    xh = at::empty({batch, depth + units}, hs.options());
  } else {
    gemm.emplace(w);
    gemm_x.emplace(w_x);
  }
  const Tensor b_dense = bias.contiguous();
  const T* b = b_dense.data_ptr<T>();
  const auto X = steps_of<T>(x), Hs = steps_of<T>(hs);
  const int64_t ldx = x.size(1) > 1 ? x.stride(1) : depth;  // x's row stride
  with_act(a, [&](auto A) {
    parallel_rows(batch, w.nbytes(), [&](int64_t r0, int64_t r1) {
      for (size_t t = 0; t < bs.size(); ++t) {
        const int64_t n = std::min(bs[t], r1) - r0, at = r0 * units;
        if (n <= 0) break;
        T* h = Hs[t + 1] + at;
        const T* xt = X[t] + r0 * ldx;
        const bool h_zero = zero_h0 && t == 0;
        if (t + 1 < bs.size())  // the next step's x rows, while this step computes
          prefetch_rows(X[t + 1] + r0 * ldx, std::min(bs[t + 1], r1) - r0, ldx, depth);
        if constexpr (f32) {
          if (h_zero) {
            gemm->leading(depth, n, xt, ldx, b, 0, h, units);  // x_0 W_x + b
          } else {
            T* rows = xh.data_ptr<T>() + r0 * (depth + units);
            side_by_side(n, xt, ldx, depth, Hs[t] + at, units, rows);
            (*gemm)(n, rows, depth + units, b, 0, h, units);
          }
        } else {
          (*gemm_x)(n, xt, ldx, b, 0, h, units);
          if (!h_zero) (*gemm)(n, Hs[t] + at, units, h, units, h, units);
        }
        act_into<decltype(A)::value>(h, h, n * units);
      }
    });
  });
}

// Returns d_pre [S, B, H] and dh0 [B, H]. w [H, H] = W_h (dh_prev = d_pre W_h^T).
template <typename T>
std::tuple<Tensor, Tensor> rnn_backward_impl(const Tensor& d_out, const Tensor& d_final,
                                             const Tensor& hs, const Tensor& w,
                                             const std::vector<int64_t>& bs, int64_t a,
                                             bool need_h0) {
  const int64_t steps = static_cast<int64_t>(bs.size());
  const int64_t batch = hs.size(1), units = hs.size(2);
  Tensor d_pre = grad_buffer(bs, batch, units, hs.options());
  const StepWeight<T> gemm(w);
  const auto Y = steps_of<T>(hs), DO = steps_of<T>(d_out), DP = steps_of<T>(d_pre);
  const T* d_fin = d_final.data_ptr<T>();
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(batch, w.nbytes(), [&](int64_t r0, int64_t r1) {
      const int64_t at = r0 * units;
      const T* df = d_fin + at;
      for (int64_t t = steps - 1; t >= 0; --t) {
        const int64_t n = std::min(bs[t], r1) - r0;
        const int64_t m = std::max<int64_t>(0, t + 1 < steps ? std::min(bs[t + 1], r1) - r0 : 0);
        if (n <= 0) continue;
        const T* y = Y[t + 1] + at;
        const T* dout = DO[t] + at;
        T* dp = DP[t] + at;
        if (m > 0) {
          gemm(m, DP[t + 1] + at, units, dout, units, dp, units);  // dh, rows running at t+1
#pragma GCC ivdep
          for (int64_t i = 0; i < m * units; ++i) dp[i] *= act_grad<kA>(y[i]);
        }
#pragma GCC ivdep
        for (int64_t i = m * units; i < n * units; ++i)
          dp[i] = (dout[i] + df[i]) * act_grad<kA>(y[i]);
      }
    });
  });
  if (!need_h0) return {d_pre, at::empty({0}, hs.options())};  // no [B, H] copy for nothing
  Tensor dh0 = d_final.clone();
  const int64_t n0 = steps ? bs[0] : 0;
  if (n0 > 0) gemm(n0, DP[0], units, nullptr, 0, dh0.data_ptr<T>(), units);
  return {d_pre, dh0};
}

// ------------------------------------------------------------------ BasicLSTMCell
// x [S, B, D] (any step and row strides, unit stride within a row: loops.cpp's expect_x), w_x
// [4H, D] = W_x^T, bias [4H]; gates [S, B, 4H] (TF's i, j, f, o: x W_x + b +
// h W_h, written here, activated in place), cs [S+1, B, H] (cs[0] = c0), hs [S+1, B, H]
// (hs[0] = h0), tcs [S, B, H] = act(c); w [4H, H] = W_h^T. (No-grad runs: lstm_infer_impl.)
// zero_h0: the caller knows h0 is zeros (a zero state), so step 0 skips h_{-1} W_h (only zero
// products are left out: equal up to float rounding).
template <typename T>
void lstm_forward_impl(const Tensor& x, const Tensor& w_x, const Tensor& bias, Tensor gates,
                       Tensor cs, Tensor hs, Tensor tcs, const Tensor& w,
                       const std::vector<int64_t>& bs, int64_t a, bool bf16,
                       uint16_t* out16, bool zero_h0) {
  const int64_t units = hs.size(2), width = 4 * units, depth = x.size(2), batch = hs.size(1);
  // bf16 (float32 only): both products in bfloat16 (x and w_x arrive rounded to it, so each
  // product is exact in float32 either way and only the summation order differs from the
  // float32 kernel's), as one pass of the kernel over [W_x; W_h] packed together
  // (bf16_step_gemm2): the gates block is written once per step instead of twice (the same
  // bits as the two products one after the other; the forward loop 2-4% faster, measured).
  const bool joint = std::is_same_v<T, float> && bf16;
  // float32 likewise: each step's rows [x_t | h_{t-1}] copied side by side into `xh` (78 KB a
  // step at the tutorial's size) and multiplied by [W_x; W_h] packed as one weight, one pass
  // of the unchanged kernel: the gates block is written once, not written by x_t W_x and then
  // read back by h_{t-1} W_h (a full register block sums k in the same order, so the same
  // bits; docs/PERFORMANCE.md, fifth round). zero_h0: step 0 multiplies x_0 by the joint
  // weight's W_x rows alone (StepWeight::leading; sixth round).
  const bool joint32 = std::is_same_v<T, float> && !bf16;
  const int64_t ldxh = depth + units;
  Tensor packed, xh;
  std::optional<StepWeight<T>> gemm, gemm_x;
  if (joint) {
    packed = bf16_pack2(w_x.data_ptr<float>(), w_x.stride(0), w_x.stride(1), depth,
                        w.data_ptr<float>(), w.stride(0), w.stride(1), units, width);
  } else if constexpr (std::is_same_v<T, float>) {
    gemm.emplace(w_x, w);
    xh = at::empty({batch, ldxh}, x.options());
  } else {
    gemm.emplace(w, std::numeric_limits<int64_t>::max(), bf16);
    gemm_x.emplace(w_x, std::numeric_limits<int64_t>::max(), bf16);
  }
  const auto* pw = joint ? reinterpret_cast<const uint32_t*>(packed.data_ptr<int32_t>()) : nullptr;
  const Tensor b_dense = bias.contiguous();
  const T* b = b_dense.data_ptr<T>();
  const auto X = steps_of<T>(x), G = steps_of<T>(gates), C = steps_of<T>(cs);
  const auto Hs = steps_of<T>(hs), TC = steps_of<T>(tcs);
  // x's row stride: every mode reads x's rows through it (a batch-major layer input's
  // transposed view, with no copy first)
  const int64_t ldx = x.size(1) > 1 ? x.stride(1) : depth;
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(hs.size(1), w.nbytes(), [&](int64_t r0, int64_t r1) {
      const int64_t at = r0 * units;
      for (size_t t = 0; t < bs.size(); ++t) {
        const int64_t n = std::min(bs[t], r1) - r0;
        if (n <= 0) break;
        T* g = G[t] + r0 * width;
        const bool h_zero = zero_h0 && t == 0;
        if (t + 1 < bs.size())  // the next step's x rows, while this step computes
          prefetch_rows(X[t + 1] + r0 * ldx, std::min(bs[t + 1], r1) - r0, ldx, depth);
        if constexpr (std::is_same_v<T, float>) {
          if (joint)  // x_t W_x + h_{t-1} W_h + b (h_{-1} = 0: its pairs skipped)
            bf16_step_gemm2(n, X[t] + r0 * ldx, ldx, depth, h_zero ? nullptr : Hs[t] + at,
                            units, units, pw, width, b, 0, g, width);
        }
        if constexpr (std::is_same_v<T, float>) {
          if (joint32 && h_zero) {  // x_0 W_x + b: h_{-1} = 0, the joint weight's W_x rows alone
            gemm->leading(depth, n, X[t] + r0 * ldx, ldx, b, 0, g, width);
          } else if (joint32) {  // [x_t | h_{t-1}] [W_x; W_h] + b
            T* rows = xh.data_ptr<T>() + r0 * ldxh;
            side_by_side(n, X[t] + r0 * ldx, ldx, depth, Hs[t] + at, units, rows);
            (*gemm)(n, rows, ldxh, b, 0, g, width);
          }
        }
        if (!joint && !joint32) {
          (*gemm_x)(n, X[t] + r0 * ldx, ldx, b, 0, g, width);  // x_t W_x + b
          if (!h_zero) (*gemm)(n, Hs[t] + at, units, g, width, g, width);
        }
        const T* c_prev = C[t] + at;
        T* c_new = C[t + 1] + at;
        T* tc = TC[t] + at;
        T* h = Hs[t + 1] + at;
        for (int64_t b = 0; b < n; ++b) {
          T* gb = g + b * width;
          lstm_gates<kA>(gb, units);
          const T *i = gb, *j = gb + units, *f = gb + 2 * units, *o = gb + 3 * units;
          const T* cp = c_prev + b * units;
          T* cn = c_new + b * units;
          T* tcb = tc + b * units;
          T* hb = h + b * units;
          lstm_cell<kA>(i, j, f, o, cp, cn, tcb, hb, units);
          if (out16) {  // the bfloat16 outputs (lstm_forward's out16), from the row in cache
            uint16_t* ob = out16 + (static_cast<int64_t>(t) * batch + r0 + b) * units;
            for (int64_t k = 0; k < units; ++k) ob[k] = to_bf16(static_cast<float>(hb[k]));
          }
        }
      }
    });
  });
}

// The float32 LSTM backward's weight gradient inside the loop (lstm_backward_impl, `wg` without
// bf16): at each step, while its rows are in cache, d_kernel [D + H, 4H] += [x_t | h_{t-1}]^T
// d_gates_t and d_bias += d_gates_t's column sums, instead of a pass over all steps' d_gates
// (7 MB at the tutorial's size, from L3) afterwards (`weight_grad`). The product is the packed
// kernel with a = x_t^T (element (r, k) = x_t[k][r]) and d_gates_t's rows as the panel rows,
// read in place (ldp = 4H) when 4H is whole panels, else packed a panel at a time. The first
// step a part gets writes it (no zeroing pass); d_bias sums in double across steps.
class WeightGrad32 {
 public:
  // One step: n rows of x_t [n, depth] (row stride ldx) and h_{t-1} [n, units] (null: zeros,
  // left out) and of d_gates_t [n, width] (row stride width) into out [depth + units, width].
  void add(int64_t n, const float* x, int64_t ldx, int64_t depth, const float* h, int64_t units,
           const float* d, int64_t width, float* out) {
    if (sums_.empty()) {
      sums_.assign(width, 0.0);
      step_.resize(width);
    }
    std::fill(step_.begin(), step_.end(), 0.0f);  // the step's sums in float, then into double
    for (int64_t r = 0; r < n; ++r)
#pragma GCC ivdep
      for (int64_t j = 0; j < width; ++j) step_[j] += d[r * width + j];
    for (int64_t j = 0; j < width; ++j) sums_[j] += step_[j];
    const int64_t panels = (width + kPanel - 1) / kPanel;
    const bool direct = width % kPanel == 0;
    if (!direct) buf_.resize(n * kPanel);
    for (int64_t p = 0; p < panels; ++p) {
      const float* panel = d + p * kPanel;
      int64_t ldp = width;
      if (!direct) {  // d^T's panel p: element (j, k) = d[k][j]
        pack_panel(d, 1, width, width, p, 0, n, buf_.data());
        panel = buf_.data();
        ldp = kPanel;
      }
      panel_rows(depth, x, 1, ldx, panel, ldp, n, x_started_ ? out : nullptr, width, out,
                 width, p, width);
      if (h)
        panel_rows(units, h, 1, units, panel, ldp, n, h_started_ ? out + depth * width : nullptr,
                   width, out + depth * width, width, p, width);
    }
    x_started_ = true;
    h_started_ = h_started_ || h;
  }

  // d_bias's partial sums (float32 [width]); zeros into the parts of out no step wrote.
  Tensor finish(Tensor& out, int64_t depth, int64_t width) {
    if (!x_started_) out.narrow(0, 0, depth).zero_();
    if (!h_started_) out.narrow(0, depth, out.size(0) - depth).zero_();
    Tensor sums = at::empty({width}, out.options());
    for (int64_t j = 0; j < width; ++j)
      sums.data_ptr<float>()[j] = sums_.empty() ? 0.0f : static_cast<float>(sums_[j]);
    return sums;
  }

 private:
  std::vector<double> sums_;
  std::vector<float> step_, buf_;
  bool x_started_ = false, h_started_ = false;
};

// Returns d_gates [S, B, 4H] ([min(S, 2), B, 4H], the last two steps' rows, when wg says it is
// not kept), dc0, dh0 [B, H]. w [H, 4H] = W_h.
// `wg` (float32 only; null: none): the weight gradient inside the loop, d_kernel [D + H, 4H] =
// sum over steps and rows of [bf16(x_t) | bf16(h_{t-1})]^T bf16(d_gates_t), d_bias [4H] = the
// d_gates rows summed in float32, from each step's rows while they are in cache (a
// Bf16GradChunk per thread: the step's rows paired, two steps of 128 rows a chunk), instead of
// a pass over all steps' d_gates (7 MB at the tutorial's size) afterwards. Threads with rows of
// their own sum into partial gradients, added in the order of their rows at the end.
// (LoopWeightGrad: bf16_gemm.h.) float32 without bf16: the same in float32, a step at a time
// (WeightGrad32).
template <typename T>
std::tuple<Tensor, Tensor, Tensor> lstm_backward_impl(
    const Tensor& d_out, const Tensor& d_final_c, const Tensor& d_final_h, const Tensor& gates,
    const Tensor& cs, const Tensor& tcs, const Tensor& w, const std::vector<int64_t>& bs,
    int64_t a, bool need_h0, bool bf16, const LoopWeightGrad* wg) {
  const int64_t steps = static_cast<int64_t>(bs.size());
  const int64_t batch = cs.size(1), units = cs.size(2), width = 4 * units;
  // Without a use for d_gates after the loop (the weight gradient in it, no input gradient), two
  // steps of it, alternating, stay in cache: the step's and the next one's (read by the
  // recurrent product), instead of a 7 MB buffer written once and never read again (measured:
  // the backward 7.5 -> 7.2 ms at the tutorial's size).
  const bool ring = wg && !wg->keep_d_gates;
  Tensor d_gates = ring ? pooled_empty({std::min<int64_t>(steps, 2), batch, width}, cs.options())
                        : grad_buffer(bs, batch, width, cs.options());
  Tensor scratch = at::empty({batch, units}, cs.options());
  Tensor carry = at::zeros({batch, units}, cs.options());  // dc_{t} f_{t}, into step t-1
  const StepWeight<T> gemm(w, std::numeric_limits<int64_t>::max(), bf16);
  const auto DO = steps_of<T>(d_out), G = steps_of<T>(gates);
  const auto C = steps_of<T>(cs), TC = steps_of<T>(tcs), DG = steps_of<T>(d_gates);
  const T* d_fin_c = d_final_c.data_ptr<T>();
  const T* d_fin_h = d_final_h.data_ptr<T>();
  T* carry_all = carry.data_ptr<T>();
  T* dh_rec_all = scratch.data_ptr<T>();
  const int64_t depth = wg ? wg->x.size(2) : 0, total = depth + units;
  const int64_t ldx = wg && wg->x.size(1) > 1 ? wg->x.stride(1) : depth;  // x's row stride
  struct Partial {  // another thread's weight gradient: its first row, d_kernel, d_bias
    int64_t r0;
    Tensor k, b;
  };
  std::vector<Partial> partials;
  std::mutex partials_mutex;
  bool first_done = false;  // the rows from 0 (every run has them) wrote d_kernel and d_bias
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(batch, w.nbytes(), [&](int64_t r0, int64_t r1) {
      const int64_t at = r0 * units;
      const T* dfc = d_fin_c + at;
      const T* dfh = d_fin_h + at;
      T* cc = carry_all + at;
      T* dh_rec = dh_rec_all + at;
      std::optional<Bf16GradChunk> chunk;
      Tensor part_k;
      if (wg) {  // the thread with row 0 sums into d_kernel itself
        part_k = r0 == 0 ? wg->d_kernel : at::empty({total, width}, cs.options());
        if (bf16) chunk.emplace(0, width, total, width);
      }
      WeightGrad32 wg32;  // float32 (wg without bf16): each step's product, see there
      for (int64_t t = steps - 1; t >= 0; --t) {
        const int64_t n = std::min(bs[t], r1) - r0;
        const int64_t m = std::max<int64_t>(0, t + 1 < steps ? std::min(bs[t + 1], r1) - r0 : 0);
        if (n <= 0) continue;
        const T* dout = DO[t] + at;
        gemm(m, DG[ring ? (t + 1) % 2 : t + 1] + r0 * width, width, dout, units, dh_rec, units);
        const T* g = G[t] + r0 * width;
        const T* c_prev = C[t] + at;
        const T* tc = TC[t] + at;
        T* dg = DG[ring ? t % 2 : t] + r0 * width;
        for (int64_t b = 0; b < n; ++b) {
          const bool live = b < m;  // else: row b's last step is t; the final state enters here
          const T* dhr = live ? dh_rec + b * units : dout + b * units;
          const T* dhx = live ? nullptr : dfh + b * units;
          const T* dcin = live ? cc + b * units : dfc + b * units;
          const T* gb = g + b * width;
          const T *i = gb, *j = gb + units, *f = gb + 2 * units, *o = gb + 3 * units;
          const T* cp = c_prev + b * units;
          const T* tcb = tc + b * units;
          T* d = dg + b * width;
          T* cb = cc + b * units;
          // One loop, instantiated twice: rows still running at t+1 get no final-state term.
          auto gate_grads = [&](auto ends_here) {
#pragma GCC ivdep
            for (int64_t k = 0; k < units; ++k) {
              T dh = dhr[k];
              if constexpr (decltype(ends_here)::value) dh += dhx[k];
              const T dc = dcin[k] + dh * o[k] * act_grad<kA>(tcb[k]);
              d[k] = dc * j[k] * (i[k] - i[k] * i[k]);
              d[units + k] = dc * i[k] * act_grad<kA>(j[k]);
              d[2 * units + k] = dc * cp[k] * (f[k] - f[k] * f[k]);
              d[3 * units + k] = dh * tcb[k] * (o[k] - o[k] * o[k]);
              cb[k] = dc * f[k];
            }
          };
          if (live)
            gate_grads(std::false_type());
          else
            gate_grads(std::true_type());
        }
        if constexpr (std::is_same_v<T, float>) {
          if (wg && !bf16) {  // float32: the step's rows into the weight gradient
            const float* xt = wg->x.data_ptr<float>() + t * wg->x.stride(0) + r0 * ldx;
            const float* ht = wg->hs.data_ptr<float>() + t * wg->hs.stride(0) + at;
            const bool h_zero = wg->zero_h0 && t == 0;  // h_{-1} = 0: its rows left out
            wg32.add(n, xt, ldx, depth, h_zero ? nullptr : ht, units, dg, width,
                     part_k.data_ptr<float>());
          } else if (wg) {  // the step's rows into the weight gradient, two at a time
            const float* xt = wg->x.data_ptr<float>() + t * wg->x.stride(0) + r0 * ldx;
            const float* ht = wg->hs.data_ptr<float>() + t * wg->hs.stride(0) + at;
            const bool h_zero = wg->zero_h0 && t == 0;
            if (h_zero) {  // h_{-1} = 0: from here on the x rows only
              chunk->flush(part_k.data_ptr<float>());
              if (!chunk->started()) part_k.narrow(0, depth, units).zero_();
              chunk->narrow(depth);
            }
            for (int64_t b = 0; b < n; b += 2) {
              const bool pair = b + 1 < n;
              const Bf16GradChunk::Part parts[2] = {
                  {xt + b * ldx, pair ? xt + (b + 1) * ldx : nullptr, depth},
                  {ht + b * units, pair ? ht + (b + 1) * units : nullptr, units}};
              if (chunk->full()) chunk->flush(part_k.data_ptr<float>());
              chunk->add(dg + b * width, pair ? dg + (b + 1) * width : nullptr, parts,
                         h_zero ? 1 : 2);
            }
          }
        }
      }
      if (wg) {
        Tensor sums;
        if (bf16) {
          chunk->flush(part_k.data_ptr<float>());
          if (!chunk->started()) part_k.zero_();
          sums = at::from_blob(const_cast<float*>(chunk->sums().data()), {width}, cs.options());
        } else {
          sums = wg32.finish(part_k, depth, width);
        }
        if (r0 == 0) {  // d_bias is contiguous (checked): a plain copy (ATen's copy_ of these
          // 4H floats took 16-27 us per call here, under torch.profiler)
          std::memcpy(wg->d_bias.data_ptr<float>(), sums.data_ptr<float>(), width * sizeof(float));
          first_done = true;
        } else {
          std::lock_guard<std::mutex> lock(partials_mutex);
          partials.push_back({r0, part_k, sums.clone()});
        }
      }
    });
  });
  if (wg) {  // the other threads' sums added in the order of their rows
    if (!first_done) {  // no row ran
      wg->d_kernel.zero_();
      wg->d_bias.zero_();
    }
    std::sort(partials.begin(), partials.end(),
              [](const Partial& p, const Partial& q) { return p.r0 < q.r0; });
    for (const Partial& p : partials) {
      wg->d_kernel.add_(p.k);
      wg->d_bias.add_(p.b);
    }
  }
  const int64_t n0 = steps ? bs[0] : 0;
  Tensor dc0 = d_final_c.clone();
  Tensor dh0 = need_h0 ? d_final_h.clone() : at::empty({0}, cs.options());
  if (n0 > 0) {
    std::memcpy(dc0.data_ptr<T>(), carry_all, n0 * units * sizeof(T));
    if (need_h0) gemm(n0, DG[0], width, nullptr, 0, dh0.data_ptr<T>(), units);
  }
  return {d_gates, dc0, dh0};
}

// ------------------------------------------------------------------ GRUCell
// gates [S, B, 2H] (r, u; x W_gx + b_g; sigmoid in place), cands [S, B, H] (x W_cx + b_c; act in
// place), rhs [S, B, H] = r h_prev, hs [T+1, B, H]; w_g [2H, H] = W_gh^T, w_c [H, H] = W_ch^T.
template <typename T>
void gru_forward_impl(Tensor gates, Tensor cands, Tensor rhs, Tensor hs, const Tensor& w_g,
                      const Tensor& w_c, const std::vector<int64_t>& bs, int64_t a) {
  const int64_t units = hs.size(2);
  const StepWeight<T> gemm_g(w_g), gemm_c(w_c);
  const auto G = steps_of<T>(gates), CA = steps_of<T>(cands);
  const auto RH = steps_of<T>(rhs), Hs = steps_of<T>(hs);
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(hs.size(1), w_g.nbytes() + w_c.nbytes(), [&](int64_t r0, int64_t r1) {
      const int64_t at = r0 * units;
      for (size_t t = 0; t < bs.size(); ++t) {
        const int64_t n = std::min(bs[t], r1) - r0;
        if (n <= 0) break;
        T* g = G[t] + 2 * at;
        const T* h = Hs[t] + at;
        gemm_g(n, h, units, g, 2 * units, g, 2 * units);
        act_into<kSigmoid>(g, g, n * 2 * units);
        T* rh = RH[t] + at;
        for (int64_t b = 0; b < n; ++b) {
          const T* r = g + b * 2 * units;
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) rh[b * units + k] = r[k] * h[b * units + k];
        }
        T* c = CA[t] + at;
        gemm_c(n, rh, units, c, units, c, units);
        act_into<kA>(c, c, n * units);
        T* hn = Hs[t + 1] + at;
        for (int64_t b = 0; b < n; ++b) {
          const T* u = g + b * 2 * units + units;
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) {
            const int64_t q = b * units + k;
            hn[q] = (h[q] - c[q]) * u[k] + c[q];
          }
        }
      }
    });
  });
}

// Returns d_gates [S, B, 2H], d_cands [S, B, H], dh0 [B, H]. w_g [H, 2H] = W_gh, w_c [H, H] = W_ch.
template <typename T>
std::tuple<Tensor, Tensor, Tensor> gru_backward_impl(const Tensor& d_out, const Tensor& d_final,
                                                     const Tensor& gates, const Tensor& cands,
                                                     const Tensor& hs, const Tensor& w_g,
                                                     const Tensor& w_c,
                                                     const std::vector<int64_t>& bs, int64_t a,
                                                     bool need_h0) {
  const int64_t steps = static_cast<int64_t>(bs.size());
  const int64_t batch = hs.size(1), units = hs.size(2);
  Tensor d_gates = grad_buffer(bs, batch, 2 * units, hs.options());
  Tensor d_cands = grad_buffer(bs, batch, units, hs.options());
  Tensor dh = at::empty({batch, units}, hs.options());      // gradient into h_t, all sources
  Tensor dh_rec = at::zeros({batch, units}, hs.options());  // from step t+1 into h_t
  Tensor scratch = at::empty({batch, units}, hs.options());
  Tensor scratch2 = at::empty({batch, units}, hs.options());
  const StepWeight<T> gemm_g(w_g), gemm_c(w_c);
  const auto DO = steps_of<T>(d_out), G = steps_of<T>(gates);
  const auto CA = steps_of<T>(cands), Hs = steps_of<T>(hs);
  const auto DG = steps_of<T>(d_gates), DC = steps_of<T>(d_cands);
  const T* d_fin = d_final.data_ptr<T>();
  T* rec_all = dh_rec.data_ptr<T>();
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(batch, w_g.nbytes() + w_c.nbytes(), [&](int64_t r0, int64_t r1) {
      const int64_t at = r0 * units;
      const T* df = d_fin + at;
      T* dhp = dh.data_ptr<T>() + at;
      T* rec = rec_all + at;
      T* drh = scratch.data_ptr<T>() + at;
      T* s2 = scratch2.data_ptr<T>() + at;
      for (int64_t t = steps - 1; t >= 0; --t) {
        const int64_t n = std::min(bs[t], r1) - r0;
        const int64_t m = std::max<int64_t>(0, t + 1 < steps ? std::min(bs[t + 1], r1) - r0 : 0);
        if (n <= 0) continue;
        const T* dout = DO[t] + at;
        const T* g = G[t] + 2 * at;
        const T* c = CA[t] + at;
        const T* h = Hs[t] + at;
        T* dg = DG[t] + 2 * at;
        T* dcd = DC[t] + at;
#pragma GCC ivdep
        for (int64_t q = 0; q < m * units; ++q) dhp[q] = dout[q] + rec[q];
#pragma GCC ivdep
        for (int64_t q = m * units; q < n * units; ++q) dhp[q] = dout[q] + df[q];
        for (int64_t b = 0; b < n; ++b) {
          const T* u = g + b * 2 * units + units;
          T* du = dg + b * 2 * units + units;
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) {
            const int64_t q = b * units + k;
            dcd[q] = dhp[q] * (T(1) - u[k]) * act_grad<kA>(c[q]);
            du[k] = dhp[q] * (h[q] - c[q]) * (u[k] - u[k] * u[k]);
          }
        }
        gemm_c(n, dcd, units, nullptr, 0, drh, units);  // d(r h_prev)
        for (int64_t b = 0; b < n; ++b) {
          const T* r = g + b * 2 * units;
          T* dr = dg + b * 2 * units;
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) {
            const int64_t q = b * units + k;
            dr[k] = drh[q] * h[q] * (r[k] - r[k] * r[k]);
          }
        }
        if (t == 0 && !need_h0) break;  // what follows is dh0's
        // dh_{t-1} = d pre_g W_gh^T + dh u + d(rh) r
        for (int64_t b = 0; b < n; ++b) {
          const T* r = g + b * 2 * units;
          const T* u = r + units;
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) {
            const int64_t q = b * units + k;
            s2[q] = dhp[q] * u[k] + drh[q] * r[k];
          }
        }
        gemm_g(n, dg, 2 * units, s2, units, rec, units);
      }
    });
  });
  const int64_t n0 = steps ? bs[0] : 0;
  if (!need_h0) return {d_gates, d_cands, at::empty({0}, hs.options())};
  Tensor dh0 = d_final.clone();
  if (n0 > 0) std::memcpy(dh0.data_ptr<T>(), rec_all, n0 * units * sizeof(T));
  return {d_gates, d_cands, dh0};
}

// ------------------------------------------------------------------ inference (no autograd)
// One call runs a whole layer when no gradient is needed: each step's input projection
// (x_t W_x + b, while the step's rows are in cache), the recurrent GEMM and the gate maths, with
// nothing kept for a backward. x and out are read and written through their strides (step t,
// row r at base + t * st + r * sr, unit stride within a row), so batch-major inputs and outputs
// need no transposed copy. Rows are sorted by length (batch_sizes, as above); the caller
// zero-filled out where a row is past its length. The final state of row b is its state after
// its last step, gathered at the end (the initial state for length 0).
template <typename T>
struct Strided {
  T* base;
  int64_t st, sr;
  T* at(int64_t t, int64_t r) const { return base + t * st + r * sr; }
};

template <typename T>
Strided<T> strided(const Tensor& t) {
  return {t.data_ptr<T>(), t.stride(0), t.stride(1)};
}

// final[b] = out[last_b, b] for rows with a step (last_b = their number of steps - 1); rows with
// none keep what final holds (the initial state).
template <typename T>
void gather_final(const Strided<T>& out, const std::vector<int64_t>& bs, int64_t units,
                  T* final) {
  const int64_t steps = static_cast<int64_t>(bs.size());
  for (int64_t t = steps - 1; t >= 0; --t) {  // rows [bs[t+1], bs[t]) end at step t
    const int64_t first = t + 1 < steps ? bs[t + 1] : 0;
    for (int64_t r = first; r < bs[t]; ++r)
      std::memcpy(final + r * units, out.at(t, r), units * sizeof(T));
  }
}

// A tiny batch (at most kProjectAllRows rows, every row running every step) projects the
// inputs of all its steps first, one product per row over its steps: each step's product of
// one row with the input weight is bound by reading the weight from L2, and this reads it once
// per row instead of once per step (the recurrent weight still streams once per step).
constexpr int64_t kProjectAllRows = 4;
// A step's rows go through in chunks of kInferChunk rows: each chunk's input projection,
// recurrent product and gate maths while its rows are in L1 (a whole step's block, 512 KB at
// batch 1000, was re-read from L2 by every column panel of each product).
constexpr int64_t kInferChunk = 4 * kRows;

bool project_all(const std::vector<int64_t>& bs, int64_t batch) {
  return batch <= kProjectAllRows && !bs.empty() && bs.back() == batch;
}

// The time loop of a thread's rows [r0, r1): f(t, c0, n) for every step t and every chunk
// [c0, c0 + n) of those rows still running at t.
template <typename F>
void infer_chunks(const std::vector<int64_t>& bs, int64_t r0, int64_t r1, F&& f) {
  for (int64_t t = 0; t < static_cast<int64_t>(bs.size()); ++t) {
    const int64_t end = std::min(bs[t], r1);
    if (end <= r0) break;
    for (int64_t c0 = r0; c0 < end; c0 += kInferChunk) f(t, c0, std::min(kInferChunk, end - c0));
  }
}

// Row c0's previous output at step t (the initial state h0 [B, H] at t = 0) and its row stride.
template <typename T>
std::pair<const T*, int64_t> previous_h(const Strided<T>& out, const T* h0, int64_t units,
                                        int64_t t, int64_t c0) {
  if (t == 0) return {h0 + c0 * units, units};
  return {out.at(t - 1, c0), out.sr};
}

// BasicRNNCell: out_t = act(x_t W_x + b + h_{t-1} W_h), h_{-1} = h0. w_x [H, D] = W_x^T,
// w_h [H, H] = W_h^T; h_final [B, H] holds h0 on entry.
template <typename T>
void rnn_infer_impl(const Tensor& x, const Tensor& w_x, const Tensor& bias, const Tensor& w_h,
                    const Tensor& h0, Tensor out, Tensor h_final, const std::vector<int64_t>& bs,
                    int64_t a) {
  const int64_t batch = out.size(1), units = out.size(2);
  const int64_t steps = static_cast<int64_t>(bs.size());
  const bool all = project_all(bs, batch);
  const StepWeight<T> gemm_x(w_x, all ? steps : batch), gemm_h(w_h, batch);
  const Tensor b_dense = bias.contiguous();
  const T* b = b_dense.data_ptr<T>();
  const T* h_init = h0.data_ptr<T>();
  const auto X = strided<T>(x);
  const auto O = strided<T>(out);
  if (all)
    for (int64_t r = 0; r < batch; ++r) gemm_x(steps, X.at(0, r), X.st, b, 0, O.at(0, r), O.st);
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(batch, w_h.nbytes(), [&](int64_t r0, int64_t r1) {
      infer_chunks(bs, r0, r1, [&](int64_t t, int64_t c0, int64_t n) {
        T* o = O.at(t, c0);
        if (!all) gemm_x(n, X.at(t, c0), X.sr, b, 0, o, O.sr);
        const auto [h, ldh] = previous_h(O, h_init, units, t, c0);
        gemm_h(n, h, ldh, o, O.sr, o, O.sr);
        for (int64_t r = 0; r < n; ++r) act_into<kA>(o + r * O.sr, o + r * O.sr, units);
      });
    });
  });
  gather_final(O, bs, units, h_final.data_ptr<T>());
}

// BasicLSTMCell (TF's gates i, j, f, o; forget_bias in bias): w_x [4H, D], w_h [4H, H];
// c_final and h_final [B, H] hold c0 and h0 on entry; c_final is updated in place (a row past
// its length keeps its final c).
template <typename T>
void lstm_infer_impl(const Tensor& x, const Tensor& w_x, const Tensor& bias, const Tensor& w_h,
                     Tensor out, Tensor c_final, Tensor h_final, const std::vector<int64_t>& bs,
                     int64_t a) {
  const int64_t batch = out.size(1), units = out.size(2), width = 4 * units;
  const int64_t steps = static_cast<int64_t>(bs.size());
  const bool all = project_all(bs, batch);
  const StepWeight<T> gemm_x(w_x, all ? steps : batch), gemm_h(w_h, batch);
  const Tensor b_dense = bias.contiguous();
  const T* b = b_dense.data_ptr<T>();
  // Gates: one [B, 4H] block reused at every step, or all steps' [B, S, 4H] when projected first.
  Tensor gates = pooled_empty({batch, all ? steps : 1, width}, out.options());
  const int64_t ldg = all ? steps * width : width;  // row stride of a step's gates
  T* g_all = gates.data_ptr<T>();
  T* c_all = c_final.data_ptr<T>();
  const T* h_init = h_final.data_ptr<T>();
  const auto X = strided<T>(x);
  const auto O = strided<T>(out);
  if (all)
    for (int64_t r = 0; r < batch; ++r)
      gemm_x(steps, X.at(0, r), X.st, b, 0, g_all + r * ldg, width);
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(batch, w_h.nbytes(), [&](int64_t r0, int64_t r1) {
      infer_chunks(bs, r0, r1, [&](int64_t t, int64_t c0, int64_t n) {
        T* g = g_all + c0 * ldg + (all ? t * width : 0);
        if (!all) gemm_x(n, X.at(t, c0), X.sr, b, 0, g, ldg);
        const auto [h, ldh] = previous_h(O, h_init, units, t, c0);
        gemm_h(n, h, ldh, g, ldg, g, ldg);
        for (int64_t r = 0; r < n; ++r) {
          T* gb = g + r * ldg;
          lstm_gates<kA>(gb, units);
          const T *i = gb, *j = gb + units, *f = gb + 2 * units, *o = gb + 3 * units;
          T* cb = c_all + (c0 + r) * units;
          T* hb = O.at(t, c0 + r);
          lstm_cell<kA>(i, j, f, o, cb, cb, static_cast<T*>(nullptr), hb, units);
        }
      });
    });
  });
  gather_final(O, bs, units, h_final.data_ptr<T>());
}

// GRUCell (TF1): r, u = sigmoid(x W_gx + b_g + h W_gh); c = act(x W_cx + b_c + (r h) W_ch);
// h' = (h - c) u + c. w_gx [2H, D], w_gh [2H, H], w_cx [H, D], w_ch [H, H]; h_final holds h0.
template <typename T>
void gru_infer_impl(const Tensor& x, const Tensor& w_gx, const Tensor& b_g, const Tensor& w_cx,
                    const Tensor& b_c, const Tensor& w_gh, const Tensor& w_ch, Tensor out,
                    Tensor h_final, const std::vector<int64_t>& bs, int64_t a) {
  const int64_t batch = out.size(1), units = out.size(2);
  const int64_t steps = static_cast<int64_t>(bs.size());
  const bool all = project_all(bs, batch);
  const int64_t xrows = all ? steps : batch;
  const StepWeight<T> gemm_gx(w_gx, xrows), gemm_cx(w_cx, xrows);
  const StepWeight<T> gemm_gh(w_gh, batch), gemm_ch(w_ch, batch);
  const Tensor bg_dense = b_g.contiguous(), bc_dense = b_c.contiguous();
  const T* bg = bg_dense.data_ptr<T>();
  const T* bc = bc_dense.data_ptr<T>();
  // Per row and step: the gates (2H) and the candidate (H), for one step or (projected first)
  // all of them, then r h (H) for the current step.
  const int64_t span = all ? steps : 1, ld = span * 3 * units;
  Tensor scratch = pooled_empty({batch, ld + units}, out.options());
  T* s_all = scratch.data_ptr<T>();
  const int64_t lds = ld + units;  // row stride in scratch
  const T* h_init = h_final.data_ptr<T>();
  const auto X = strided<T>(x);
  const auto O = strided<T>(out);
  if (all)
    for (int64_t r = 0; r < batch; ++r) {
      gemm_gx(steps, X.at(0, r), X.st, bg, 0, s_all + r * lds, 3 * units);
      gemm_cx(steps, X.at(0, r), X.st, bc, 0, s_all + r * lds + 2 * units, 3 * units);
    }
  with_act(a, [&](auto A) {
    constexpr int kA = decltype(A)::value;
    parallel_rows(batch, w_gh.nbytes() + w_ch.nbytes(), [&](int64_t r0, int64_t r1) {
      infer_chunks(bs, r0, r1, [&](int64_t t, int64_t c0, int64_t n) {
        T* g = s_all + c0 * lds + (all ? t * 3 * units : 0);  // [n, 2H], row stride lds
        T* cand = g + 2 * units;                                // [n, H], row stride lds
        T* rh = s_all + c0 * lds + ld;                          // [n, H], row stride lds
        const auto [h, ldh] = previous_h(O, h_init, units, t, c0);
        if (!all) {
          gemm_gx(n, X.at(t, c0), X.sr, bg, 0, g, lds);
          gemm_cx(n, X.at(t, c0), X.sr, bc, 0, cand, lds);
        }
        gemm_gh(n, h, ldh, g, lds, g, lds);
        for (int64_t r = 0; r < n; ++r) {
          T* gr = g + r * lds;
          act_into<kSigmoid>(gr, gr, 2 * units);
          const T* hr = h + r * ldh;
          T* rr = rh + r * lds;
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) rr[k] = gr[k] * hr[k];
        }
        gemm_ch(n, rh, lds, cand, lds, cand, lds);
        for (int64_t r = 0; r < n; ++r) {
          T* c = cand + r * lds;
          act_into<kA>(c, c, units);
          const T* u = g + r * lds + units;
          const T* hr = h + r * ldh;
          T* hn = O.at(t, c0 + r);
#pragma GCC ivdep
          for (int64_t k = 0; k < units; ++k) hn[k] = (hr[k] - c[k]) * u[k] + c[k];
        }
      });
    });
  });
  gather_final(O, bs, units, h_final.data_ptr<T>());
}

// ------------------------------------------------------------------ one-off GEMMs
// out = a w^T (+ add) in float32 for the GEMMs over all steps in _fused_kernels.py (input
// projections, weight and input gradients): a's n rows, K columns (RowsView: a matrix, or a
// layer's x [S, B, K] step by step) and w [N, K] with any strides (a transposed view costs
// nothing), add null, a bias (ldadd 0) or [n, N] (ldadd N), dense. The caller (loops.cpp
// `linear`) checked the sizes and allocated out [n, N]. kChains: panel_kernel's (false for a
// 3-D a: each row's bits whatever its block).
template <bool kChains>
inline void linear_rows(const RowsView& a, const Tensor& w, const float* padd, int64_t ldadd,
                        Tensor& out) {
  const int64_t n = a.rows, N = w.size(0), K = a.cols;
  float* pc = out.data_ptr<float>();
  const int64_t lda = a.sr, ak = a.sc;
  const int64_t panels = (N + kPanel - 1) / kPanel;
  if (panels * K * kPanel * static_cast<int64_t>(sizeof(float)) <= kSmallWeightBytes) {
    // A small w (an input projection's): packed whole, then each thread takes a range of rows
    // and writes them whole, 4 register blocks at a time over every panel (output written
    // once, in order). The chunks lie within a run of a (one stride): per run, ceil(per /
    // kChunk) of them (a matrix: one run).
    const StepWeight<float> gemm(w);
    const float* pw = gemm.packed_data();
    constexpr int64_t kChunk = 4 * kRows;
    const int64_t per = std::min(a.per, n), runs = (n + per - 1) / per;
    const int64_t per_run = (per + kChunk - 1) / kChunk;
    const int64_t grain = std::max<int64_t>(1, kMacsPerThread / (kChunk * K * N));
    at::parallel_for(0, runs * per_run, grain, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t run = c / per_run, first = (c % per_run) * kChunk;
        const int64_t i0 = run * per + first;
        const int64_t rows = std::min({kChunk, per - first, n - i0});
        if (rows <= 0) continue;
        const float* pa = a.base + run * a.st + first * lda;
        for (int64_t p = 0; p < panels; ++p)
          panel_rows<kChains>(rows, pa, lda, ak, pw + p * K * kPanel, kPanel, K,
                     padd ? padd + i0 * ldadd : nullptr, ldadd, pc + i0 * N, N, p, N);
      }
    });
    return;
  }
  // A large w (a weight gradient's: dG over all steps, 7 MB here) is used once: packing all of
  // it would cost more than it saves. Each thread takes a range of panels and walks K in chunks
  // of kKc: it packs each panel's chunk into an L1-sized buffer and sweeps every row of a over
  // it, a run at a time (a's chunk stays in L2 across the panels), accumulating into out.
  constexpr int64_t kKc = 256;
  const float* pw = w.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, kMacsPerThread / (n * K * kPanel));
  at::parallel_for(0, panels, grain, [&](int64_t p0, int64_t p1) {
    alignas(64) float buf[kKc * kPanel];
    for (int64_t k0 = 0; k0 < K; k0 += kKc) {
      const int64_t kc = std::min(kKc, K - k0);
      const bool first = k0 == 0;
      for (int64_t p = p0; p < p1; ++p) {
        pack_panel(pw, w.stride(0), w.stride(1), N, p, k0, kc, buf);
        a.runs(0, n, [&](int64_t i0, int64_t rows, const float* pa) {
          const float* add = first ? (padd ? padd + i0 * ldadd : nullptr) : pc + i0 * N;
          panel_rows<kChains>(rows, pa + k0 * ak, lda, ak, buf, kPanel, kc, add, first ? ldadd : N,
                     pc + i0 * N, N, p, N);
        });
      }
    }
  });
}

inline void linear_impl(const RowsView& a, const Tensor& w, const float* padd, int64_t ldadd,
                        Tensor& out) {
  if (a.by_step) return linear_rows<false>(a, w, padd, ldadd, out);
  linear_rows<true>(a, w, padd, ldadd, out);
}

// The parameter gradients of a layer in float32 (loops.cpp `weight_grad` checked the sizes and
// allocated d_kernel [sum K_i, G] and d_bias [G]): one pass over d for all of them, each thread
// packing a chunk of d's columns once and sweeping every input over it, and summing the chunk
// for the bias (float per chunk, double across). An input with R_i < R rows pairs with d's last
// R_i rows (the rows before them are zeros: a zero initial state's h_{-1}, left out). An input
// read step by step (RowsView: a layer's x through its strides) goes a run at a time, each run
// accumulating into d_kernel's rows as the next chunk does, one chain per row (the bits of its
// values laid out densely).
inline void weight_grad_impl(const std::vector<RowsView>& inputs, const Tensor& d,
                             Tensor& d_kernel, Tensor& d_bias) {
  constexpr int64_t kKc = 256;
  const int64_t R = d.size(0), G = d.size(1), total = d_kernel.size(0);
  const float* pd = d.data_ptr<float>();
  float* out = d_kernel.data_ptr<float>();
  float* bias = d_bias.data_ptr<float>();
  const int64_t panels = (G + kPanel - 1) / kPanel;
  const int64_t grain =
      std::max<int64_t>(1, kMacsPerThread / std::max<int64_t>(1, total * R * kPanel));
  int64_t first = 0;  // an input without rows: its d_kernel rows are zeros
  for (const RowsView& x : inputs) {
    if (x.rows == 0) d_kernel.narrow(0, first, x.cols).zero_();
    first += x.cols;
  }
  at::parallel_for(0, panels, grain, [&](int64_t p0, int64_t p1) {
    alignas(64) float buf[kKc * kPanel];
    std::vector<double> sums((p1 - p0) * kPanel, 0.0);
    for (int64_t k0 = 0; k0 < R; k0 += kKc) {
      const int64_t kc = std::min(kKc, R - k0);
      for (int64_t p = p0; p < p1; ++p) {
        // column panel p of d^T: element (j, k) of w = d^T is d[k][j]
        pack_panel(pd, d.stride(1), d.stride(0), G, p, k0, kc, buf);
        float chunk[kPanel] = {};
        for (int64_t k = 0; k < kc; ++k)
#pragma GCC ivdep
          for (int64_t j = 0; j < kPanel; ++j) chunk[j] += buf[k * kPanel + j];
        for (int64_t j = 0; j < kPanel; ++j) sums[(p - p0) * kPanel + j] += chunk[j];
        int64_t row = 0;
        for (const RowsView& x : inputs) {
          // a = x^T: element (r, k) = x's row k, column r; x's row k pairs with d's row skip + k
          const int64_t skip = R - x.rows, lo = std::max(k0, skip);
          float* o = out + row * G;
          row += x.cols;
          if (lo >= k0 + kc) continue;  // the chunk is before x's rows
          x.runs(lo - skip, k0 + kc - skip, [&](int64_t k, int64_t m, const float* pa) {
            const int64_t dk = skip + k;  // d's row
            const float* add = dk > skip ? o : nullptr;
            if (x.by_step)
              panel_rows<false>(x.cols, pa, x.sc, x.sr, buf + (dk - k0) * kPanel, kPanel, m, add,
                                G, o, G, p, G);
            else
              panel_rows(x.cols, pa, x.sc, x.sr, buf + (dk - k0) * kPanel, kPanel, m, add, G, o,
                         G, p, G);
          });
        }
      }
    }
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t j = 0; j < std::min(kPanel, G - p * kPanel); ++j)
        bias[p * kPanel + j] = static_cast<float>(sums[(p - p0) * kPanel + j]);
  });
}
