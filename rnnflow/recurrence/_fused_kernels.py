"""Hand-written forward and BPTT backward for one layer of each built-in cell, over all steps.

Each layer is one ``torch.autograd.Function``. The forward computes the input projection of every
step in one GEMM (the compiled LSTM loop: each step's, with its recurrent GEMM) and keeps
only the recurrent product ``h @ W_h`` (and the pointwise gate maths) inside the time loop,
writing into preallocated [T, B, ...] buffers. The backward walks the steps in reverse doing only
the unavoidable per-step work (``dgates @ W_h^T`` and pointwise products), then computes the
weight and bias gradients in one pass over all steps' dG and the input gradient in one GEMM:

    dW_x = X^T dG   ([D, T*B] @ [T*B, G]),   dW_h = H_prev^T dG,   db = sum(dG),   dX = dG W_x^T

The time loops exist twice, with one interface: compiled (``csrc/loops.cpp`` through ``_ext``:
the loop, the recurrent GEMM and the gate maths fused into one pass per step, in C++) for float32
and float64 on CPU, and in Python (``_py_*`` below) for everything else, when the extension is
unavailable, or with ``RNNFLOW_NO_EXT=1``. Both compute the same function (tested against each
other and against the reference loop).

Sequence lengths: a shrinking batch, as PackedSequence. The caller (``fused.py``) sorts the rows
by length, longest first, so that the rows still running at step ``t`` are the first
``batch_sizes[t]``; step ``t`` computes only those. Rows past their length are never written:
their outputs stay zero (buffers are zero-initialised) and the final state of each row is
gathered at its last step (the initial state for length 0). The backward is the exact adjoint:
the final-state gradient enters each row at its last step, inactive rows get zero gradients, and
the weight GEMMs over all steps see those zeros.

Activations (identified by ``fused._activation_kind``) are applied in place; their derivative is
taken from the activation's output: tanh 1 - y^2, sigmoid y (1 - y), relu [y > 0], linear 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnflow.recurrence import _ext
from rnnflow.recurrence._batched_backward import per_example_backward


# ----------------------------------------------------------------------------- GEMMs
def _probe_onednn(dtype: torch.dtype, op: Any = None) -> bool:
    """Whether oneDNN's dense linear (``torch.ops.mkldnn._linear_pointwise``) runs in ``dtype``
    here, tried in the three forms ``lin`` and ``_project`` call (plain, with a bias vector,
    ``binary`` add of a matrix); ``op`` replaces the real op (tests).

    PyTorch's float32 ``mm``/``addmm`` on CPU go to MKL, which runs AVX2 code on AMD CPUs
    (measured ~105 GFLOP/s per core here); oneDNN uses AVX-512 (~140-240 GFLOP/s on the same
    shapes), in exact float32. A private op, whose bfloat16 forms need AVX-512 (BW, VL, DQ) or
    AVX-NE-CONVERT and raise elsewhere: probed once per dtype (``onednn_usable``), and every
    use falls back to ``addmm`` where the probe failed.
    """
    try:
        op = op if op is not None else torch.ops.mkldnn._linear_pointwise
        a, w = torch.ones(2, 3, dtype=dtype), torch.ones(4, 3, dtype=dtype)
        plain = op(a, w, None, "none", [], "")
        biased = op(a, w, torch.ones(4, dtype=dtype), "none", [], "")
        added = op.binary(a, torch.ones(2, 4, dtype=dtype), w, None, "add")
        return bool((plain == 3).all()) and bool((biased == 4).all()) and bool((added == 4).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


_ONEDNN: dict[torch.dtype, bool] = {}  # the probe's verdict per dtype (a property of the CPU)


def onednn_usable(dtype: torch.dtype) -> bool:
    """Whether ``lin`` may call oneDNN's linear in ``dtype`` (float32, bfloat16) on this CPU."""
    if dtype not in (torch.float32, torch.bfloat16):
        return False
    if dtype not in _ONEDNN:
        _ONEDNN[dtype] = _probe_onednn(dtype)
    return _ONEDNN[dtype]


# Below this many multiply-adds oneDNN's per-call cost (~15 us) outweighs its faster kernel
# (MKL: 2-7 us at 1-16 x 128 x 128, oneDNN ~15; at 128 x 128 x 128, 41 vs 31 us); csrc/loops.cpp
# uses the same rule.
_ONEDNN_MACS = 3 << 19


def _use_onednn(x: Tensor) -> bool:
    return x.device.type == "cpu" and onednn_usable(x.dtype)


def _packed_gemm(x: Tensor) -> Any | None:
    """The compiled loops' packed GEMM (``csrc/loops.cpp``: float32, the AVX-512 or AVX2 kernel
    variant), when it serves ``x``: 1.1-3x oneDNN's linear at the shapes used here (AVX-512),
    and no ~25 us per-call cost. Asked at every call: ``RNNFLOW_ISA`` may change the variant."""
    if x.dtype != torch.float32 or x.device.type != "cpu":
        return None
    ops = _ext.loops()
    return ops if ops is not None and ops.packed_gemm() else None


def lin(x: Tensor, weight: Tensor, add: Tensor | None = None) -> Tensor:
    """``x @ weight^T (+ add)``: ``x`` [M, K], ``weight`` [N, K] (``nn.Linear``'s layout),
    ``add`` [M, N] or [N]. Either operand may be a transposed view. A new tensor."""
    ops = _packed_gemm(x)
    if ops is not None:
        return ops.linear(x, weight, add)
    big = x.shape[0] * weight.shape[0] * weight.shape[1] >= _ONEDNN_MACS
    if _use_onednn(x) and (big or x.dtype == torch.bfloat16):
        op = torch.ops.mkldnn._linear_pointwise
        if add is None:
            return op(x, weight, None, "none", [], "")
        if add.dim() == 1:
            return op(x, weight, add, "none", [], "")
        return op.binary(x, add.contiguous(), weight, None, "add")
    if add is None:
        return torch.mm(x, weight.t())
    return torch.addmm(add, x, weight.t())


def _project(x: Tensor, w_x: Tensor, bias: Tensor) -> Tensor:
    """The input projection of every step, ``x`` [S, B, D] -> ``x W_x + b`` [S*B, G] (one GEMM,
    bias fused: the packed GEMM, which reads ``x``'s rows step by step through their strides,
    else oneDNN for float32, 2x MKL's addmm at 3584 x 28 x 128, on a dense copy of the rows
    where ``x`` is not one)."""
    ops = _packed_gemm(x)
    if ops is not None:
        return ops.linear(x, w_x.t(), bias)
    rows = x.reshape(-1, x.shape[-1])
    if _use_onednn(x) and x.dtype == torch.float32:
        w = w_x.t().contiguous()
        return torch.ops.mkldnn._linear_pointwise(rows, w, bias, "none", [], "")
    return torch.addmm(bias, rows, w_x)


# ----------------------------------------------------------------------------- activations
_ACT_CODES = {"tanh": 0, "sigmoid": 1, "relu": 2, "linear": 3}  # csrc/loops.cpp's Act


def tanh_(x: Tensor) -> Tensor:
    """``tanh`` in place. In float32 as ``2 sigmoid(2x) - 1``: PyTorch's CPU float32 tanh is
    several times slower than its sigmoid (measured: 35 us vs 6 us for 128 x 128), and the
    identity is exact up to ~2e-7 absolute (the float32 rounding of sigmoid near 1/2)."""
    if x.dtype == torch.float32 and x.device.type == "cpu":
        return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return x.tanh_()


def _act_(kind: str, x: Tensor) -> Tensor:
    """Apply activation ``kind`` to ``x`` in place."""
    if kind == "tanh":
        return tanh_(x)
    if kind == "sigmoid":
        return x.sigmoid_()
    if kind == "relu":
        return x.relu_()
    return x  # linear


def _act_grad(kind: str, y: Tensor) -> Tensor:
    """d act / d pre-activation, from the activation's output ``y`` (a new tensor)."""
    if kind == "tanh":
        return torch.addcmul(torch.ones_like(y), y, y, value=-1.0)  # 1 - y^2
    if kind == "sigmoid":
        return y - y * y  # y (1 - y)
    if kind == "relu":
        return (y > 0).to(y.dtype)
    return torch.ones_like(y)


# ----------------------------------------------------------------------------- lengths
def batch_sizes(lengths: Tensor | None, batch: int, max_time: int) -> list[int]:
    """Rows active at each step that any row needs: ``batch_sizes[t]`` = #rows with length > t,
    for t < max(lengths) (all ``batch`` rows for ``max_time`` steps without lengths). With
    lengths, the rows must be sorted longest first (``fused.py`` does that)."""
    if lengths is None:
        return [batch] * max_time
    if lengths.numel() == 0:
        return []
    steps = int(lengths.max())
    t = torch.arange(steps, device=lengths.device)
    return (lengths[None, :] > t[:, None]).sum(1).tolist()


def _gather_final(seq: Tensor, lengths: Tensor | None, dtype: torch.dtype | None = None) -> Tensor:
    """State after each row's last valid step from ``seq`` [T+1, B, H] (``seq[0]``: initial),
    a new tensor, in ``dtype`` (default ``seq``'s: the conversion is the copy)."""
    if lengths is None:
        return seq[-1].clone() if dtype in (None, seq.dtype) else seq[-1].to(dtype)
    rows = torch.arange(seq.shape[1], device=seq.device)
    final = seq[lengths, rows]  # [B, H]
    return final if dtype is None else final.to(dtype)


def _recurrent_weight(w_h: Tensor, loops: Any) -> Tensor:
    """``W_h^T`` in ``nn.Linear``'s layout for the forward loop of ``loops`` (``_loops``). The
    compiled loops pack it from any strides (a dense copy first would be a second pass over it:
    16 MB per call at 1024 LSTM units); the Python loops multiply by it every step, so they get
    the dense copy once."""
    return w_h.t().contiguous() if loops is _PY_LOOPS else w_h.t()


def _buffer(
    x: Tensor,
    lengths: Tensor | None,
    *shape: int,
    dtype: torch.dtype | None = None,
    loops: Any = None,
) -> Tensor:
    """A step buffer (``x``'s dtype unless ``dtype``): zeros with lengths (inactive rows are
    never written), else uninitialised. On CPU from the compiled loops' buffer pool (large
    buffers reused across training steps instead of page-faulted in anew: csrc/loops.cpp,
    BufferPool). ``loops``: ``_loops(x)``, when the caller has it (one lookup per layer)."""
    ops = _loops(x) if loops is None else loops
    dtype = dtype or x.dtype
    buffer = x.new_empty(shape, dtype=dtype) if ops is _PY_LOOPS else ops.empty(shape, dtype)
    return buffer if lengths is None else buffer.zero_()


def _pad_time(x: Tensor, total: int) -> Tensor:
    """``x`` [steps, ...] zero-padded on the time axis to ``total`` steps."""
    if x.shape[0] == total:
        return x
    return torch.cat([x, x.new_zeros(total - x.shape[0], *x.shape[1:])])


def _input_grad(d_gates: Tensor, w_x: Tensor, total: int, bf16: bool = False) -> Tensor:
    """``d_gates`` [S, B, G] times ``w_x`` [D, G] -> [total, B, D], zero past S steps;
    ``bf16``: both operands rounded to bfloat16, float32 accumulation (``linear_bf16``)."""
    steps, batch, width = d_gates.shape
    rows = d_gates.reshape(steps * batch, width)
    dx = _ext.loops().linear_bf16(rows, w_x) if bf16 else lin(rows, w_x)
    dx = dx.view(steps, batch, -1)
    return _pad_time(dx, total)


def _param_grads(
    inputs: list[Tensor], d: Tensor, need_kernel: bool, need_bias: bool
) -> tuple[Tensor | None, Tensor | None]:
    """The kernel's gradient ``[inputs_k^T @ d]`` stacked on rows (each input [S_k, B, K_k],
    S_k <= S: paired with ``d``'s last S_k steps, the steps before them zeros, left out: a zero
    initial state's h_{-1}) and the bias's, ``d`` summed over steps and rows: one GEMM over all
    steps per input, or with the packed GEMM one pass over ``d`` for all of them
    (``weight_grad`` in csrc/loops.cpp, which reads each input's rows step by step through
    their strides: a layer's strided x needs no copy). (The LSTM in the compiled loops, float32
    and bf16, computes its own inside the backward loop: ``_LSTMLayer.backward``.)"""
    g = d.reshape(-1, d.shape[-1])  # [S*B, G]
    if not need_kernel:
        return None, (g.sum(0) if need_bias else None)
    ops = _packed_gemm(g)
    if ops is not None:
        d_kernel, d_bias = ops.weight_grad(inputs, g)
        return d_kernel, (d_bias if need_bias else None)
    rows = [x.reshape(-1, x.shape[-1]) for x in inputs]  # [S*B, K_k] (a copy if x is strided)
    fast = _use_onednn(g)
    last = [g[g.shape[0] - a.shape[0] :] for a in rows]  # d's rows paired with each input's
    d_kernel = torch.cat(
        [lin(a.t(), d.t()) if fast else torch.mm(a.t(), d) for a, d in zip(rows, last)]
    )
    return d_kernel, (g.sum(0) if need_bias else None)


def refuse_create_graph(layer: str) -> None:
    """Refuse a backward under ``create_graph=True`` (a gradient penalty, higher-order
    gradients): the compiled loops are opaque to autograd, so their results would count as
    constants and every second derivative through them would come back as zeros, silently."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"rnnflow's fused {layer} layer: its backward is not differentiable, so gradients "
            "taken with create_graph=True through it would have zero second derivatives; for "
            "second-order gradients run the RNN with impl='reference' (dynamic_rnn, "
            "static_rnn and the bidirectional functions take it)"
        )


def _out_grad(d_out: Tensor | None, like: Tensor) -> Tensor:
    """The outputs' gradient, or (outputs unused) one zero block expanded over time: the loops
    read it a step at a time, so nothing of size [T, B, H] is materialised."""
    if d_out is None:
        return like.new_zeros(1, *like.shape[1:]).expand(like.shape)
    if d_out.is_contiguous():
        return d_out
    # Batch-major outputs send their gradient transposed: one copy, into a pooled buffer.
    return _buffer(d_out, None, *d_out.shape).copy_(d_out)


def _state_grad(d: Tensor | None, like: Tensor) -> Tensor:
    """A final state's gradient as the loops take it: dense, in ``like``'s dtype (the bf16
    LSTM's bfloat16 final state sends a bfloat16 one: one conversion), zeros when unused."""
    if d is None:
        return torch.zeros_like(like)
    return d.to(like.dtype).contiguous()  # (.to with a memory_format keeps an expanded d)


def _with_final(recurrent: Tensor | None, final: Tensor, n: int, m: int) -> Tensor:
    """Rows ``[0, m)`` from ``recurrent`` [m, H], rows ``[m, n)`` from ``final`` [B, H]."""
    if m == n:
        assert recurrent is not None
        return recurrent
    if m == 0:
        return final[:n]
    assert recurrent is not None
    return torch.cat([recurrent, final[m:n]])


def _loops(x: Tensor) -> Any:
    """The compiled loops for ``x``'s dtype and device, else the Python ones."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        ops = _ext.loops()
        if ops is not None:
            return ops
    return _PY_LOOPS


# ----------------------------------------------------------------------------- Python loops
# The same interface and function as csrc/loops.cpp (read its header for the conventions).
def _py_rnn_forward(x, w_x, bias, hs, w, bs, act, onednn, zero_h0=False) -> None:
    # zero_h0 (hs[0] is zeros): the compiled loop's shortcut only (equal up to rounding)
    kind = _KINDS[act]
    pre = _project(x, w_x.t(), bias).view(len(bs), hs.shape[1], hs.shape[2])
    for t, n in enumerate(bs):
        if n == 0:
            break
        hs[t + 1, :n] = _act_(kind, lin(hs[t, :n], w, pre[t, :n]))


def _py_rnn_backward(d_out, d_final, hs, w, bs, act, onednn, need_h0) -> tuple[Tensor, Tensor]:
    steps, (_, batch, units) = len(bs), hs.shape
    d_pre = hs.new_zeros(steps, batch, units)
    deriv = _act_grad(_KINDS[act], hs[1 : steps + 1])
    for t in range(steps - 1, -1, -1):
        n, m = bs[t], (bs[t + 1] if t + 1 < steps else 0)
        rec = lin(d_pre[t + 1, :m], w, d_out[t, :m]) if m else None
        dh = _with_final(rec, d_out[t] + d_final if m < n else d_final, n, m)
        torch.mul(dh, deriv[t, :n], out=d_pre[t, :n])
    dh0 = d_final.clone()
    if steps and bs[0] and need_h0:
        dh0[: bs[0]] = lin(d_pre[0, : bs[0]], w)
    return d_pre, dh0


def _bf16_round(t: Tensor) -> Tensor:
    """``t`` (float32) rounded to bfloat16 (nearest even), kept in float32."""
    return t.bfloat16().float()


def _py_lstm_forward(
    x, w_x, bias, gates, cs, hs, tcs, w, bs, act, onednn, bf16=False, out16=None, zero_h0=False
) -> None:  # zero_h0 (hs[0] is zeros): the compiled loop's shortcut only (same up to rounding)
    kind = _KINDS[act]
    if bf16:  # every GEMM's operands rounded to bfloat16, as the compiled bf16 kernel's
        w, w_x, x = _bf16_round(w), _bf16_round(w_x), _bf16_round(x)
    units = hs.shape[2]
    state_steps = cs.shape[0] > 1  # else: c and act(c) in one buffer each, updated in place
    gate_steps = gates.shape[0] > 1  # else: one [B, 4H] block reused at every step (inference)
    if gate_steps and bs:  # the input projection of every step as one GEMM
        gates[: len(bs)].view(-1, gates.shape[-1]).copy_(_project(x[: len(bs)], w_x.t(), bias))
    for t, n in enumerate(bs):
        if n == 0:
            break
        flat = gates[t, :n] if gate_steps else gates[0, :n]  # [n, 4H]: i, j, f, o
        pre = flat if gate_steps else lin(x[t, :n], w_x, bias)
        flat.copy_(lin(_bf16_round(hs[t, :n]) if bf16 else hs[t, :n], w, pre))
        g = flat.view(n, 4, units)
        g[:, 0].sigmoid_()
        g[:, 2:].sigmoid_()
        _act_(kind, g[:, 1])
        c_prev = cs[t, :n] if state_steps else cs[0, :n]
        c = torch.mul(g[:, 2], c_prev, out=cs[t + 1, :n] if state_steps else cs[0, :n])
        c.addcmul_(g[:, 0], g[:, 1])
        tc = _act_(kind, (tcs[t, :n] if state_steps else tcs[0, :n]).copy_(c))
        torch.mul(g[:, 3], tc, out=hs[t + 1, :n])
        if out16 is not None:
            out16[t, :n] = hs[t + 1, :n]  # rounded to nearest even, as the compiled loop


def _py_lstm_backward(
    d_out, d_final_c, d_final_h, gates, cs, tcs, w, bs, act, onednn, need_h0, bf16=False
):
    kind = _KINDS[act]
    rounded = _bf16_round if bf16 else (lambda t: t)  # the recurrent GEMM's operands
    w = rounded(w)
    steps, (_, batch, units) = len(bs), cs.shape
    i, j, f, o = gates.view(steps, batch, 4, units).unbind(2)  # each [S, B, H]
    # Per-step factors, for all steps at once (the loop below then needs 5 ops per step):
    dc_from_dh = o * _act_grad(kind, tcs)  # dc += dh * o * act'(c)
    do_from_dh = tcs * (o - o * o)  # d pre_o = dh * act(c) * o (1 - o)
    from_dc = torch.stack(  # [S, B, 3, H]: d pre_{i, j, f} = dc * these
        [j * (i - i * i), i * _act_grad(kind, j), cs[:steps] * (f - f * f)], dim=2
    )
    d_gates = cs.new_zeros(steps, batch, 4, units)
    flat = d_gates.view(steps, batch, 4 * units)
    carry = cs.new_zeros(batch, units)  # dc_t f_t, into step t - 1
    for t in range(steps - 1, -1, -1):
        n, m = bs[t], (bs[t + 1] if t + 1 < steps else 0)
        rec = lin(rounded(flat[t + 1, :m]), w, d_out[t, :m]) if m else None
        dh = _with_final(rec, d_out[t] + d_final_h if m < n else d_final_h, n, m)
        dc = torch.addcmul(_with_final(carry[:m], d_final_c, n, m), dh, dc_from_dh[t, :n])
        torch.mul(dc.unsqueeze(1), from_dc[t, :n], out=d_gates[t, :n, :3])
        torch.mul(dh, do_from_dh[t, :n], out=d_gates[t, :n, 3])
        torch.mul(dc, f[t, :n], out=carry[:n])
    dc0, dh0 = d_final_c.clone(), d_final_h.clone()
    if steps and bs[0]:
        dc0[: bs[0]] = carry[: bs[0]]
        if need_h0:
            dh0[: bs[0]] = lin(rounded(flat[0, : bs[0]]), w)
    return flat, dc0, dh0


def _py_gru_forward(gates, cands, rhs, hs, w_g, w_c, bs, act, onednn) -> None:
    kind = _KINDS[act]
    units = hs.shape[2]
    for t, n in enumerate(bs):
        if n == 0:
            break
        h = hs[t, :n]
        g = torch.sigmoid(lin(h, w_g, gates[t, :n]), out=gates[t, :n])
        torch.mul(g[:, :units], h, out=rhs[t, :n])
        c = _act_(kind, cands[t, :n].copy_(lin(rhs[t, :n], w_c, cands[t, :n])))
        torch.sub(h, c, out=hs[t + 1, :n]).mul_(g[:, units:]).add_(c)


def _py_gru_backward(d_out, d_final, gates, cands, hs, w_g, w_c, bs, act, onednn, need_h0):
    kind = _KINDS[act]
    steps, (_, batch, units) = len(bs), hs.shape
    r, u = gates[..., :units], gates[..., units:]
    h_prev = hs[:steps]
    # Per-step factors for all steps at once:
    dc_from_dh = (1 - u) * _act_grad(kind, cands)  # d pre_c = dh (1 - u) act'(c)
    du_from_dh = (h_prev - cands) * (u - u * u)  # d pre_u = dh (h - c) u (1 - u)
    dr_from_drh = h_prev * (r - r * r)  # d pre_r = d(rh) h r (1 - r)
    d_gates = hs.new_zeros(steps, batch, 2 * units)
    d_cands = hs.new_zeros(steps, batch, units)
    rec = hs.new_zeros(batch, units)  # gradient from step t + 1 into h_t
    for t in range(steps - 1, -1, -1):
        n, m = bs[t], (bs[t + 1] if t + 1 < steps else 0)
        dh = d_out[t, :n] + _with_final(rec[:m], d_final, n, m)
        torch.mul(dh, dc_from_dh[t, :n], out=d_cands[t, :n])
        torch.mul(dh, du_from_dh[t, :n], out=d_gates[t, :n, units:])
        d_rh = lin(d_cands[t, :n], w_c)
        torch.mul(d_rh, dr_from_drh[t, :n], out=d_gates[t, :n, :units])
        if t == 0 and not need_h0:
            break  # what follows is dh0's
        # dh_{t-1} = d pre_g W_gh^T + dh u + d(rh) r
        rest = torch.mul(dh, u[t, :n]).addcmul_(d_rh, r[t, :n])
        rec[:n] = lin(d_gates[t, :n], w_g, rest)
    dh0 = d_final.clone()
    if steps and bs[0]:
        dh0[: bs[0]] = rec[: bs[0]]
    return d_gates, d_cands, dh0


class _PyLoops:
    rnn_forward = staticmethod(_py_rnn_forward)
    rnn_backward = staticmethod(_py_rnn_backward)
    lstm_forward = staticmethod(_py_lstm_forward)
    lstm_backward = staticmethod(_py_lstm_backward)
    gru_forward = staticmethod(_py_gru_forward)
    gru_backward = staticmethod(_py_gru_backward)


_PY_LOOPS = _PyLoops()
_KINDS = {code: kind for kind, code in _ACT_CODES.items()}


# ----------------------------------------------------------------------------- BasicRNNCell
def rnn_forward(
    x: Tensor,
    h0: Tensor,
    kernel: Tensor,
    bias: Tensor,
    lengths: Tensor | None,
    bs: list[int],
    act,
    zero_h0: bool = False,
) -> tuple[Tensor, Tensor]:
    """h_t = act(x_t W_x + h_{t-1} W_h + b). Returns ``hs`` [T+1, B, H] (``hs[0] = h0``,
    past-length entries zero) and the final state [B, H]. The compiled loop projects each
    step's inputs with its recurrent GEMM (float32: one product, [x_t | h_{t-1}] [W_x; W_h]).
    ``zero_h0``: the caller knows ``h0`` is zeros (a zero state; not checked): step 0 skips
    ``h_{-1} W_h``."""
    total, batch, depth = x.shape
    units = h0.shape[1]
    steps = len(bs)
    loops = _loops(x)
    hs = _buffer(x, lengths, total + 1, batch, units, loops=loops)
    hs[0] = h0
    if steps:
        w_h = _recurrent_weight(kernel[depth:], loops)  # [H, H]
        w_x = kernel[:depth].t()  # [H, D], linear layout
        code, onednn = _ACT_CODES[act], _use_onednn(x)
        loops.rnn_forward(x[:steps], w_x, bias, hs, w_h, bs, code, onednn, zero_h0)
    return hs, _gather_final(hs[: steps + 1], lengths)


class _RNNLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, h0, kernel, bias, lengths, bs, act, zero_h0):
        hs, final = rnn_forward(x, h0, kernel, bias, lengths, bs, act, zero_h0)
        ctx.set_materialize_grads(False)  # unused outputs: no [T, B, H] of zeros
        ctx.save_for_backward(x, kernel, hs)
        ctx.act, ctx.bs, ctx.zero_h0 = act, bs, zero_h0
        return hs[1:], final

    @staticmethod
    @per_example_backward  # vmapped gradients: jacobian(vectorize=True)
    def backward(ctx: Any, d_out: Tensor, d_final: Tensor):
        refuse_create_graph("BasicRNNCell")
        x, kernel, hs = ctx.saved_tensors
        total, batch, depth = x.shape
        bs = ctx.bs
        steps = len(bs)
        d_out, d_final = _out_grad(d_out, hs[1:]), _state_grad(d_final, hs[0])
        if steps == 0:
            dx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
            zk, zb = torch.zeros_like(kernel), torch.zeros_like(kernel[0])
            return dx, d_final.clone(), zk, zb, None, None, None, None
        d_pre, dh0 = _loops(x).rnn_backward(
            d_out,
            d_final,
            hs,
            kernel[depth:],
            bs,
            _ACT_CODES[ctx.act],
            _use_onednn(x),
            ctx.needs_input_grad[1],
        )
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _input_grad(d_pre, kernel[:depth], total)
        h_rows = hs[1:steps] if ctx.zero_h0 else hs[:steps]  # h_{-1} = 0: no rows of its own
        d_kernel, d_bias = _param_grads(
            [x[:steps], h_rows], d_pre, ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        )
        dh0 = dh0 if ctx.needs_input_grad[1] else None  # (the compiled loop's: empty then)
        return dx, dh0, d_kernel, d_bias, None, None, None, None


# ----------------------------------------------------------------------------- BasicLSTMCell
def lstm_forward(
    x: Tensor,
    c0: Tensor,
    h0: Tensor,
    kernel: Tensor,
    bias: Tensor,
    lengths: Tensor | None,
    bs: list[int],
    act: str,
    bf16: bool = False,
    out16: Tensor | None = None,
    zero_h0: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The LSTM with TF's gate columns i, j, f, o and forget_bias folded into ``bias``:

        i, f, o = sigmoid(.);  j = act(.);  c_t = f c_{t-1} + i j;  h_t = o act(c_t)

    Returns ``gates`` [S, B, 4H] (after activation), ``cs`` [S+1, B, H], ``hs`` [T+1, B, H]
    (both zero past each length), ``tcs`` = act(c) [S, B, H], and the final c and h.
    ``bf16`` (float32 buffers, ``bf16_loops``): the recurrent GEMM ``h_{t-1} W_h`` and the input
    projection round both operands to bfloat16 and accumulate in float32 (the AVX512-BF16
    kernel); the gate maths and the state stay float32. ``out16`` (bf16 only) [T, B, H]
    bfloat16, zeros past each length: the outputs ``hs[1:]`` rounded to bfloat16 (nearest even)
    by the loop, while each row is in cache, for autocast's bfloat16 outputs. In bf16 mode
    ``c0`` and ``h0`` may be bfloat16 (autocast's state: the buffers take them in float32) and
    the final c and h come back in bfloat16 (rounded as ``Tensor.bfloat16()``), the dtype
    autocast hands on, each converted once from the buffers. ``zero_h0``: the caller knows
    ``h0`` is zeros (a zero state; not checked): step 0 skips ``h_{-1} W_h``.
    """
    total, batch, depth = x.shape
    units = h0.shape[1]
    steps = len(bs)
    loops = _loops(x)
    cs = _buffer(x, lengths, steps + 1, batch, units, loops=loops)
    hs = _buffer(x, lengths, total + 1, batch, units, loops=loops)
    tcs = _buffer(x, lengths, steps, batch, units, loops=loops)
    gates = _buffer(x, lengths, steps, batch, 4 * units, loops=loops)  # i, j, f, o
    cs[0] = c0
    hs[0] = h0
    if steps:
        _run_lstm_loop(
            x[:steps], kernel, bias, gates, cs, hs, tcs, bs, act, bf16, out16, zero_h0, loops
        )
    state_dtype = torch.bfloat16 if bf16 else None
    final_c = _gather_final(cs, lengths, state_dtype)
    final_h = _gather_final(hs[: steps + 1], lengths, state_dtype)
    return gates, cs, hs, tcs, final_c, final_h


def _run_lstm_loop(
    x, kernel, bias, gates, cs, hs, tcs, bs, act, bf16=False, out16=None, zero_h0=False, loops=None
) -> None:
    """The time loop, input projection included: the compiled loop projects each step's rows
    with its recurrent GEMM (in float32 one product, [x_t | h_{t-1}] [W_x; W_h]; projecting all
    steps first wrote and re-read a 7 MB block at the tutorial size), the Python loop all steps
    at once. ``loops``: ``_loops(x)`` when the caller has it."""
    depth = x.shape[2]
    loops = _loops(x) if loops is None else loops
    w_x = kernel[:depth].t()  # [4H, D], linear layout
    w_h = _recurrent_weight(kernel[depth:], loops)  # [4H, H]
    code = _ACT_CODES[act]
    onednn = _use_onednn(x)
    loops.lstm_forward(
        x, w_x, bias, gates, cs, hs, tcs, w_h, bs, code, onednn, bf16, out16, zero_h0
    )


def lstm_infer(
    x: Tensor,
    c0: Tensor,
    h0: Tensor,
    kernel: Tensor,
    bias: Tensor,
    lengths: Tensor | None,
    bs: list[int],
    act: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """``lstm_forward`` without what only the backward needs: one [1, B, 4H] gates block reused
    at every step, c and act(c) in one [1, B, H] buffer updated in place (rows past their length
    are not touched, so it ends holding each row's final c). Returns outputs, final c and h.
    (A fresh [T, B, 4H] gates buffer, 57 MB at B=1000, cost ~20 ms in page faults here.)"""
    total, batch, depth = x.shape
    units = h0.shape[1]
    steps = len(bs)
    hs = _buffer(x, lengths, total + 1, batch, units)
    hs[0] = h0
    cs = c0.clone().unsqueeze(0)  # [1, B, H]
    tcs = x.new_empty(1, batch, units)
    gates = x.new_empty(1, batch, 4 * units)
    if steps:
        _run_lstm_loop(x[:steps], kernel, bias, gates, cs, hs, tcs, bs, act)
    return hs[1:], cs[0], _gather_final(hs[: steps + 1], lengths)


# The float32 weight gradient inside the backward loop pays per step what one GEMM over all
# steps pays once (a product of K = the step's rows): measured, 1 thread, tutorial LSTM training
# step against the pass afterwards, on Zen 4: 1.57x slower at B = 1, 1.04x at 16, a tie at 32
# (1.01x), 6% faster at 64 and 128 (docs/PERFORMANCE.md, sixth round). bf16 keeps it always.
_LOOP_WG_MIN_ROWS = 48


class _LSTMLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, c0, h0, kernel, bias, lengths, bs, act, bf16, zero_h0):
        out16 = _bf16_outputs(x, lengths, h0.shape[1]) if bf16 else None
        gates, cs, hs, tcs, final_c, final_h = lstm_forward(
            x, c0, h0, kernel, bias, lengths, bs, act, bf16, out16, zero_h0
        )
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, kernel, gates, cs, hs, tcs)
        ctx.act, ctx.bs, ctx.bf16, ctx.zero_h0 = act, bs, bf16, zero_h0
        return (hs[1:] if out16 is None else out16), final_c, final_h

    @staticmethod
    @per_example_backward  # vmapped gradients: jacobian(vectorize=True)
    def backward(ctx: Any, d_out: Tensor, d_final_c: Tensor, d_final_h: Tensor):
        refuse_create_graph("LSTM")
        x, kernel, gates, cs, hs, tcs = ctx.saved_tensors
        total, batch, depth = x.shape
        bs = ctx.bs
        steps = len(bs)
        if d_out is not None and ctx.bf16:  # the bfloat16 outputs' gradient, back to float32
            d_out = d_out.float()
        d_out = _out_grad(d_out, hs[1:])
        # (bf16: the bfloat16 final state's gradients, back to float32 here)
        d_final_c, d_final_h = _state_grad(d_final_c, hs[0]), _state_grad(d_final_h, hs[0])
        if steps == 0:
            dx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
            zk, zb = torch.zeros_like(kernel), torch.zeros_like(kernel[0])
            return dx, d_final_c.clone(), d_final_h.clone(), zk, zb, None, None, None, None, None
        # bf16 (the compiled loops, bf16_loops): the weight gradient inside the backward loop,
        # from each step's d_gates rows while they are in cache (``lstm_backward``'s d_kernel
        # and d_bias: both operands rounded to bfloat16, float32 accumulation, as autocast's
        # backward of a bfloat16 product), not a pass over all of them afterwards
        # (without an input gradient, the loop then keeps only two steps of d_gates); float32
        # in the compiled loops likewise, in float32 (8% off backward + weight gradient here:
        # docs/PERFORMANCE.md, sixth round)
        loop_grad = ctx.bf16 or (
            x.dtype == torch.float32 and _loops(x) is not _PY_LOOPS and batch >= _LOOP_WG_MIN_ROWS
        )
        in_loop = loop_grad and (ctx.needs_input_grad[3] or ctx.needs_input_grad[4])
        grads = ()
        if in_loop:
            # dense: the loop writes rows (empty_like would keep a column-major kernel's strides)
            d_params = (kernel.new_empty(kernel.shape), kernel.new_empty(kernel.shape[1]))
            grads = (x, hs, *d_params, ctx.needs_input_grad[0], ctx.zero_h0)
        flat, dc0, dh0 = _loops(x).lstm_backward(
            d_out,
            d_final_c,
            d_final_h,
            gates,
            cs,
            tcs,
            kernel[depth:],
            bs,
            _ACT_CODES[ctx.act],
            _use_onednn(x),
            ctx.needs_input_grad[2],
            ctx.bf16,
            *grads,
        )
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _input_grad(flat, kernel[:depth], total, ctx.bf16)
        if in_loop:
            d_kernel = grads[2] if ctx.needs_input_grad[3] else None
            d_bias = grads[3] if ctx.needs_input_grad[4] else None
        else:
            h_rows = hs[1:steps] if ctx.zero_h0 else hs[:steps]  # h_{-1} = 0: left out
            d_kernel, d_bias = _param_grads(
                [x[:steps], h_rows], flat, ctx.needs_input_grad[3], ctx.needs_input_grad[4]
            )
        dh0 = dh0 if ctx.needs_input_grad[2] else None  # (the compiled loop's: empty then)
        return dx, dc0, dh0, d_kernel, d_bias, None, None, None, None, None


# ----------------------------------------------------------------------------- GRUCell
def gru_forward(
    x: Tensor,
    h0: Tensor,
    g_kernel: Tensor,
    g_bias: Tensor,
    c_kernel: Tensor,
    c_bias: Tensor,
    lengths: Tensor | None,
    bs: list[int],
    act: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """TF1's GRU: r, u = sigmoid(.);  c = act(x W_cx + (r h) W_ch + b_c);  h' = c + u (h - c).

    Returns ``gates`` [S, B, 2H] (r, u after sigmoid), ``cands`` [S, B, H] (after act), ``rhs``
    = r * h_prev [S, B, H] and ``hs`` [T+1, B, H] (both zero past each length), and the final h.
    """
    total, batch, depth = x.shape
    units = h0.shape[1]
    steps = len(bs)
    hs = _buffer(x, lengths, total + 1, batch, units)
    hs[0] = h0
    rhs = _buffer(x, lengths, steps, batch, units)
    gates = _project(x[:steps], g_kernel[:depth], g_bias).view(steps, batch, 2 * units)
    cands = _project(x[:steps], c_kernel[:depth], c_bias).view(steps, batch, units)
    if steps:
        w_gh = _recurrent_weight(g_kernel[depth:], _loops(x))  # [2H, H]
        w_ch = _recurrent_weight(c_kernel[depth:], _loops(x))  # [H, H]
        _loops(x).gru_forward(
            gates, cands, rhs, hs, w_gh, w_ch, bs, _ACT_CODES[act], _use_onednn(x)
        )
    return gates, cands, rhs, hs, _gather_final(hs[: steps + 1], lengths)


class _GRULayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, bs, act):
        gates, cands, rhs, hs, final = gru_forward(
            x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, bs, act
        )
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, g_kernel, c_kernel, gates, cands, rhs, hs)
        ctx.act, ctx.bs = act, bs
        return hs[1:], final

    @staticmethod
    @per_example_backward  # vmapped gradients: jacobian(vectorize=True)
    def backward(ctx: Any, d_out: Tensor, d_final: Tensor):
        refuse_create_graph("GRUCell")
        x, g_kernel, c_kernel, gates, cands, rhs, hs = ctx.saved_tensors
        total, batch, depth = x.shape
        bs = ctx.bs
        steps = len(bs)
        d_out, d_final = _out_grad(d_out, hs[1:]), _state_grad(d_final, hs[0])
        if steps == 0:
            dx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
            return (
                dx,
                d_final.clone(),
                torch.zeros_like(g_kernel),
                torch.zeros_like(g_kernel[0]),
                torch.zeros_like(c_kernel),
                torch.zeros_like(c_kernel[0]),
                None,
                None,
                None,
            )
        d_gates, d_cands, dh0 = _loops(x).gru_backward(
            d_out,
            d_final,
            gates,
            cands,
            hs,
            g_kernel[depth:],
            c_kernel[depth:],
            bs,
            _ACT_CODES[ctx.act],
            _use_onednn(x),
            ctx.needs_input_grad[1],
        )
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _input_grad(d_gates, g_kernel[:depth], total)
            dx[:steps] += _input_grad(d_cands, c_kernel[:depth], steps)
        need = ctx.needs_input_grad
        d_gk, d_gb = _param_grads([x[:steps], hs[:steps]], d_gates, need[2], need[3])
        d_ck, d_cb = _param_grads([x[:steps], rhs], d_cands, need[4], need[5])
        dh0 = dh0 if need[1] else None  # (the compiled loop's: empty then)
        return dx, dh0, d_gk, d_gb, d_ck, d_cb, None, None, None


# ----------------------------------------------------------------------------- entry points
# ``lengths`` sorted longest first (or None) and ``bs = batch_sizes(lengths, B, T)``. Each runs
# its ``torch.autograd.Function`` when a gradient is needed, and otherwise (``torch.no_grad``,
# ``torch.inference_mode``, or nothing requires grad) the compiled inference op of the layer
# (``_infer_ops``) or the Python loops' forward.
def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _infer_ops(x: Tensor) -> Any | None:
    """The compiled loops when their inference ops serve ``x`` (CPU float32/float64): one call
    per layer, each step's input projection, recurrent GEMM and gate maths in C++, nothing kept
    for a backward, ``x`` read and the outputs written through their strides."""
    ops = _loops(x)
    return None if ops is _PY_LOOPS else ops


def _rows_inner(x: Tensor) -> Tensor:
    """``x`` [T, B, D] with unit stride within a row (a copy only if it lacks it)."""
    return x if x.shape[2] <= 1 or x.stride(2) == 1 else x.contiguous()


def _loop_input(x: Tensor) -> Tensor:
    """A training layer's ``x`` [T, B, D] for the RNN's and LSTM's loops: the compiled loops
    (float32 and float64, every kernel variant) read each step's rows through their strides,
    forward and in the weight gradient (``expect_x`` in csrc/loops.cpp: unit stride within a
    row), so a batch-major input's transposed view, a slice of a wider D or a step slice goes
    in as it is; otherwise, and for the Python loops, whose GEMMs over all steps would each
    copy it again, one dense copy. (Measured: the copy of the tutorial's [28, 128, 28] took
    100-200 us of a ~5.5 ms RNN training step: docs/PERFORMANCE.md, seventh round.)"""
    return _rows_inner(x) if _loops(x) is not _PY_LOOPS else x.contiguous()


def _gemm_input(x: Tensor) -> Tensor:
    """The GRU's ``x`` [T, B, D], read only by GEMMs over all steps (its two input projections
    and weight gradients): as it is where the packed GEMM reads it through its strides
    (``_project``, ``_param_grads``), else one dense copy (each GEMM would copy it again)."""
    return _rows_inner(x) if _packed_gemm(x) is not None else x.contiguous()


def _batch_major(x: Tensor) -> bool:
    """Whether ``x`` [T, B, D] is batch-major memory (a [B, T, D] tensor's transpose): the
    inference ops then write the outputs batch-major too, so no transposed copy follows."""
    return x.stride(1) > x.stride(0)


def rnn_layer(
    x, h0, kernel, bias, lengths, bs, act, *, zero_h0: bool = False
) -> tuple[Tensor, Tensor]:
    """Outputs [T, B, H] and final h of one BasicRNNCell layer; differentiable when needed.
    ``zero_h0``: the caller knows the state is zeros (``rnn_forward``'s)."""
    if _needs_grad(x, h0, kernel, bias):
        return _RNNLayer.apply(_loop_input(x), h0, kernel, bias, lengths, bs, act, zero_h0)
    ops = _infer_ops(x)
    if ops is not None:
        x, depth = _rows_inner(x), x.shape[2]
        w_x, w_h = kernel[:depth].t(), kernel[depth:].t()
        code = _ACT_CODES[act]
        return ops.rnn_infer(x, w_x, bias, w_h, h0.contiguous(), bs, code, _batch_major(x))
    hs, final = rnn_forward(x.contiguous(), h0, kernel, bias, lengths, bs, act, zero_h0)
    return hs[1:], final


def bf16_loops(x: Tensor) -> bool:
    """Whether the compiled LSTM loop's bfloat16 step GEMM (AVX512-BF16, ``csrc/bf16_gemm.h``)
    runs here: a CPU tensor, the compiled loops with the avx512 variant (``RNNFLOW_ISA=avx2`` or
    ``generic`` never reach it) on a CPU with AVX512-BF16. Asked at every call (the op asks
    cpuid once per process: 0.5 us per call)."""
    if x.device.type != "cpu":
        return False
    ops = _ext.loops()
    return ops is not None and bool(ops.bf16_supported())


def bf16_rows_input(x: Tensor) -> Tensor:
    """``x`` [T, B, D] as the bf16 loop takes it: float32 with unit stride within each row, any
    row and step strides (a batch-major input's transposed view: read in place, its rows
    rounded by the kernel); otherwise one copy to dense float32."""
    if x.dtype == torch.float32 and (x.shape[2] <= 1 or x.stride(2) == 1):
        return x
    return x.to(torch.float32, memory_format=torch.contiguous_format)


def _bf16_outputs(x: Tensor, lengths: Tensor | None, units: int) -> Tensor:
    """The bf16 layer's outputs [T, B, H] in bfloat16, written by the loop (``out16``)."""
    return _buffer(x, lengths, x.shape[0], x.shape[1], units, dtype=torch.bfloat16)


def lstm_layer(
    x, c0, h0, kernel, bias, lengths, bs, act, bf16: bool = False, *, zero_h0: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Outputs [T, B, H], final c and final h of one (permuted) BasicLSTMCell layer. ``bf16``:
    float32 ``x`` and parameters, float32 or bfloat16 state, the products in bfloat16
    (``lstm_forward``); the outputs and the final state then come back in bfloat16 (rounded by
    the loop and by the final state's one conversion). ``zero_h0``: the caller knows the state
    is zeros (``lstm_forward``'s)."""
    if _needs_grad(x, c0, h0, kernel, bias):
        x = bf16_rows_input(x) if bf16 else _loop_input(x)
        return _LSTMLayer.apply(x, c0, h0, kernel, bias, lengths, bs, act, bf16, zero_h0)
    if bf16:  # the training loop's buffers: the compiled inference op has no bf16 form
        out16 = _bf16_outputs(x, lengths, h0.shape[1])
        *_, final_c, final_h = lstm_forward(
            bf16_rows_input(x), c0, h0, kernel, bias, lengths, bs, act, bf16, out16, zero_h0
        )
        return out16, final_c, final_h
    ops = _infer_ops(x)
    if ops is not None:
        x, depth = _rows_inner(x), x.shape[2]
        w_x, w_h = kernel[:depth].t(), kernel[depth:].t()
        code = _ACT_CODES[act]
        return ops.lstm_infer(x, w_x, bias, w_h, c0, h0, bs, code, _batch_major(x))
    return lstm_infer(x.contiguous(), c0, h0, kernel, bias, lengths, bs, act)


def gru_layer(x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, bs, act):
    """Outputs [T, B, H] and final h of one GRUCell layer."""
    if _needs_grad(x, h0, g_kernel, g_bias, c_kernel, c_bias):
        return _GRULayer.apply(
            _gemm_input(x), h0, g_kernel, g_bias, c_kernel, c_bias, lengths, bs, act
        )
    ops = _infer_ops(x)
    if ops is not None:
        x, depth = _rows_inner(x), x.shape[2]
        return ops.gru_infer(
            x,
            g_kernel[:depth].t(),
            g_bias,
            c_kernel[:depth].t(),
            c_bias,
            g_kernel[depth:].t(),
            c_kernel[depth:].t(),
            h0.contiguous(),
            bs,
            _ACT_CODES[act],
            _batch_major(x),
        )
    x = x.contiguous()
    *_, hs, final = gru_forward(x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, bs, act)
    return hs[1:], final
