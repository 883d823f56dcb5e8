"""Hand-written forward and BPTT backward for one layer of each built-in cell, over all steps.

Each layer is one ``torch.autograd.Function``. The forward computes the input projection of every
step in one GEMM and keeps only the recurrent product ``h @ W_h`` (and the pointwise gate maths)
inside the time loop, writing into preallocated [T, B, ...] buffers. The backward walks the steps
in reverse doing only the unavoidable per-step work (``dgates @ W_h^T`` and pointwise products),
then computes every weight gradient and the input gradient as single large GEMMs over all steps:

    dW_x = X^T dG   ([D, T*B] @ [T*B, G]),   dW_h = H_prev^T dG,   db = sum(dG),   dX = dG W_x^T

Sequence lengths. Masking does not change the steps before a row's length, so the loop runs
unmasked up to ``max(lengths)``; afterwards outputs past each row's length are zeroed, and the
final state is gathered at step ``length - 1`` (the initial state for length 0). The backward is
the exact adjoint of that: output gradients are masked, the final-state gradient enters at step
``length - 1``, and so every step past a row's length gets a zero gradient, as in the reference
loop, where those steps feed nothing. Buffers used by the weight GEMMs are zeroed past each
length, so padding never reaches a weight gradient even as 0 * inf.

Activations (identified by ``fused._activation_kind``) are applied in place; their derivative is
taken from the activation's output: tanh 1 - y^2, sigmoid y (1 - y), relu [y > 0], linear 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


# ----------------------------------------------------------------------------- GEMMs
def _probe_onednn() -> bool:
    """Whether oneDNN's dense linear (``torch.ops.mkldnn._linear_pointwise``) is usable.

    PyTorch's float32 ``mm``/``addmm`` on CPU go to MKL, which runs AVX2 code on AMD CPUs
    (measured ~105 GFLOP/s per core here); oneDNN uses AVX-512 (~140-240 GFLOP/s on the same
    shapes), in exact float32. A private op: probed once, and every use falls back to ``addmm``.
    """
    try:
        op = torch.ops.mkldnn._linear_pointwise
        a, w = torch.ones(2, 3), torch.ones(4, 3)
        plain = op(a, w, None, "none", [], "")
        added = op.binary(a, torch.ones(2, 4), w, None, "add")
        return bool((plain == 3).all()) and bool((added == 4).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


_ONEDNN = _probe_onednn()


def _use_onednn(x: Tensor) -> bool:
    return _ONEDNN and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)


def lin(x: Tensor, weight: Tensor, add: Tensor | None = None) -> Tensor:
    """``x @ weight^T (+ add)``: ``x`` [M, K], ``weight`` [N, K] (``nn.Linear``'s layout),
    ``add`` [M, N]. A new tensor."""
    if _use_onednn(x):
        op = torch.ops.mkldnn._linear_pointwise
        if add is None:
            return op(x, weight, None, "none", [], "")
        return op.binary(x, add.contiguous(), weight, None, "add")
    if add is None:
        return torch.mm(x, weight.t())
    return torch.addmm(add, x, weight.t())


# ----------------------------------------------------------------------------- activations
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
def steps_to_run(lengths: Tensor | None, max_time: int) -> int:
    """Steps that any row needs: ``max(lengths)`` (all ``T`` without lengths)."""
    if lengths is None:
        return max_time
    return int(lengths.max()) if lengths.numel() else 0


def _gather_final(seq: Tensor, lengths: Tensor | None) -> Tensor:
    """State after each row's last valid step from ``seq`` [T+1, B, H] (``seq[0]``: initial)."""
    if lengths is None:
        return seq[-1].clone()
    rows = torch.arange(seq.shape[1], device=seq.device)
    return seq[lengths, rows]  # [B, H]


def _valid(lengths: Tensor, steps: int) -> Tensor:
    """``[steps, B, 1]`` bool: step ``t`` is inside row ``b``'s length."""
    t = torch.arange(steps, device=lengths.device)
    return (t[:, None] < lengths[None, :]).unsqueeze(-1)


def _external_grads(
    d_seq: Tensor, d_final: Tensor, lengths: Tensor | None, steps: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Gradients that enter each step's state from outside the recurrence.

    Returns ``(d_ext [steps, B, H], d_top, d_initial)``: ``d_ext[t]`` is what reaches step ``t``'s
    new state from the outputs (masked) and, with lengths, from the final state; ``d_top``
    (without lengths) is the final-state gradient, which enters at the last step; ``d_initial``
    (with lengths) is the final-state gradient of rows of length 0, which goes to the initial
    state.
    """
    if lengths is None:
        return d_seq[:steps], d_final, None
    d_ext = d_seq[:steps].masked_fill(~_valid(lengths, steps), 0.0)
    live = lengths > 0
    rows = torch.arange(lengths.shape[0], device=lengths.device)
    d_ext.index_put_(((lengths - 1).clamp_min(0)[live], rows[live]), d_final[live], accumulate=True)
    d_initial = d_final.masked_fill(live.unsqueeze(-1), 0.0)
    return d_ext, None, d_initial


def _pad_time(x: Tensor, total: int) -> Tensor:
    """``x`` [steps, ...] zero-padded on the time axis to ``total`` steps."""
    if x.shape[0] == total:
        return x
    return torch.cat([x, x.new_zeros(total - x.shape[0], *x.shape[1:])])


def _input_grad(d_gates: Tensor, w_x: Tensor, total: int) -> Tensor:
    steps, batch, width = d_gates.shape
    dx = lin(d_gates.reshape(steps * batch, width), w_x).view(steps, batch, -1)
    return _pad_time(dx, total)


def _kernel_grad(parts: list[tuple[Tensor, Tensor]], kernel: Tensor) -> Tensor:
    """``[inputs_k^T @ d_k]`` stacked on rows: one GEMM over all steps per part."""
    grads = []
    for inputs, d in parts:
        a = inputs.reshape(-1, inputs.shape[-1])  # [T*B, K]
        g = d.reshape(-1, d.shape[-1])  # [T*B, G]
        grads.append(lin(a.t(), g.t()) if _use_onednn(a) else torch.mm(a.t(), g))
    return torch.cat(grads)


# ----------------------------------------------------------------------------- BasicRNNCell
def rnn_forward(
    x: Tensor, h0: Tensor, kernel: Tensor, bias: Tensor, lengths: Tensor | None, act: str
) -> tuple[Tensor, Tensor]:
    """h_t = act(x_t W_x + h_{t-1} W_h + b). Returns ``hs`` [T+1, B, H] (``hs[0] = h0``,
    past-length entries zeroed) and the final state [B, H]."""
    total, batch, depth = x.shape
    units = h0.shape[1]
    steps = steps_to_run(lengths, total)
    hs = x.new_empty(total + 1, batch, units)
    hs[0] = h0
    if steps:
        pre = torch.addmm(bias, x[:steps].reshape(steps * batch, depth), kernel[:depth])
        pre = pre.view(steps, batch, units)  # [T, B, H]: the input projection of every step
        w_h = kernel[depth:].t().contiguous()  # [H, H] in linear layout
        h = hs[0]
        for t in range(steps):
            h = _act_(act, lin(h, w_h, pre[t]))
            hs[t + 1] = h
    final = _gather_final(hs[: steps + 1], lengths)
    if lengths is not None:
        hs[1:].masked_fill_(~_valid(lengths, total), 0.0)
    return hs, final


class _RNNLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, h0, kernel, bias, lengths, act):
        hs, final = rnn_forward(x, h0, kernel, bias, lengths, act)
        ctx.save_for_backward(x, kernel, hs, lengths)
        ctx.act = act
        return hs[1:], final

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_final: Tensor):
        x, kernel, hs, lengths = ctx.saved_tensors
        total, batch, depth = x.shape
        steps = steps_to_run(lengths, total)
        d_ext, d_top, d_initial = _external_grads(d_out, d_final, lengths, steps)
        w_h = kernel[depth:]  # [H, H]: dh_prev = d_pre @ w_h^T
        if _use_onednn(x):
            d_ext = d_ext.contiguous()
        deriv = _act_grad(ctx.act, hs[1 : steps + 1])  # [T, B, H]
        d_pre = x.new_empty(steps, batch, hs.shape[2])
        for t in range(steps - 1, -1, -1):
            if t == steps - 1:
                dh = d_ext[t] if d_top is None else d_ext[t] + d_top
            else:
                dh = lin(d_pre[t + 1], w_h, d_ext[t])
            torch.mul(dh, deriv[t], out=d_pre[t])
        dx = dh0 = d_kernel = d_bias = None
        if steps == 0:
            dh0 = d_final.clone()
            if ctx.needs_input_grad[0]:
                dx = torch.zeros_like(x)
            return dx, dh0, torch.zeros_like(kernel), torch.zeros_like(kernel[0]), None, None
        if ctx.needs_input_grad[1]:
            dh0 = lin(d_pre[0], w_h)
            if d_initial is not None:
                dh0 += d_initial
        if ctx.needs_input_grad[0]:
            dx = _input_grad(d_pre, kernel[:depth], total)
        if ctx.needs_input_grad[2]:
            d_kernel = _kernel_grad([(x[:steps], d_pre), (hs[:steps], d_pre)], kernel)
        if ctx.needs_input_grad[3]:
            d_bias = d_pre.sum((0, 1))
        return dx, dh0, d_kernel, d_bias, None, None


# ----------------------------------------------------------------------------- BasicLSTMCell
def lstm_forward(
    x: Tensor,
    c0: Tensor,
    h0: Tensor,
    kernel: Tensor,
    bias: Tensor,
    lengths: Tensor | None,
    act: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The LSTM with gate columns already permuted to o, i, f, j and forget_bias in ``bias``:

        o, i, f = sigmoid(.);  j = act(.);  c_t = f c_{t-1} + i j;  h_t = o act(c_t)

    Returns ``gates`` [T, B, 4H] (after activation), ``cs``, ``hs`` [T+1, B, H] (``hs`` zeroed
    past each length), ``tcs`` = act(c) [T, B, H], and the final c and h.
    """
    total, batch, depth = x.shape
    units = h0.shape[1]
    steps = steps_to_run(lengths, total)
    cs = x.new_empty(steps + 1, batch, units)
    hs = x.new_empty(total + 1, batch, units)
    tcs = x.new_empty(steps, batch, units)
    cs[0] = c0
    hs[0] = h0
    gates = torch.addmm(bias, x[:steps].reshape(steps * batch, depth), kernel[:depth])
    gates = gates.view(steps, batch, 4, units)  # [T, B, 4 (o, i, f, j), H]
    w_h = kernel[depth:].t().contiguous()  # [4H, H], linear layout
    for t in range(steps):
        g = gates[t]
        flat = g.view(batch, 4 * units)
        flat.copy_(lin(hs[t], w_h, flat))
        g[:, :3].sigmoid_()
        _act_(act, g[:, 3])
        c = torch.mul(g[:, 2], cs[t], out=cs[t + 1])
        c.addcmul_(g[:, 1], g[:, 3])
        tc = _act_(act, tcs[t].copy_(c))
        torch.mul(g[:, 0], tc, out=hs[t + 1])
    final_c = _gather_final(cs, lengths)
    final_h = _gather_final(hs[: steps + 1], lengths)
    if lengths is not None:
        hs[1:].masked_fill_(~_valid(lengths, total), 0.0)
    return gates, cs, hs, tcs, final_c, final_h


class _LSTMLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, c0, h0, kernel, bias, lengths, act):
        gates, cs, hs, tcs, final_c, final_h = lstm_forward(x, c0, h0, kernel, bias, lengths, act)
        ctx.save_for_backward(x, kernel, gates, cs, hs, tcs, lengths)
        ctx.act = act
        return hs[1:], final_c, final_h

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_final_c: Tensor, d_final_h: Tensor):
        x, kernel, gates, cs, hs, tcs, lengths = ctx.saved_tensors
        total, batch, depth = x.shape
        units = hs.shape[2]
        steps = steps_to_run(lengths, total)
        if steps == 0:
            dx = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
            zk, zb = torch.zeros_like(kernel), torch.zeros_like(kernel[0])
            return dx, d_final_c.clone(), d_final_h.clone(), zk, zb, None, None
        dh_ext, dh_top, dh_initial = _external_grads(d_out, d_final_h, lengths, steps)
        if lengths is None:
            dc_ext, dc_top, dc_initial = None, d_final_c, None
        else:
            zeros = d_out.new_zeros(steps, batch, units)
            dc_ext, dc_top, dc_initial = _external_grads(zeros, d_final_c, lengths, steps)
        o, i, f, j = gates.unbind(2)  # each [T, B, H]
        # Per-step factors, for all steps at once (the loop below then needs 5 ops per step):
        d_tc = _act_grad(ctx.act, tcs)
        dc_from_dh = o * d_tc  # dc += dh * o * act'(c)
        do_from_dh = tcs * (o - o * o)  # d pre_o = dh * act(c) * o (1 - o)
        from_dc = torch.stack(  # [T, B, 3, H]: d pre_{i, f, j} = dc * these
            [j * (i - i * i), cs[:steps] * (f - f * f), i * _act_grad(ctx.act, j)], dim=2
        )
        if lengths is not None:
            # Past a row's length every gradient is zero; make these finite there too.
            invalid = ~_valid(lengths, steps)
            for factor in (dc_from_dh, do_from_dh):
                factor.masked_fill_(invalid, 0.0)
            from_dc.masked_fill_(invalid.unsqueeze(2), 0.0)
        d_gates = x.new_empty(steps, batch, 4, units)
        flat = d_gates.view(steps, batch, 4 * units)
        w_h = kernel[depth:]  # [H, 4H]: dh_prev = d_gates @ w_h^T
        if _use_onednn(x):
            dh_ext = dh_ext.contiguous()
        carry_c = dc_top if dc_ext is None else dc_ext[steps - 1]
        for t in range(steps - 1, -1, -1):
            if t == steps - 1:
                dh = dh_ext[t] if dh_top is None else dh_ext[t] + dh_top
            else:
                dh = lin(flat[t + 1], w_h, dh_ext[t])
            dc = torch.addcmul(carry_c, dh, dc_from_dh[t])
            torch.mul(dc.unsqueeze(1), from_dc[t], out=d_gates[t, :, 1:])
            torch.mul(dh, do_from_dh[t], out=d_gates[t, :, 0])
            if t > 0:
                carry_c = dc * f[t] if dc_ext is None else torch.addcmul(dc_ext[t - 1], dc, f[t])
        dx = dc0 = dh0 = d_kernel = d_bias = None
        if ctx.needs_input_grad[1]:
            dc0 = dc * f[0]
            if dc_initial is not None:
                dc0 += dc_initial
        if ctx.needs_input_grad[2]:
            dh0 = lin(flat[0], w_h)
            if dh_initial is not None:
                dh0 += dh_initial
        if ctx.needs_input_grad[0]:
            dx = _input_grad(flat, kernel[:depth], total)
        if ctx.needs_input_grad[3]:
            d_kernel = _kernel_grad([(x[:steps], flat), (hs[:steps], flat)], kernel)
        if ctx.needs_input_grad[4]:
            d_bias = flat.sum((0, 1))
        return dx, dc0, dh0, d_kernel, d_bias, None, None


# ----------------------------------------------------------------------------- GRUCell
def gru_forward(
    x: Tensor,
    h0: Tensor,
    g_kernel: Tensor,
    g_bias: Tensor,
    c_kernel: Tensor,
    c_bias: Tensor,
    lengths: Tensor | None,
    act: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """TF1's GRU: r, u = sigmoid(.);  c = act(x W_cx + (r h) W_ch + b_c);  h' = c + u (h - c).

    Returns ``gates`` [T, B, 2H] (r, u after sigmoid), ``cands`` [T, B, H] (after act), ``rhs``
    = r * h_prev [T, B, H] and ``hs`` [T+1, B, H] (both zeroed past each length), and the final h.
    """
    total, batch, depth = x.shape
    units = h0.shape[1]
    steps = steps_to_run(lengths, total)
    hs = x.new_empty(total + 1, batch, units)
    hs[0] = h0
    rhs = x.new_empty(steps, batch, units)
    x2 = x[:steps].reshape(steps * batch, depth)
    gates = torch.addmm(g_bias, x2, g_kernel[:depth]).view(steps, batch, 2 * units)
    cands = torch.addmm(c_bias, x2, c_kernel[:depth]).view(steps, batch, units)
    w_gh = g_kernel[depth:].t().contiguous()  # [2H, H], linear layout
    w_ch = c_kernel[depth:].t().contiguous()  # [H, H]
    for t in range(steps):
        g = torch.sigmoid(lin(hs[t], w_gh, gates[t]), out=gates[t])
        torch.mul(g[:, :units], hs[t], out=rhs[t])
        c = _act_(act, cands[t].copy_(lin(rhs[t], w_ch, cands[t])))
        torch.sub(hs[t], c, out=hs[t + 1]).mul_(g[:, units:]).add_(c)
    final = _gather_final(hs[: steps + 1], lengths)
    if lengths is not None:
        hs[1:].masked_fill_(~_valid(lengths, total), 0.0)
        rhs.masked_fill_(~_valid(lengths, steps), 0.0)
    return gates, cands, rhs, hs, final


class _GRULayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, act):
        gates, cands, rhs, hs, final = gru_forward(
            x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, act
        )
        ctx.save_for_backward(x, g_kernel, c_kernel, gates, cands, rhs, hs, lengths)
        ctx.act = act
        return hs[1:], final

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_final: Tensor):
        x, g_kernel, c_kernel, gates, cands, rhs, hs, lengths = ctx.saved_tensors
        total, batch, depth = x.shape
        units = hs.shape[2]
        steps = steps_to_run(lengths, total)
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
            )
        d_ext, d_top, d_initial = _external_grads(d_out, d_final, lengths, steps)
        r, u = gates[..., :units], gates[..., units:]
        h_prev = hs[:steps]
        # Per-step factors for all steps at once:
        dc_from_dh = (1 - u) * _act_grad(ctx.act, cands)  # d pre_c = dh (1 - u) act'(c)
        du_from_dh = (h_prev - cands) * (u - u * u)  # d pre_u = dh (h - c) u (1 - u)
        dr_from_drh = h_prev * (r - r * r)  # d pre_r = d(rh) h r (1 - r)
        if lengths is not None:
            invalid = ~_valid(lengths, steps)
            for factor in (dc_from_dh, du_from_dh, dr_from_drh):
                factor.masked_fill_(invalid, 0.0)
        d_gates = x.new_empty(steps, batch, 2 * units)
        d_cands = x.new_empty(steps, batch, units)
        w_gh, w_ch = g_kernel[depth:], c_kernel[depth:]  # [H, 2H], [H, H]
        if _use_onednn(x):
            d_ext = d_ext.contiguous()
        dh = d_ext[steps - 1] if d_top is None else d_ext[steps - 1] + d_top
        for t in range(steps - 1, -1, -1):
            torch.mul(dh, dc_from_dh[t], out=d_cands[t])
            torch.mul(dh, du_from_dh[t], out=d_gates[t, :, units:])
            d_rh = lin(d_cands[t], w_ch)
            torch.mul(d_rh, dr_from_drh[t], out=d_gates[t, :, :units])
            # dh_{t-1} = dh u + d(rh) r + d pre_g W_gh^T (+ what enters from outside)
            if t > 0:
                dh_prev = lin(d_gates[t], w_gh, d_ext[t - 1])
            else:
                dh_prev = lin(d_gates[t], w_gh)
            dh = dh_prev.addcmul_(dh, u[t]).addcmul_(d_rh, r[t])
        dx = dh0 = d_gk = d_gb = d_ck = d_cb = None
        if ctx.needs_input_grad[1]:
            dh0 = dh if d_initial is None else dh + d_initial
        if ctx.needs_input_grad[0]:
            dx = _input_grad(d_gates, g_kernel[:depth], total)
            dx[:steps] += torch.mm(d_cands.view(steps * batch, units), c_kernel[:depth].t()).view(
                steps, batch, depth
            )
        if ctx.needs_input_grad[2]:
            d_gk = _kernel_grad([(x[:steps], d_gates), (h_prev, d_gates)], g_kernel)
        if ctx.needs_input_grad[3]:
            d_gb = d_gates.sum((0, 1))
        if ctx.needs_input_grad[4]:
            d_ck = _kernel_grad([(x[:steps], d_cands), (rhs, d_cands)], c_kernel)
        if ctx.needs_input_grad[5]:
            d_cb = d_cands.sum((0, 1))
        return dx, dh0, d_gk, d_gb, d_ck, d_cb, None, None


# ----------------------------------------------------------------------------- entry points
def rnn_layer(x, h0, kernel, bias, lengths, act) -> tuple[Tensor, Tensor]:
    """Outputs [T, B, H] and final h of one BasicRNNCell layer; differentiable when needed."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, h0, kernel, bias)):
        return _RNNLayer.apply(x, h0, kernel, bias, lengths, act)
    hs, final = rnn_forward(x, h0, kernel, bias, lengths, act)
    return hs[1:], final


def lstm_layer(x, c0, h0, kernel, bias, lengths, act) -> tuple[Tensor, Tensor, Tensor]:
    """Outputs [T, B, H], final c and final h of one (permuted) BasicLSTMCell layer."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, c0, h0, kernel, bias)):
        return _LSTMLayer.apply(x, c0, h0, kernel, bias, lengths, act)
    _, _, hs, _, final_c, final_h = lstm_forward(x, c0, h0, kernel, bias, lengths, act)
    return hs[1:], final_c, final_h


def gru_layer(x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, act) -> tuple[Tensor, Tensor]:
    """Outputs [T, B, H] and final h of one GRUCell layer."""
    tensors = (x, h0, g_kernel, g_bias, c_kernel, c_bias)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _GRULayer.apply(x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, act)
    *_, hs, final = gru_forward(x, h0, g_kernel, g_bias, c_kernel, c_bias, lengths, act)
    return hs[1:], final
