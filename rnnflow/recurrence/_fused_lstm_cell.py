"""The fused layer of ``LSTMCell`` with peepholes, ``cell_clip`` and/or a projection.

The same function as ``LSTMCell.forward`` step by step (r1.15 ``rnn_cell_impl.LSTMCell.call``),
computed as ``_fused_kernels``' BasicLSTMCell layer is: the input projection of every step in one
GEMM, a Python time loop doing only the recurrent GEMM and the gate maths into preallocated
buffers, and a hand-written BPTT backward whose weight and input gradients are one GEMM over all
steps. Rows are sorted longest first and step t computes the ``bs[t]`` rows still running
(``fused.py`` sorts them).

    g    = x_t W_x + b + m_{t-1} W_m                    # [n, 4H]: i, j, f, o (forget_bias in b)
    i    = sigmoid(g_i + w_i c_{t-1});  f = sigmoid(g_f + w_f c_{t-1});  j = act(g_j)
    c_t  = clip(f c_{t-1} + i j, cell_clip)
    o    = sigmoid(g_o + w_o c_t)
    m_t  = clip((o act(c_t)) W_p, proj_clip)             # W_p [H, P]; without it m_t = o act(c_t)

Clipping passes the gradient where the value lies inside [-clip, clip], bounds included (TF's
``ClipByValue`` gradient and ``torch.clamp``'s). No compiled loop: the Python loop serves every
dtype and device.

Measured on the shared 2-core development machine (float32, one thread, 28 steps, 128 inputs
and units, min of 12-40 interleaved runs, load average ~9): at parity with the reference loop,
within that machine's noise (projection: 154 vs 152 and 158 vs 158 ms per training step in two
runs at batch 128, an earlier run 91 vs 66; 519 vs 505 ms at batch 512; every option: 151 vs 158
and 581 vs 613 ms), where the compiled BasicLSTMCell loop that a plain LSTMCell runs measured
1.7x faster than its reference loop (391 vs 657 ms at batch 512). A compiled loop
(csrc/loops.cpp) is what would make these options fast.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnflow.recurrence._batched_backward import per_example_backward
from rnnflow.recurrence._fused_kernels import (
    _act_,
    _act_grad,
    _buffer,
    _gather_final,
    _input_grad,
    _out_grad,
    _param_grads,
    _project,
    _state_grad,
    _with_final,
    lin,
    refuse_create_graph,
)


def _forward(x, c0, m0, kernel, bias, peep, proj, lengths, bs, act, cell_clip, proj_clip):
    """Run the layer; returns the buffers the backward needs and the final c and m.

    ``gates`` [S, B, 4H] after activation, ``cs`` [S+1, B, H] (clipped c), ``ms`` [T+1, B, P],
    ``tcs`` = act(c) [S, B, H], ``c_in``/``m_in``: where c/m were inside their clip bounds.
    """
    total, batch, depth = x.shape
    units, width = c0.shape[1], m0.shape[1]
    steps = len(bs)
    cs = _buffer(x, lengths, steps + 1, batch, units)
    ms = _buffer(x, lengths, total + 1, batch, width)
    tcs = _buffer(x, lengths, steps, batch, units)
    gates = _buffer(x, lengths, steps, batch, 4 * units)
    c_in = torch.ones(steps, batch, units, dtype=torch.bool, device=x.device)
    m_in = torch.ones(steps, batch, width, dtype=torch.bool, device=x.device)
    cs[0], ms[0] = c0, m0
    if steps:
        w_x, w_m = kernel[:depth].t(), kernel[depth:].t().contiguous()  # [4H, D], [4H, P]
        gates.view(-1, 4 * units).copy_(_project(x[:steps], w_x.t(), bias))
    w_p = proj.t().contiguous() if proj is not None else None  # [P, H]
    for t, n in enumerate(bs):
        if n == 0:
            break
        flat = gates[t, :n]
        flat.copy_(lin(ms[t, :n], w_m, flat))
        g = flat.view(n, 4, units)
        c_prev = cs[t, :n]
        if peep is not None:
            g[:, 0].addcmul_(peep[0], c_prev)
            g[:, 2].addcmul_(peep[1], c_prev)
        g[:, 0].sigmoid_()
        g[:, 2].sigmoid_()
        _act_(act, g[:, 1])
        c = torch.mul(g[:, 2], c_prev, out=cs[t + 1, :n]).addcmul_(g[:, 0], g[:, 1])
        if cell_clip is not None:
            torch.le(c.abs(), cell_clip, out=c_in[t, :n])
            c.clamp_(-cell_clip, cell_clip)
        if peep is not None:
            g[:, 3].addcmul_(peep[2], c)
        g[:, 3].sigmoid_()
        tc = _act_(act, tcs[t, :n].copy_(c))
        if w_p is None:
            torch.mul(g[:, 3], tc, out=ms[t + 1, :n])
            continue
        m = ms[t + 1, :n]
        m.copy_(lin(g[:, 3] * tc, w_p))
        if proj_clip is not None:
            torch.le(m.abs(), proj_clip, out=m_in[t, :n])
            m.clamp_(-proj_clip, proj_clip)
    final_c = _gather_final(cs, lengths)
    final_m = _gather_final(ms[: steps + 1], lengths)
    return gates, cs, ms, tcs, c_in, m_in, final_c, final_m


def _backward(d_out, d_final_c, d_final_m, saved, bs, act, need_m0):
    """BPTT through the loop: (d gate pre-activations [S, B, 4H], d of the projection's output
    inside the clip [S, B, P] or None, dc0, dm0)."""
    gates, cs, tcs, c_in, m_in, kernel, depth, peep, proj = saved
    steps, (_, batch, units) = len(bs), cs.shape
    i, j, f, o = gates.view(steps, batch, 4, units).unbind(2)  # each [S, B, H]
    w_m = kernel[depth:]  # [P, 4H]: d m_{t-1} = d gates W_m^T
    dc_from_dh = o * _act_grad(act, tcs)  # d c += d(o act(c)) * o act'(c)
    do_from_dh = tcs * (o - o * o)  # d pre_o = d(o act(c)) * act(c) o (1 - o)
    from_dc = torch.stack(  # [S, B, 3, H]: d pre_{i, j, f} = d c_raw * these
        [j * (i - i * i), i * _act_grad(act, j), cs[:steps] * (f - f * f)], dim=2
    )
    d_gates = cs.new_zeros(steps, batch, 4, units)
    flat = d_gates.view(steps, batch, 4 * units)
    d_mp = cs.new_zeros(steps, batch, proj.shape[1]) if proj is not None else None
    carry = cs.new_zeros(batch, units)  # d c_{t-1}, into step t - 1
    for t in range(steps - 1, -1, -1):
        n, m = bs[t], (bs[t + 1] if t + 1 < steps else 0)
        rec = lin(flat[t + 1, :m], w_m, d_out[t, :m]) if m else None
        dm = _with_final(rec, d_out[t] + d_final_m if m < n else d_final_m, n, m)  # [n, P]
        if proj is not None:  # m = clip(mm W_p): d mm = (dm inside the clip) W_p^T
            dh = torch.mm(torch.mul(dm, m_in[t, :n], out=d_mp[t, :n]), proj.t())  # [n, H]
        else:
            dh = dm
        d_o = torch.mul(dh, do_from_dh[t, :n], out=d_gates[t, :n, 3])
        dc = torch.addcmul(_with_final(carry[:m], d_final_c, n, m), dh, dc_from_dh[t, :n])
        if peep is not None:
            dc.addcmul_(d_o, peep[2])
        dc.mul_(c_in[t, :n])  # through the clip: zero where c was clipped
        torch.mul(dc.unsqueeze(1), from_dc[t, :n], out=d_gates[t, :n, :3])
        torch.mul(dc, f[t, :n], out=carry[:n])
        if peep is not None:
            carry[:n].addcmul_(d_gates[t, :n, 0], peep[0]).addcmul_(d_gates[t, :n, 2], peep[1])
    dc0, dm0 = d_final_c.clone(), d_final_m.clone()
    if steps and bs[0]:
        dc0[: bs[0]] = carry[: bs[0]]
        if need_m0:
            dm0[: bs[0]] = lin(flat[0, : bs[0]], w_m)
    return flat, d_mp, dc0, dm0


class _LSTMCellLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x, c0, m0, kernel, bias, w_i, w_f, w_o, proj, lengths, bs, options):
        act, cell_clip, proj_clip = options
        peep = (w_i, w_f, w_o) if w_i is not None else None
        gates, cs, ms, tcs, c_in, m_in, final_c, final_m = _forward(
            x, c0, m0, kernel, bias, peep, proj, lengths, bs, act, cell_clip, proj_clip
        )
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, kernel, gates, cs, ms, tcs, c_in, m_in, w_i, w_f, w_o, proj)
        ctx.bs, ctx.act = bs, act
        return ms[1:], final_c, final_m

    @staticmethod
    @per_example_backward  # vmapped gradients: jacobian(vectorize=True)
    def backward(ctx: Any, d_out: Tensor, d_final_c: Tensor, d_final_m: Tensor):
        refuse_create_graph("LSTMCell")
        x, kernel, gates, cs, ms, tcs, c_in, m_in, w_i, w_f, w_o, proj = ctx.saved_tensors
        total, _, depth = x.shape
        bs, steps = ctx.bs, len(ctx.bs)
        peep = (w_i, w_f, w_o) if w_i is not None else None
        d_out = _out_grad(d_out, ms[1:])
        d_final_c, d_final_m = _state_grad(d_final_c, cs[0]), _state_grad(d_final_m, ms[0])
        needs = ctx.needs_input_grad
        if steps == 0:
            zeros = [torch.zeros_like(p) if p is not None else None for p in (w_i, w_f, w_o)]
            dx = torch.zeros_like(x) if needs[0] else None
            d_proj = torch.zeros_like(proj) if proj is not None else None
            return (
                dx,
                d_final_c.clone(),
                d_final_m.clone(),
                torch.zeros_like(kernel),
                torch.zeros_like(kernel[0]),
                *zeros,
                d_proj,
                None,
                None,
                None,
            )
        saved = (gates, cs, tcs, c_in, m_in, kernel, depth, peep, proj)
        flat, d_mp, dc0, dm0 = _backward(d_out, d_final_c, d_final_m, saved, bs, ctx.act, needs[2])
        dx = _input_grad(flat, kernel[:depth], total) if needs[0] else None
        d_kernel, d_bias = _param_grads([x[:steps], ms[:steps]], flat, needs[3], needs[4])
        d_peep: list[Tensor | None] = [None, None, None]
        if peep is not None:
            units = cs.shape[2]
            d = flat.view(steps, -1, 4, units)
            d_peep = [
                (d[:, :, 0] * cs[:steps]).sum((0, 1)),  # w_i: d pre_i * c_{t-1}
                (d[:, :, 2] * cs[:steps]).sum((0, 1)),  # w_f: d pre_f * c_{t-1}
                (d[:, :, 3] * cs[1 : steps + 1]).sum((0, 1)),  # w_o: d pre_o * c_t
            ]
        d_proj = None
        if proj is not None and needs[8]:
            units, width = proj.shape
            mm = gates.view(steps, -1, 4, units)[:, :, 3] * tcs  # o act(c) [S, B, H]
            d_proj = lin(mm.reshape(-1, units).t(), d_mp.reshape(-1, width).t())  # [H, P]
        return dx, dc0, dm0, d_kernel, d_bias, *d_peep, d_proj, None, None, None


def lstm_cell_layer(
    x: Tensor,
    c0: Tensor,
    m0: Tensor,
    kernel: Tensor,
    bias: Tensor,
    peepholes: tuple[Tensor, Tensor, Tensor] | None,
    projection: Tensor | None,
    lengths: Tensor | None,
    bs: list[int],
    act: str,
    cell_clip: float | None,
    proj_clip: float | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTMCell layer over time-major ``x`` [T, B, D] (rows sorted longest first, ``bs``
    from ``batch_sizes``): outputs [T, B, P], final c [B, H] and final m [B, P]. ``bias`` has
    ``forget_bias`` folded in; ``peepholes`` is (w_i, w_f, w_o) or None."""
    w_i, w_f, w_o = peepholes if peepholes is not None else (None, None, None)
    return _LSTMCellLayer.apply(
        x,
        c0,
        m0,
        kernel,
        bias,
        w_i,
        w_f,
        w_o,
        projection,
        lengths,
        bs,
        (act, cell_clip, proj_clip),
    )
