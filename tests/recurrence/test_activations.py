"""The compiled loops' sigmoid and tanh (csrc/loops_isa.h: ``exp_f`` in the avx2 and generic
variants, ``exp_zmm`` with ``vscalefps`` in the avx512 one), against float64, for every
kernel variant the CPU runs: ``ops.activation`` applies them exactly as the loops do.

Bounds (u = 2^-24, float32's unit roundoff; exp: Cephes's range reduction and degree-6
polynomial, within 1 ulp = 2u relative, as Cephes states for its expf):
- sigmoid = 1 / (1 + e^{-x}): the exp's relative error enters damped by e / (1 + e) <= 1, the
  sum and the division add u each, so the result is within 2u + 2u relative = 4 ulps (an ulp
  of y is >= 2^-24 |y|) wherever it is a normal float (x >= -87.3); below that the true value
  is < 2^-126 and the result is that small too (a subnormal, or 0 once e^{-x} overflows):
  |error| <= 2^-126.
- tanh = 1 - 2 / (1 + e^{2x}): q = 2 / (1 + E) in [0, 2] carries the exp's error damped by
  2E / (1 + E)^2 <= 1/2 (u absolute) and the sum's and the division's (2u relative each of
  q <= 2: 4u), then 1 - q rounds (u/2): |error| <= 5.5u absolute. Not relative: near 0 the
  subtraction cancels (tanh(1e-10) comes out 0), which absolute error bounds.
Measured (every 61st float32 in [-104, 104], both signs, 2026-11-30, every variant): sigmoid
2.32 ulps, tanh 2.98u absolute (4.90 ulps where |x| >= 0.5).

float64 stays exact: 1 / (1 + std::exp(-x)) and std::tanh, within 4 float64 ulps of torch's.
"""

from __future__ import annotations

import math

import pytest
import torch

from rnnflow.recurrence import _ext

U = 2.0**-24
TANH, SIGMOID = 0, 1  # the loops' activation codes (loops.cpp, Act)


def _grid(stride: int) -> torch.Tensor:
    """Every ``stride``-th float32 of each sign with |x| <= 104 (bit patterns from +0), and
    the values that need care: +-0, subnormals, the clamps' edges, huge, inf and NaN."""
    top = int(torch.tensor(104.0).view(torch.int32))
    pos = torch.arange(0, top + 1, stride, dtype=torch.int64).to(torch.int32).view(torch.float32)
    special = torch.tensor(
        [0.0, -0.0, 1e-45, -1e-45, 1e-40, 1e-10, -1e-10, 87.0, -87.0, 88.0, -88.0, 88.8, -88.8]
        + [103.9, -103.9, 104.1, -104.1, 1e4, -1e4, 1e30, -1e30, 3.4e38, -3.4e38]
        + [math.inf, -math.inf]
    )
    return torch.cat([pos, -pos, special])


def _ulp(y: torch.Tensor) -> torch.Tensor:
    """float32's ulp at each float64 value (>= 2^-149)."""
    _, e = torch.frexp(y.abs())
    return torch.ldexp(torch.ones_like(y), (e - 24).clamp(min=-149))


@pytest.mark.parametrize("isa", _ext.ISAS)
def test_float32_sigmoid_and_tanh_within_the_derived_bounds(force_isa, isa):
    ops = force_isa(isa)
    x = _grid(997)
    wide = x.double()
    sig = ops.activation(x, SIGMOID).double()
    want = torch.sigmoid(wide)
    normal = want >= 2.0**-126
    assert ((sig - want).abs() / _ulp(want))[normal].max() <= 4
    assert (sig - want).abs()[~normal].max() <= 2.0**-126
    tanh = ops.activation(x, TANH).double()
    assert (tanh - torch.tanh(wide)).abs().max() <= 5.5 * U
    # the limits (sigmoid's 0 within its 2^-126: exp_f clamps e^{-x} at e^88), NaN stays NaN
    edge = torch.tensor([math.inf, 1e30, 0.0, -0.0, -math.inf, -1e30])
    low = ops.activation(edge, SIGMOID)
    assert low[:4].tolist() == [1.0, 1.0, 0.5, 0.5] and 0 <= low[4:].max() <= 2.0**-126
    edge = torch.tensor([math.inf, -math.inf, 1e30, -1e30, 0.0, -0.0])
    assert ops.activation(edge, TANH).tolist() == [1.0, -1.0, 1.0, -1.0, 0.0, 0.0]
    nan = torch.tensor([math.nan, 1.0, math.nan, -2.0] * 5)  # whole lanes and the tail
    for code, f in ((SIGMOID, torch.sigmoid), (TANH, torch.tanh)):
        got = ops.activation(nan, code)
        assert got.isnan().tolist() == nan.isnan().tolist()
        torch.testing.assert_close(got[1::2], f(nan[1::2]), rtol=0, atol=5.5 * U)


@pytest.mark.parametrize("isa", _ext.ISAS)
def test_float64_activations_are_exact(force_isa, isa):
    """The float64 loops take no approximation (their 1e-10 parity tests rest on it): within
    4 float64 ulps (2^-52 relative each) of torch's."""
    ops = force_isa(isa)
    x = torch.linspace(-40, 40, 20001, dtype=torch.float64)
    torch.testing.assert_close(
        ops.activation(x, SIGMOID), torch.sigmoid(x), rtol=4 * 2.0**-52, atol=0
    )
    torch.testing.assert_close(ops.activation(x, TANH), torch.tanh(x), rtol=4 * 2.0**-52, atol=0)


def test_activation_refuses_what_it_cannot_run(force_isa):
    ops = force_isa("generic")
    with pytest.raises(RuntimeError, match=r"activation: act must be 0 \(tanh\), 1 \(sigmoid\)"):
        ops.activation(torch.zeros(3), 7)
    with pytest.raises(
        RuntimeError, match=r"activation: x must be a float32 or float64 CPU tensor, got Int"
    ):
        ops.activation(torch.zeros(3, dtype=torch.int32), TANH)
