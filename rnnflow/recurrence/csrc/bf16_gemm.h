// The bfloat16 packed step GEMM (AVX512-BF16), included once by loops.cpp before the kernel
// variants, outside them: it is not a variant of its own but an option of the avx512 variant's
// LSTM loops (StepWeight's bf16 mode, loops_isa.h) under bfloat16 autocast.
//
// out[n, N] = bf16(a)[n, K] bf16(w)^T (+ add), float32 in and out, float32 accumulation: both
// operands rounded to bfloat16 (round to nearest even, as `Tensor.bfloat16()`), then `vdpbf16ps`
// multiplies pairs of K (a's pair broadcast to every lane, w's pairs packed once per loop into
// panels of 32 columns, [panels][K/2][32] 32-bit pairs, element 2k in the low half; an odd K is
// padded with a zero) and adds both products into one float32 lane per column. 12 x 32
// register blocks (24 zmm accumulators), as the float32 kernel. Only this code uses the
// AVX512-BF16 instructions, each function under its own target attribute, so the rest of the
// library builds and runs without them; `bf16_supported()` (cpuid) says whether it may run.
// Compilers without AVX512-BF16 support (GCC < 10, non-GCC, non-x86) get stubs that refuse.

#if RNNFLOW_X86_VARIANTS && __GNUC__ >= 10
#define RNNFLOW_BF16 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define RNNFLOW_BF16 0
#endif

constexpr int64_t kBfPanel = 32;  // columns per panel: 2 zmm of 16 float32 lanes
constexpr int kBfRows = 12;       // rows per register block

// float32 -> bfloat16 bits, round to nearest even (as torch's conversion, subnormals kept);
// NaN stays a NaN. Branch-free (a select), so that loops over rows of it vectorise.
inline uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
}

// Whether the CPU has AVX512-BF16 (cpuid leaf 7, sub-leaf 1, EAX bit 5) and the AVX-512 subsets
// the avx512 variant needs (with the OS's support for the zmm state: __builtin_cpu_supports).
// Asked once per process: in a virtual machine the cpuid instruction traps to the hypervisor
// (the bf16_supported op took 7.95 us per call here, 0.50 us since; every bf16 op call asks it).
bool cpu_has_bf16() {
#if RNNFLOW_BF16
  static const bool has = [] {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
      return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
    return ((eax >> 5) & 1u) != 0;
  }();
  return has;
#else
  return false;
#endif
}

#if RNNFLOW_BF16
// One R x 32 block: rows of bf16 pairs (row r's pair p at a[r * ar + p * ap]) times one packed
// panel (`pairs` pairs of 32 columns); m0, m1 mask the panel's valid columns (0-15, 16-31) for
// `add`'s loads and the stores.
template <int R>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void bf16_block(
    const uint32_t* a, int64_t ar, int64_t ap, int64_t pairs, const uint32_t* panel,
    const float* add, int64_t ldadd, float* c, int64_t ldc, __mmask16 m0, __mmask16 m1) {
  __m512 acc[R][2];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    acc[r][0] = add ? _mm512_maskz_loadu_ps(m0, add + r * ldadd) : _mm512_setzero_ps();
    acc[r][1] = add ? _mm512_maskz_loadu_ps(m1, add + r * ldadd + 16) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512i w0 = _mm512_loadu_si512(panel + p * kBfPanel);
    const __m512i w1 = _mm512_loadu_si512(panel + p * kBfPanel + 16);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512i b = _mm512_set1_epi32(static_cast<int>(a[r * ar + p * ap]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)b, (__m512bh)w0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)b, (__m512bh)w1);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
  }
}

template <int R>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void bf16_tail(
    int rows, const uint32_t* a, int64_t ar, int64_t ap, int64_t pairs, const uint32_t* panel,
    const float* add, int64_t ldadd, float* c, int64_t ldc, __mmask16 m0, __mmask16 m1) {
  if constexpr (R > 0) {
    if (rows == R) return bf16_block<R>(a, ar, ap, pairs, panel, add, ldadd, c, ldc, m0, m1);
    return bf16_tail<R - 1>(rows, a, ar, ap, pairs, panel, add, ldadd, c, ldc, m0, m1);
  }
}

// out[n, N] (row stride ldc) = a[n, pairs] packed^T (+ add, row stride ldadd, may be 0 (a
// bias) or alias out): a's row r, pair p at a[(r / 12) * ablk + (r % 12) * ar + p * ap] (rows
// in blocks of the register block's 12); packed panel q's pair p at
// packed[q * panel_stride + p * 32] (panel_stride >= pairs * 32: a chunk of longer panels).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_gemm(
    int64_t n, const uint32_t* a, int64_t ablk, int64_t ar, int64_t ap, int64_t pairs,
    const uint32_t* packed, int64_t panel_stride, int64_t N, const float* add, int64_t ldadd,
    float* c, int64_t ldc) {
  const int64_t panels = (N + kBfPanel - 1) / kBfPanel;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t cols = std::min<int64_t>(kBfPanel, N - p * kBfPanel);
    const __mmask16 m0 = cols >= 16 ? 0xffff : static_cast<__mmask16>((1u << cols) - 1);
    const __mmask16 m1 =
        cols >= 32 ? 0xffff : (cols > 16 ? static_cast<__mmask16>((1u << (cols - 16)) - 1) : 0);
    const uint32_t* panel = packed + p * panel_stride;
    const int64_t col = p * kBfPanel;
    int64_t r = 0;
    for (; r + kBfRows <= n; r += kBfRows)
      bf16_block<kBfRows>(a + (r / kBfRows) * ablk, ar, ap, pairs, panel,
                          add ? add + r * ldadd + col : nullptr, ldadd, c + r * ldc + col, ldc,
                          m0, m1);
    if (r < n)
      bf16_tail<kBfRows - 1>(static_cast<int>(n - r), a + (r / kBfRows) * ablk, ar, ap, pairs,
                             panel,
                             add ? add + r * ldadd + col : nullptr, ldadd, c + r * ldc + col, ldc,
                             m0, m1);
  }
}

// n rows of a (row stride lda, unit element stride) as bf16 pairs, dst[r * ldd + k / 2]
// (element k in the low half when k is even; an odd K's pad is zero), 32 at a time with
// `vcvtne2ps2bf16` (round to nearest even; like `vdpbf16ps`, it flushes subnormals to zero).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_rows(const float* a,
                                                                       int64_t lda, int64_t n,
                                                                       int64_t K, uint32_t* dst,
                                                                       int64_t ldd) {
  const int64_t pairs = (K + 1) / 2;
  for (int64_t r = 0; r < n; ++r) {
    const float* row = a + r * lda;
    auto* d = reinterpret_cast<uint16_t*>(dst + r * ldd);
    for (int64_t k = 0; k < 2 * pairs; k += 32) {
      const int64_t left = K - k;  // elements of a left to read (the pad reads as zero)
      const __mmask16 lo = left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1);
      const __mmask16 hi =
          left >= 32 ? 0xffff : (left > 16 ? static_cast<__mmask16>((1u << (left - 16)) - 1) : 0);
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, row + k + 16),
                                             _mm512_maskz_loadu_ps(lo, row + k));
      const int64_t out = std::min<int64_t>(32, 2 * pairs - k);
      const __mmask32 keep = out >= 32 ? 0xffffffffu : static_cast<__mmask32>((1u << out) - 1);
      _mm512_mask_storeu_epi16(d + k, keep, (__m512i)v);
    }
  }
}

// dst[(j / 32) * pstride + j % 32] = bf16(r0[j]) | bf16(r1[j]) << 16 for j < count (r1 null:
// a zero high half): two rows as pairs, for the weight gradient, whose products sum over rows
// (bf16_weight_grad), written straight into panels of 32 columns pstride apart (pstride = 32: a
// plain row); `sum` (may be null): sum[j] += r0[j] + r1[j] in float32 (the bias's gradient).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_pair_rows(
    const float* r0, const float* r1, int64_t count, uint32_t* dst, int64_t pstride, float* sum) {
  for (int64_t j = 0; j < count; j += 16) {
    const int64_t left = count - j;
    const __mmask16 m = left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1);
    const __m512 v0 = _mm512_maskz_loadu_ps(m, r0 + j);
    const __m512 v1 = r1 ? _mm512_maskz_loadu_ps(m, r1 + j) : _mm512_setzero_ps();
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v0));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v1));
    _mm512_mask_storeu_epi32(dst + (j / kBfPanel) * pstride + j % kBfPanel, m,
                             _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    if (sum)
      _mm512_mask_storeu_ps(sum + j, m,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m, sum + j), _mm512_add_ps(v0, v1)));
  }
}
#else
void bf16_gemm(int64_t, const uint32_t*, int64_t, int64_t, int64_t, int64_t, const uint32_t*,
               int64_t, int64_t, const float*, int64_t, float*, int64_t) {
  TORCH_CHECK(false, "rnnflow_loops: this build has no bfloat16 GEMM (needs GCC >= 10 on x86)");
}
void bf16_pair_rows(const float*, const float*, int64_t, uint32_t*, int64_t, float*) {
  TORCH_CHECK(false, "rnnflow_loops: this build has no bfloat16 GEMM (needs GCC >= 10 on x86)");
}
void bf16_rows(const float*, int64_t, int64_t, int64_t, uint32_t*, int64_t) {
  TORCH_CHECK(false, "rnnflow_loops: this build has no bfloat16 GEMM (needs GCC >= 10 on x86)");
}
#endif

// w (N, K) with element (n, k) at w[n * s0 + k * s1], packed into [panels, ceil(K/2), 32] pairs
// (int32 tensor; padding columns and the odd K's pad are zeros): each pair of K, two runs of N
// when n is contiguous (s0 = 1, the loops' transposed views), converted 16 columns at a time by
// bf16_pair_rows straight into the panels; when k is contiguous instead (s1 = 1: the backward
// loop's W_h [H, 4H]), each row's pairs by bf16_rows, then spread over the panels (an ATen
// transposed copy first took 80 us for the tutorial's 128 x 512 weight, called per layer);
// other strides are transposed into the first form first. Rounding to nearest even as to_bf16;
// a subnormal weight comes out 0, which vdpbf16ps reads as 0 either way. It runs at every layer
// call (an element at a time it was 2% of the loops' time).
// Into `out` (zeros where nothing is written: padding columns, the odd K's pad), panel q's pair
// p at out[q * pstride + p * 32] (pstride >= pairs * 32: bf16_pack2's panels hold two weights).
void bf16_pack_into(uint32_t* out, int64_t pstride, const float* w, int64_t s0, int64_t s1,
                    int64_t N, int64_t K) {
  const int64_t pairs = (K + 1) / 2;
  if (N == 0 || K == 0) return;
  if (s0 != 1 && s1 == 1) {  // k contiguous: row n's pairs, then into panel n / 32's column
    std::vector<uint32_t> row(pairs);
    for (int64_t n = 0; n < N; ++n) {
      bf16_rows(w + n * s0, 0, 1, K, row.data(), pairs);
      uint32_t* dst = out + (n / kBfPanel) * pstride + n % kBfPanel;
      for (int64_t p = 0; p < pairs; ++p) dst[p * kBfPanel] = row[p];
    }
    return;
  }
  Tensor copy;
  if (s0 != 1) {  // n contiguous: w^T [K, N] row-major
    copy = at::from_blob(const_cast<float*>(w), {N, K}, {s0, s1}, at::kFloat).t().contiguous();
    w = copy.data_ptr<float>();
    s1 = N;
  }
  for (int64_t p = 0; p < pairs; ++p)
    bf16_pair_rows(w + 2 * p * s1, 2 * p + 1 < K ? w + (2 * p + 1) * s1 : nullptr, N,
                   out + p * kBfPanel, pstride, nullptr);
}

Tensor bf16_pack(const float* w, int64_t s0, int64_t s1, int64_t N, int64_t K) {
  const int64_t panels = (N + kBfPanel - 1) / kBfPanel, pairs = (K + 1) / 2;
  Tensor packed = at::zeros({panels, pairs, kBfPanel}, at::kInt);
  bf16_pack_into(reinterpret_cast<uint32_t*>(packed.data_ptr<int32_t>()), pairs * kBfPanel, w, s0,
                 s1, N, K);
  return packed;
}

// Pairs of K per pass of the kernel: a panel's chunk of kBfKc pairs (16 KB) and a register
// block's rows of a (12 x kBfKc pairs, 6 KB) fit in a 32 KB L1 together; a whole panel of a
// longer K (the backward loop's d_gates W_h: K = 4H = 512, 256 pairs, a 32 KB panel) does not,
// and each row block then streams it from L2 again. Later chunks add onto out: the float32
// accumulation runs through the pairs in the same order either way (a store and a reload are
// exact), so chunking changes no bit.
constexpr int64_t kBfKc = 128;

// out[n, N] = a[n, pairs] packed^T (+ add) for row-major pairs a (row stride `pairs`) and a
// weight packed whole (bf16_pack, bf16_pack2), kBfKc pairs of K at a time; `used` (1 to
// pairs; default all): only the first `used` pairs of a and of the weight.
inline void bf16_gemm_kc(int64_t n, const uint32_t* a, int64_t pairs, const uint32_t* packed,
                         int64_t N, const float* add, int64_t ldadd, float* c, int64_t ldc,
                         int64_t used = -1) {
  const int64_t run = used < 0 ? pairs : used;
  for (int64_t k0 = 0; k0 < run; k0 += kBfKc) {
    const bool first = k0 == 0;
    bf16_gemm(n, a + k0, kBfRows * pairs, pairs, 1, std::min(kBfKc, run - k0),
              packed + k0 * kBfPanel, pairs * kBfPanel, N, first ? add : c, first ? ldadd : ldc,
              c, ldc);
  }
}

// The whole product for float32 rows a (row stride lda): a converted to pairs in a per-thread
// scratch buffer (once per call: every panel reads it), then the kernel. Callers check
// bf16_supported() first.
inline void bf16_step_gemm(int64_t n, const float* a, int64_t lda, int64_t K,
                           const uint32_t* packed, int64_t N, const float* add, int64_t ldadd,
                           float* c, int64_t ldc) {
  static thread_local std::vector<uint32_t> scratch;
  const int64_t pairs = (K + 1) / 2;
  if (static_cast<int64_t>(scratch.size()) < n * pairs) scratch.resize(n * pairs);
  bf16_rows(a, lda, n, K, scratch.data(), pairs);
  bf16_gemm_kc(n, scratch.data(), pairs, packed, N, add, ldadd, c, ldc);
}

// Two weights w0 (N, K0) and w1 (N, K1) (element (n, k) at w[n * s0 + k * s1]) packed as one
// (N, K0 + K1) weight [w0 | w1] whose panels hold w0's pairs (an odd K0 padded) then w1's: the
// LSTM's input and recurrent weights, so that a step's two products are one pass of the kernel
// (bf16_step_gemm2) instead of two passes over the gates block.
Tensor bf16_pack2(const float* w0, int64_t s00, int64_t s01, int64_t K0, const float* w1,
                  int64_t s10, int64_t s11, int64_t K1, int64_t N) {
  // each weight packed straight into its place in the joint panels (was: each packed into a
  // tensor of its own, then both copied: three allocations, now one)
  const int64_t panels = (N + kBfPanel - 1) / kBfPanel, p0 = (K0 + 1) / 2, p1 = (K1 + 1) / 2;
  Tensor packed = at::zeros({panels, p0 + p1, kBfPanel}, at::kInt);
  auto* out = reinterpret_cast<uint32_t*>(packed.data_ptr<int32_t>());
  bf16_pack_into(out, (p0 + p1) * kBfPanel, w0, s00, s01, N, K0);
  bf16_pack_into(out + p0 * kBfPanel, (p0 + p1) * kBfPanel, w1, s10, s11, N, K1);
  return packed;
}

// out[n, N] = [a0 | a1] packed^T (+ add) for bf16_pack2's weight: a0's rows (K0 columns, row
// stride lda0) and a1's (K1, lda1) converted side by side into one scratch row of pairs, then
// one kernel pass. The accumulation order is that of the two products run one after the other
// (add, a0's pairs, then a1's, each into the same float32 accumulators), so the result is the
// same bit for bit; only the second pass over out is saved. a1 null: a1 is known to be zeros
// (the LSTM's h_{-1} from a zero state) and its pairs are skipped: the same values, less the
// trailing additions of zero products (which could only turn a -0 into +0, or flush a
// subnormal sum to 0: vdpbf16ps flushes its results).
inline void bf16_step_gemm2(int64_t n, const float* a0, int64_t lda0, int64_t K0, const float* a1,
                            int64_t lda1, int64_t K1, const uint32_t* packed, int64_t N,
                            const float* add, int64_t ldadd, float* c, int64_t ldc) {
  static thread_local std::vector<uint32_t> scratch;
  const int64_t p0 = (K0 + 1) / 2, pairs = p0 + (K1 + 1) / 2;
  if (static_cast<int64_t>(scratch.size()) < n * pairs) scratch.resize(n * pairs);
  bf16_rows(a0, lda0, n, K0, scratch.data(), pairs);
  if (a1)
    bf16_rows(a1, lda1, n, K1, scratch.data() + p0, pairs);
  else if (p0 == 0)  // no a0 either: a1's zeros run (the kernel then writes out = add)
    std::fill(scratch.begin(), scratch.begin() + n * pairs, 0u);
  bf16_gemm_kc(n, scratch.data(), pairs, packed, N, add, ldadd, c, ldc, a1 || p0 == 0 ? -1 : p0);
}

// One chunk of the bfloat16 weight gradient out [total, G] += [inputs]^T d over d's columns
// [col0, col0 + cols): the products sum over rows, so both sides are paired along the rows, up
// to kBfKc pairs a chunk (so that what is packed stays in cache): d's pair of rows into panels
// [kBfKc][32] (16 KB each, in L1 with a register block of the inputs' 6 KB), the inputs' pair
// of rows (their columns side by side, `total` in all) into blocks of 12 columns [kBfKc][12] (a
// register block's broadcasts then read 48 consecutive bytes per pair); `flush` runs the kernel
// over the chunk, the first flush writing out, later ones adding onto it. The bias's gradient,
// d summed over rows in float32, comes with the packing (`sums`, cols wide).
class Bf16GradChunk {
 public:
  // A pair of rows of one input (a1 null: a zero row, an odd count's pad), `width` columns.
  struct Part {
    const float* a0;
    const float* a1;
    int64_t width;
  };

  Bf16GradChunk(int64_t col0, int64_t cols, int64_t total, int64_t ldout)
      : col0_(col0), cols_(cols), total_(total), ldout_(ldout),
        dpack_(((cols + kBfPanel - 1) / kBfPanel) * kBfKc * kBfPanel),
        apack_(((total + kBfRows - 1) / kBfRows) * kBfKc * kBfRows), row_(total),
        sums_(cols, 0.0f) {}

  bool full() const { return count_ == kBfKc; }

  // Packs rows d0 and d1 of d (d1 null: a zero row; each read from column col0) and the same
  // rows of the inputs as the chunk's next pair. Callers flush a full chunk first.
  void add(const float* d0, const float* d1, const Part* parts, int64_t nparts) {
    const int64_t q = count_++;
    bf16_pair_rows(d0 + col0_, d1 ? d1 + col0_ : nullptr, cols_, dpack_.data() + q * kBfPanel,
                   kBfKc * kBfPanel, sums_.data());
    int64_t at = 0;
    for (int64_t k = 0; k < nparts; ++k) {
      bf16_pair_rows(parts[k].a0, parts[k].a1, parts[k].width, row_.data() + at, kBfPanel,
                     nullptr);
      at += parts[k].width;
    }
    for (int64_t k = 0; k < total_; k += kBfRows)
      std::memcpy(apack_.data() + ((k / kBfRows) * kBfKc + q) * kBfRows, row_.data() + k,
                  std::min<int64_t>(kBfRows, total_ - k) * sizeof(uint32_t));
  }

  // out[:, col0 : col0 + cols] (row stride ldout) = (or += after the first flush) the chunk's
  // product; an empty chunk writes nothing.
  void flush(float* out) {
    if (count_ == 0) return;
    float* o = out + col0_;
    bf16_gemm(total_, apack_.data(), kBfKc * kBfRows, 1, kBfRows, count_, dpack_.data(),
              kBfKc * kBfPanel, cols_, started_ ? o : nullptr, ldout_, o, ldout_);
    started_ = true;
    count_ = 0;
  }

  bool started() const { return started_; }
  const std::vector<float>& sums() const { return sums_; }

  // From the next pair on, only the first `total` columns of the inputs (out's first `total`
  // rows): the rest are known zeros (the LSTM's h_{-1} from a zero state). Call on an empty
  // chunk (after a flush); the rows past `total` keep what earlier flushes wrote (the caller
  // zeroes them if none did).
  void narrow(int64_t total) { total_ = std::min(total_, total); }

 private:
  int64_t col0_, cols_, total_, ldout_;
  std::vector<uint32_t> dpack_, apack_, row_;
  std::vector<float> sums_;
  int64_t count_ = 0;
  bool started_ = false;
};

// d_kernel [sum K_k, G] = [bf16(x_k)^T bf16(d)] stacked, each x_k [R, K_k] (unit column
// stride), d [R, G] (row-major); d_bias [G] = d summed over rows (float32): consecutive rows
// paired, a Bf16GradChunk at a time. Threads split the panels (each packs the inputs' chunk for
// itself). The LSTM's bf16 backward loop runs the same chunks itself (lstm_backward's d_kernel).
void bf16_weight_grad(const std::vector<Tensor>& inputs, const Tensor& d, Tensor& d_kernel,
                      Tensor& d_bias) {
  const int64_t R = d.size(0), G = d.size(1), total = d_kernel.size(0);
  const int64_t panels = (G + kBfPanel - 1) / kBfPanel;
  const float* pd = d.data_ptr<float>();
  float* out = d_kernel.data_ptr<float>();
  float* bias = d_bias.data_ptr<float>();
  at::parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
    const int64_t col0 = p0 * kBfPanel, cols = std::min(p1 * kBfPanel, G) - col0;
    Bf16GradChunk chunk(col0, cols, total, G);
    std::vector<Bf16GradChunk::Part> parts(inputs.size());
    for (int64_t r = 0; r < R; r += 2) {
      const bool pair = r + 1 < R;
      for (size_t k = 0; k < inputs.size(); ++k) {
        const float* x0 = inputs[k].data_ptr<float>() + r * inputs[k].stride(0);
        parts[k] = {x0, pair ? x0 + inputs[k].stride(0) : nullptr, inputs[k].size(1)};
      }
      if (chunk.full()) chunk.flush(out);
      chunk.add(pd + r * G, pair ? pd + (r + 1) * G : nullptr, parts.data(),
                static_cast<int64_t>(parts.size()));
    }
    chunk.flush(out);
    std::memcpy(bias + col0, chunk.sums().data(), cols * sizeof(float));
  });
}

// What the LSTM's bf16 backward loop needs to compute the weight gradient itself
// (lstm_backward_impl in loops_isa.h, its d_kernel and d_bias).
struct LoopWeightGrad {
  const Tensor& x;   // [>= S, B, D], the layer's inputs
  const Tensor& hs;  // [>= S + 1, B, H]: hs[t] = h_{t-1}
  Tensor& d_kernel;  // [D + H, 4H]
  Tensor& d_bias;    // [4H]
  bool keep_d_gates;  // false: d_gates is not needed after the loop (no input gradient)
  bool zero_h0;       // hs[0] is zeros (a zero state): its rows of d_kernel are zeros too
};
