"""Fused fast path of ``dynamic_rnn`` for the built-in cells, and ``fusable(cell, inputs)``.

Same function as the reference loop (TF1 semantics: outputs zero past each row's length, final
state taken at the last valid step), computed layer by layer with a hand-written BPTT backward
(``_fused_kernels``): the input projection of all steps is one GEMM, the time loop does only
``h @ W_h`` and the pointwise gate maths into preallocated buffers, and the backward computes
every weight gradient and the input gradient as one GEMM over all steps. The parameters used are
the cells' own ``nn.Parameter``s, so gradients land in ``cell.kernel.grad`` and friends.

Fusable: ``BasicRNNCell`` (tanh, sigmoid, relu or linear activation), ``BasicLSTMCell`` and
``GRUCell`` (tanh or sigmoid), ``LSTMCell`` (tanh or sigmoid; without peepholes, ``cell_clip``
or ``num_proj`` it is BasicLSTMCell's function and runs its kernels, with them
``_fused_lstm_cell``'s Python loop), any ``MultiRNNCell`` stack of fusable cells (either state
layout), and ``DropoutWrapper`` around a fusable cell when it is the identity (eval mode, or every
keep_prob 1.0). Cells must be built and share the inputs' dtype and device; exact subclasses
with their own ``forward`` are not fused.

Shapes: before any kernel runs, the input depth each layer was built for and every parameter's
shape are checked against the inputs (``ValueError``), since the kernels index by them; a run
over no steps or no rows runs no kernel at all.

Layer by layer is the same function as step by step: a layer's steps past a row's length change
nothing observable (its outputs are zeroed and its state is frozen in both), so what layer k+1
reads there cannot matter.

Sequence lengths: the rows are sorted by length once (longest first, stable) for the whole
stack, every layer computes step t for the rows still running only (a shrinking batch, as
PackedSequence), and outputs and final state are put back in the caller's row order.

CPU: the time loops run compiled (``csrc/loops.cpp`` via ``_ext``) for float32/float64, in
Python otherwise (the same function). ``BasicLSTMCell`` without lengths: in float32 the compiled
kernel wherever its packed GEMM runs the avx512 or avx2 kernel variant (``_ext.isa()``; faster
than oneDNN's LSTM in the measured cases); in bfloat16 where the compiled loop's AVX512-BF16
kernel cannot run, and in float32 with the generic variant except where the compiled kernel
measured faster (``_compiled_lstm_faster``), oneDNN's fused LSTM (``nn.LSTM``'s kernel) with the
TF weights converted per call.

Mixed precision: under ``torch.autocast`` (CPU bfloat16 or CUDA float16/bfloat16) with float32
inputs, the whole recurrence (GEMMs, gates and states) runs in the autocast dtype, and outputs
and final state come back in that dtype, as the reference loop's would; gradients reach the
float32 parameters. GEMMs accumulate in float32 inside oneDNN/cuBLAS. One exception: on a CPU
with AVX512-BF16 (and the avx512 kernel variant), the plain LSTM (with or without sequence
lengths) runs the compiled loop with its bfloat16 GEMM (``_bf16_kernel``): every product
(recurrent, input projection, weight and input gradients) takes bfloat16-rounded operands with
float32 accumulation, as autocast's GEMMs, while the gate maths and the state stay float32
(closer to float32 than all-bfloat16 loops); outputs and state still come back in bfloat16.
Without lengths it replaced oneDNN's bf16 LSTM after its fourth round, ahead of it by
6.3-9.9% in every run measured (docs/PERFORMANCE.md; ``_BF16_OVER_ONEDNN``).

CUDA: for ``BasicRNNCell`` (tanh/relu) and ``BasicLSTMCell`` or a plain ``LSTMCell`` (tanh)
without sequence lengths, the layer runs through PyTorch's own fused kernel (cuDNN) with the TF
weights converted on the fly (``_peer_layer``: LSTM columns i, j, f, o -> i, f, g, o and
``forget_bias`` folded into the bias; the GRU is a different cell in cuDNN and keeps the generic
path). Unmeasured: no GPU was available when this was written; the conversion is tested on CPU
against the reference loop.
"""

from __future__ import annotations

import functools
import operator
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from rnnflow.cells.base import _ACTIVATIONS, check_state
from rnnflow.cells.basic_lstm import BasicLSTMCell, LSTMStateTuple
from rnnflow.cells.basic_rnn import BasicRNNCell
from rnnflow.cells.dropout import DropoutWrapper
from rnnflow.cells.gru import GRUCell
from rnnflow.cells.lstm import LSTMCell
from rnnflow.cells.multi import MultiRNNCell
from rnnflow.recurrence import _ext
from rnnflow.recurrence import _fused_kernels as kernels
from rnnflow.recurrence._contrib_fused import builtin_view, contrib_reason
from rnnflow.recurrence._fused_lstm_cell import lstm_cell_layer
from rnnflow.recurrence._shapes import check_input_depth
from rnnflow.recurrence.reference import compute_dtype, empty_outputs

_ACTIVATION_KINDS: dict[Any, str] = {
    torch.tanh: "tanh",
    nn.functional.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    nn.functional.sigmoid: "sigmoid",
    torch.relu: "relu",
    nn.functional.relu: "relu",
    _ACTIVATIONS["linear"]: "linear",
}
_MODULE_ACTIVATIONS: dict[type, str] = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu"}
# Bounded activations keep every state finite past a row's length (where the fused path, unlike
# the reference loop, lets the recurrence run on); the BasicRNNCell takes any of them.
_SUPPORTED = {
    BasicRNNCell: ("tanh", "sigmoid", "relu", "linear"),
    BasicLSTMCell: ("tanh", "sigmoid"),
    GRUCell: ("tanh", "sigmoid"),
    LSTMCell: ("tanh", "sigmoid"),  # options: _fused_lstm_cell; none: BasicLSTMCell's kernels
}


def _plain_lstm(cell: Any) -> bool:
    """BasicLSTMCell, or an LSTMCell without peepholes, clipping or projection (the same
    function): these run BasicLSTMCell's kernels (compiled loops, oneDNN, cuDNN)."""
    if type(cell) is LSTMCell:
        return not (cell.use_peepholes or cell.cell_clip is not None or cell.num_proj)
    return type(cell) is BasicLSTMCell


def _activation_kind(fn: Any) -> str | None:
    """The name of a supported activation, or None for one the fused kernels do not know."""
    if type(fn) in _MODULE_ACTIVATIONS and not getattr(fn, "inplace", False):
        return _MODULE_ACTIVATIONS[type(fn)]
    try:
        return _ACTIVATION_KINDS.get(fn)
    except TypeError:  # unhashable callable
        return None


def auto_prefers_reference(cell: Any, inputs: Tensor) -> bool:
    """Whether ``impl="auto"`` should run the reference loop although ``cell`` is fusable.

    True for an ``LSTMCell`` with peepholes, ``cell_clip`` or ``num_proj`` (alone, in a stack or
    wrapped) on the CPU: its fused layer is a Python time loop (``_fused_lstm_cell``) that
    measured no faster than the reference loop (0.46-1.07x of it, docs/PERFORMANCE.md "LSTM
    variants"). ``impl="fused"`` still runs it.
    """
    if inputs.device.type != "cpu":
        return False
    cell = builtin_view(cell)
    if type(cell) is DropoutWrapper:
        return auto_prefers_reference(cell.cell, inputs)
    if type(cell) is MultiRNNCell:
        return any(auto_prefers_reference(sub, inputs) for sub in cell.cells)
    return type(cell) is LSTMCell and not _plain_lstm(cell)


def _why_not(cell: Any, inputs: Tensor) -> str | None:
    """Why ``cell`` cannot be fused for ``inputs``, or None when it can."""
    cell = builtin_view(cell)  # contrib cells with a built-in cell's maths
    name = type(cell).__name__
    if type(cell) is DropoutWrapper:
        keeps = (cell.input_keep_prob, cell.output_keep_prob, cell.state_keep_prob)
        if cell.training and min(keeps) < 1.0:
            return "DropoutWrapper with keep_prob < 1 in training mode"
        return _why_not(cell.cell, inputs)
    if type(cell) is MultiRNNCell:
        for k, sub in enumerate(cell.cells):
            reason = _why_not(sub, inputs)
            if reason is not None:
                return f"MultiRNNCell cell_{k}: {reason}"
        return None
    if type(cell) not in _SUPPORTED:
        return contrib_reason(cell) or f"no fused kernel for {name}"
    if not cell.built:
        return f"{name} is not built"
    kind = _activation_kind(cell.activation)
    if kind not in _SUPPORTED[type(cell)]:
        allowed = ", ".join(_SUPPORTED[type(cell)])
        return f"{name} activation {cell.activation!r} is not one of {allowed}"
    for pname, p in cell.named_parameters():
        if p.dtype != inputs.dtype or p.device != inputs.device:
            return (
                f"{name}.{pname} is {p.dtype} on {p.device}, inputs are {inputs.dtype} "
                f"on {inputs.device}"
            )
    return None


def transform_active() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ``jacfwd``, ``vjp``,
    ...) is running: the fused layers' autograd Functions (no ``setup_context``, no vmap rule)
    and compiled loops (raw data pointers) cannot run on its wrapped tensors, so only the
    reference loop (plain torch ops) can. The condition ``torch.autograd.Function.apply``
    itself tests."""
    return torch._C._are_functorch_transforms_active()


TRANSFORM_REASON = (
    "a torch.func transform (vmap, grad, jacrev, jacfwd, ...) is running, and the fused "
    "layers have no rule for it; run the RNN with impl='reference'"
)


def fusable(cell: Any, inputs: Tensor) -> tuple[bool, str]:
    """Whether ``fused_dynamic_rnn`` can run ``cell`` on ``inputs`` [T, B, D], and if not, why.

    Returns ``(True, "")`` or ``(False, reason)``; the reason names the cell and what is missing
    (or the torch.func transform that is running: :func:`transform_active`).
    """
    if not isinstance(inputs, Tensor) or inputs.dim() != 3 or not inputs.is_floating_point():
        return False, "inputs must be a floating tensor of rank 3"
    if torch.jit.is_tracing():  # the C++ loops are opaque to the tracer
        return False, "torch.jit.trace is recording (it records the reference loop)"
    if transform_active():
        return False, TRANSFORM_REASON
    reason = _why_not(cell, inputs)
    return (True, "") if reason is None else (False, reason)


def _weight_shapes(cell: Any, depth: int) -> dict[str, tuple[int, ...]]:
    """The parameter shapes a built-in cell needs for inputs of depth ``depth``."""
    units = cell.num_units
    rows = depth + cell.output_size  # LSTMCell: the recurrent input is m, num_proj wide
    if type(cell) is GRUCell:
        return {
            "gates.kernel": (rows, 2 * units),
            "gates.bias": (2 * units,),
            "candidate.kernel": (rows, units),
            "candidate.bias": (units,),
        }
    width = units if type(cell) is BasicRNNCell else 4 * units
    shapes = {"kernel": (rows, width), "bias": (width,)}
    if type(cell) is LSTMCell and cell.use_peepholes:
        shapes.update({name: (units,) for name in ("w_i_diag", "w_f_diag", "w_o_diag")})
    if type(cell) is LSTMCell and cell.num_proj is not None:
        shapes["projection.kernel"] = (units, cell.num_proj)
    return shapes


def _check_weights(owner: str, path: str, cell: Any, depth: int) -> int:
    """Refuse parameters whose shapes the kernels would read out of bounds (a cell built for
    another depth, a parameter replaced by hand); returns the output depth of ``cell``."""
    cell = builtin_view(cell)  # contrib cells with a built-in cell's maths
    if type(cell) is DropoutWrapper:
        return _check_weights(owner, f"{path}.cell", cell.cell, depth)
    if type(cell) is MultiRNNCell:
        for k, sub in enumerate(cell.cells):
            depth = _check_weights(owner, f"{path}.cell_{k}", sub, depth)
        return depth
    for name, shape in _weight_shapes(cell, depth).items():
        got = tuple(operator.attrgetter(name)(cell).shape)
        if got != shape:
            raise ValueError(
                f"{owner}: {path}.{name} must have shape {shape} for input depth {depth} and "
                f"{cell.num_units} units, got {got}"
            )
    return cell.output_size


def fused_dynamic_rnn(
    cell: Any,
    inputs: Tensor,
    lengths: Tensor | None,
    initial_state: Any,
    *,
    owner: str = "dynamic_rnn",
    checked: bool = False,
    zero_state: bool = False,
) -> tuple[Tensor, Any]:
    """The fused equivalent of ``reference_dynamic_rnn``: time-major ``inputs`` [T, B, D],
    ``lengths`` int64 [B] or None, ``initial_state`` structured as the cell's. Returns outputs
    [T, B, O] and the final state, structured as the cell's, in ``compute_dtype(inputs)``.

    Every shape a kernel relies on is checked first (``ValueError``): the depth each layer was
    built for (the message of ``dynamic_rnn``'s own check), the parameters', the initial
    state's and the lengths'. ``checked=True`` (``dynamic_rnn``'s dispatch, which has just
    run ``fusable``, the depth and the initial-state checks on these arguments) skips those
    three; the parameters' and the lengths' checks always run. T = 0 or B = 0 runs no kernel:
    zero outputs (differentiable, zero gradients) and the initial state, as the reference
    loop. ``zero_state=True``: ``initial_state`` is the cell's ``zero_state`` (the caller made
    it), so the compiled RNN and plain LSTM loops skip h_{-1}'s products at step 0 (forward,
    and the weight gradient's h rows) when h0's values are zeros too."""
    max_time, batch, depth = inputs.shape
    if not checked:
        reason = _why_not(cell, inputs)
        if reason is not None:
            raise ValueError(f"fused_dynamic_rnn: cannot fuse {type(cell).__name__}: {reason}")
        check_input_depth(owner, "cell", cell, depth)
        check_state(owner, "initial_state", initial_state, cell.state_size, batch)
    _check_weights(owner, "cell", cell, depth)
    if lengths is not None and (lengths.shape != (batch,) or lengths.dtype != torch.int64):
        raise ValueError(
            f"{owner}: lengths must be int64 of shape ({batch},), "
            f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    compute = compute_dtype(inputs)
    if max_time == 0 or batch == 0:  # nothing to run: the initial state itself
        state = _map_state(lambda s: s.to(compute), initial_state)
        return empty_outputs(cell, inputs, compute), state
    if lengths is not None and bool((lengths == max_time).all()):
        lengths = None  # every row is full: masking is the identity
    device_type = inputs.device.type
    if compute == inputs.dtype:
        return _run_sorted(cell, inputs, lengths, initial_state, compute, zero_state)
    with torch.autocast(device_type, enabled=False):
        cast = _map_state(lambda s: s.to(compute), initial_state)
        # the inputs are cast by the first layer (_run_leaf): the bf16 kernel rounds float32
        # inputs itself and would only convert a bfloat16 copy back (two passes over x)
        return _run_sorted(cell, inputs, lengths, cast, compute, zero_state)


def _run_sorted(
    cell: Any,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    compute: torch.dtype,
    zero: bool = False,
):
    """Run with the rows sorted by length, longest first (the shrinking batch of
    ``_fused_kernels``: step t computes only the rows still running), then restore the order.
    ``zero``: ``state`` is a zero state (``fused_dynamic_rnn``'s ``zero_state``)."""
    if lengths is None:
        bs = kernels.batch_sizes(None, x.shape[1], x.shape[0])
        return _run(cell, x, None, bs, state, compute, zero)
    order = torch.argsort(lengths, descending=True, stable=True)
    if bool((order[1:] > order[:-1]).all()):  # already sorted: no permutation
        bs = kernels.batch_sizes(lengths, x.shape[1], x.shape[0])
        return _run(cell, x, lengths, bs, state, compute, zero)
    lengths = lengths[order]
    bs = kernels.batch_sizes(lengths, x.shape[1], x.shape[0])
    state = _map_state(lambda s: s.index_select(0, order), state)
    out, final = _run(cell, x.index_select(1, order), lengths, bs, state, compute, zero)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    final = _map_state(lambda s: s.index_select(0, inverse), final)
    return out.index_select(1, inverse), final


def _map_state(fn: Any, state: Any) -> Any:
    if isinstance(state, LSTMStateTuple):
        return LSTMStateTuple(fn(state.c), fn(state.h))
    if isinstance(state, (tuple, list)):
        return type(state)(_map_state(fn, s) for s in state)
    return fn(state)


def _run(
    cell: Any,
    x: Tensor,
    lengths: Tensor | None,
    bs: list[int],
    state: Any,
    compute: torch.dtype,
    zero: bool = False,
):
    """Run (possibly nested) ``cell`` layer by layer over ``x`` [T, B, D]; rows sorted by
    ``lengths`` (longest first), ``bs`` the active rows per step (``batch_sizes``); ``zero``:
    ``state`` is a zero state."""
    cell = builtin_view(cell)  # contrib cells with a built-in cell's maths
    if type(cell) is DropoutWrapper:  # the identity here (checked by _why_not)
        return _run(cell.cell, x, lengths, bs, state, compute, zero)
    if type(cell) is MultiRNNCell:
        subs = cell.cells
        if cell.state_is_tuple:
            parts = list(state)
        else:
            parts = list(state.split([sub.state_size for sub in subs], dim=1))  # [B, S_k]
        finals = []
        for sub, part in zip(subs, parts):
            x, final = _run(sub, x, lengths, bs, part, compute, zero)
            finals.append(final)
        return x, (tuple(finals) if cell.state_is_tuple else torch.cat(finals, dim=1))
    return _run_leaf(cell, x, lengths, bs, state, compute, zero)


def _param(p: Tensor, compute: torch.dtype) -> Tensor:
    return p if p.dtype == compute else p.to(compute)


def _lstm_params(cell: BasicLSTMCell, compute: torch.dtype) -> tuple[Tensor, Tensor]:
    """The LSTM's kernel (TF's gate order i, j, f, o, as the fused kernels take it) and bias
    with ``forget_bias`` folded in: one addition, no copy of the kernel."""
    kernel, bias = _param(cell.kernel, compute), _param(cell.bias, compute)
    if cell.forget_bias:
        shift = _forget_shift(cell.num_units, float(cell.forget_bias), bias.dtype, bias.device)
        bias = bias + shift
    return kernel, bias


@functools.lru_cache(maxsize=64)
def _forget_shift(units: int, forget_bias: float, dtype: torch.dtype, device: Any) -> Tensor:
    """[4H] zeros with ``forget_bias`` in the forget gate's columns [2H, 3H), made once per
    (units, forget_bias, dtype, device) (three small ops per layer call before). Never written:
    callers add it to the bias (a new tensor). Made outside inference mode, so that a training
    step may use one first made under ``torch.inference_mode``."""
    with torch.inference_mode(False):
        shift = torch.zeros(4 * units, dtype=dtype, device=device)
        shift[2 * units : 3 * units] = forget_bias
    return shift


def _torch_lstm_weights(cell: BasicLSTMCell, depth: int, compute: torch.dtype):
    """PyTorch's ``w_ih`` [4H, D], ``w_hh`` [4H, H], ``b_ih`` [4H] (gates i, f, g, o)."""
    kernel, bias = _param(cell.kernel, compute), _param(cell.bias, compute)
    return _LSTMParams.apply(kernel, bias, float(cell.forget_bias), _TORCH_LSTM_ORDER, depth)


def _blocks(t: Tensor, order: tuple[int, ...], dim: int) -> Tensor:
    """``t`` with its 4 equal blocks along ``dim`` in ``order`` (one cat; faster than
    ``index_select``, ~30 us for the tutorial's kernel)."""
    parts = t.chunk(4, dim)
    return torch.cat([parts[g] for g in order], dim=dim)


class _LSTMParams(torch.autograd.Function):
    """TF's kernel [D+H, 4H] and bias [4H] (gates i, j, f, o) in PyTorch's layout: the gate
    blocks reordered, ``kernel^T`` split into [4H, D] and [4H, H], ``forget_bias`` folded into
    the bias, as one autograd node (a handful of ops either way, which matters at small
    batches)."""

    @staticmethod
    def forward(ctx: Any, kernel, bias, forget_bias, order, depth):
        units = kernel.shape[1] // 4
        ctx.order, ctx.depth = order, depth
        new_bias = _blocks(bias, order, 0)
        f = order.index(2)  # where TF's forget gate went
        new_bias[f * units : (f + 1) * units] += forget_bias
        reordered = _blocks(kernel, order, 1)  # [D+H, 4H]: copies of contiguous row pieces
        # then one transposed copy each (half the time of concatenating transposed blocks)
        w_ih = reordered[:depth].t().contiguous()  # [4H, D]
        w_hh = reordered[depth:].t().contiguous()  # [4H, H]
        return w_ih, w_hh, new_bias

    @staticmethod
    def backward(ctx: Any, *grads):
        inverse = tuple(ctx.order.index(g) for g in range(4))
        d_bias = _blocks(grads[-1], inverse, 0)
        d_kernel = _blocks(torch.cat([grads[0], grads[1]], dim=1), inverse, 0).t()
        return d_kernel, d_bias, None, None, None


def _run_leaf(
    cell: Any,
    x: Tensor,
    lengths: Tensor | None,
    bs: list[int],
    state: Any,
    compute: torch.dtype,
    zero: bool = False,
):
    """One layer over ``x`` [T, B, D] in ``compute`` (autocast's dtype) or, for a first layer
    under autocast, still in the inputs' dtype: cast here, except where the bf16 kernel takes
    float32 ``x`` and rounds it to bfloat16 itself (the same values). ``zero``: ``state`` came
    from the cell's ``zero_state`` (``fused_dynamic_rnn``'s ``zero_state``); the RNN's and the
    plain LSTM's loops skip h_{-1}'s products when, in addition, h0's values are all zeros."""
    act = _activation_kind(cell.activation)
    bf16 = _bf16_kernel(cell, x, act, compute)
    if x.dtype != compute and not (bf16 and (lengths is not None or _BF16_OVER_ONEDNN)):
        x = x.to(compute)  # every path but the bf16 kernel's (which then surely runs)
    if _use_peer_kernel(cell, x, lengths, act, bf16):
        return _peer_layer(cell, x, state, compute)
    if type(cell) is BasicRNNCell:
        kernel, bias = _param(cell.kernel, compute), _param(cell.bias, compute)
        # the LSTM's rule (below); without grad the inference op runs, which has no use for it
        grad = torch.is_grad_enabled()
        zero_h0 = zero and grad and state.device.type == "cpu" and _zeros(state)
        return kernels.rnn_layer(x, state, kernel, bias, lengths, bs, act, zero_h0=zero_h0)
    if type(cell) is GRUCell:
        g, c = cell.gates, cell.candidate
        return kernels.gru_layer(
            x,
            state,
            _param(g.kernel, compute),
            _param(g.bias, compute),
            _param(c.kernel, compute),
            _param(c.bias, compute),
            lengths,
            bs,
            act,
        )
    if not _plain_lstm(cell):
        return _lstm_cell_with_options(cell, x.contiguous(), lengths, bs, state, compute, act)
    # BasicLSTMCell, or LSTMCell without peepholes, clipping or projection
    if cell.state_is_tuple:
        c0, h0 = state
    else:
        c0, h0 = state.split(cell.num_units, dim=1)  # [B, H] each
    if bf16:  # float32 loop, bfloat16 GEMM operands: the loops round the kernel and x to
        # bfloat16 wherever they multiply them (packing, linear_bf16: nearest even, as
        # autocast's cast), so the float32 parameters go in as they are (no rounded copy: four
        # passes over the kernel per call) and their gradients come back in float32; the bias
        # stays float32
        kernel, bias = _lstm_params(cell, torch.float32)
        # float32 x as it is, the loop reading its rows through their stride (a batch-major
        # input's transposed view: no copy), else one copy to dense float32; the bfloat16
        # state goes in as it is (the loop's float32 buffers take it: one conversion)
        x = kernels.bf16_rows_input(x)
    else:
        kernel, bias = _lstm_params(cell, compute)
    # The loop may skip h_{-1} W_h at step 0 only if h0 IS zeros: `zero` says the state came
    # from a zero_state, which a subclass or an instance may override (a learned initial
    # state), so the values are checked too (one reduction over [B, H]; CPU only, where the
    # compiled loop reads the flag: no device sync elsewhere).
    zero_h0 = zero and h0.device.type == "cpu" and _zeros(h0)
    # bf16: outputs and final state come back in bfloat16 (autocast's contract; the loop
    # rounds the outputs, the layer the final state)
    out, c, h = kernels.lstm_layer(
        x, c0.contiguous(), h0.contiguous(), kernel, bias, lengths, bs, act, bf16, zero_h0=zero_h0
    )
    return out, (LSTMStateTuple(c, h) if cell.state_is_tuple else torch.cat([c, h], dim=1))


def _zeros(t: Tensor) -> bool:
    """Whether every value of ``t`` is zero (NaN is not): its min and max in one pass, 4 us for
    [128, 128] float32 here against 11-17 us for ``not t.any()``; compared as Python numbers
    (``low == 0`` on the tensors cost two more ops and two conversions of the 0)."""
    low, high = torch.aminmax(t)
    return low.item() == 0 and high.item() == 0


# Whether the bfloat16 kernel also takes the LSTM without lengths from oneDNN's bf16 LSTM: yes
# since the kernel's fourth round (>= 5% faster in every run, the rule: 6.3-9.9% at the
# tutorial size, docs/PERFORMANCE.md); False gives the layer back to oneDNN (benchmarks).
_BF16_OVER_ONEDNN = True


def _bf16_kernel(cell: Any, x: Tensor, act: str | None, compute: torch.dtype) -> bool:
    """Whether a plain LSTM layer computing in bfloat16 (``x`` bfloat16, or a first layer's
    float32 inputs under bfloat16 autocast) may run the compiled loop with its AVX512-BF16 step
    GEMM (``kernels.bf16_loops``): every product (recurrent, input projection, weight and input
    gradients) from bfloat16-rounded operands with float32 accumulation; gate maths and state
    in float32; outputs and state returned in bfloat16. With sequence lengths it replaces the
    Python loops; without, oneDNN's LSTM runs unless ``_BF16_OVER_ONEDNN``."""
    return (
        compute == torch.bfloat16
        and x.dtype in (torch.bfloat16, torch.float32)
        and act is not None
        and _plain_lstm(cell)
        and kernels.bf16_loops(x)
    )


def _lstm_cell_with_options(
    cell: LSTMCell, x: Tensor, lengths: Tensor | None, bs: list[int], state: Any, compute, act
):
    """An LSTMCell with peepholes, cell_clip and/or a projection: ``_fused_lstm_cell``."""
    if cell.state_is_tuple:
        c0, m0 = state
    else:
        c0, m0 = state.split([cell.num_units, cell.output_size], dim=1)  # [B, H], [B, P]
    kernel, bias = _lstm_params(cell, compute)
    peepholes = None
    if cell.use_peepholes:
        peepholes = tuple(_param(p, compute) for p in (cell.w_i_diag, cell.w_f_diag, cell.w_o_diag))
    projection = _param(cell.projection.kernel, compute) if cell.num_proj is not None else None
    out, c, m = lstm_cell_layer(
        x,
        c0.contiguous(),
        m0.contiguous(),
        kernel,
        bias,
        peepholes,
        projection,
        lengths,
        bs,
        act,
        cell.cell_clip,
        cell.proj_clip,
    )
    return out, (LSTMStateTuple(c, m) if cell.state_is_tuple else torch.cat([c, m], dim=1))


# ----------------------------------------------------------------------------- inference
def _leaf_weights(cell: Any) -> tuple[Tensor, ...]:
    if type(cell) is GRUCell:
        return cell.gates.kernel, cell.gates.bias, cell.candidate.kernel, cell.candidate.bias
    return cell.kernel, cell.bias


def _plain_state(cell: Any, state: Any, x: Tensor, grad: bool) -> tuple[Tensor, ...] | None:
    """``state`` as the [B, H] tensors of a plain cell (LSTM: c, h), or None if it is not
    exactly that (the general path then checks it and says what is wrong)."""
    batch, units = x.shape[1], cell.num_units
    if state is None:
        zeros = x.new_zeros(batch, units)
        return (zeros, zeros) if type(cell) is BasicLSTMCell else (zeros,)
    if type(cell) is not BasicLSTMCell:
        parts = (state,)
    elif cell.state_is_tuple:
        if type(state) not in (LSTMStateTuple, tuple) or len(state) != 2:
            return None
        parts = tuple(state)
    else:
        if not isinstance(state, Tensor) or state.shape != (batch, 2 * units):
            return None
        parts = tuple(state.split(units, dim=1))
    for part in parts:
        if (
            not isinstance(part, Tensor)
            or part.is_nested
            or part.shape != (batch, units)
            or part.dtype != x.dtype
            or part.device != x.device
            or part.layout != torch.strided
            or (grad and part.requires_grad)
        ):
            return None
    return tuple(part.contiguous() for part in parts)


def infer_fast(
    cell: Any, inputs: Tensor, initial_state: Any, time_major: bool
) -> tuple[Tensor, Any] | None:
    """``dynamic_rnn(cell, inputs, initial_state=initial_state, time_major=time_major)`` (no
    lengths, ``impl="auto"``) for a plain ``BasicRNNCell``, ``BasicLSTMCell`` or ``GRUCell``
    when no gradient is needed, or None when this is not that case (the caller then runs the
    general path, which checks and reports everything).

    The per-call Python cost is what a model pays at batch 1 (issue 17: ~70 us of checks and
    dispatch around one compiled call of ~40 us at the tutorial size): this checks what the
    general path's checks would find for these exact cell types in one pass (its parameters'
    shapes for ``inputs``' depth, dtype and device, a supported activation, dense CPU
    float32/float64 inputs, an initial state of the cell's shapes or none (zeros), no autocast
    or tracing, nothing requiring grad with grad mode on) and makes the layer's one compiled
    inference op call (``_fused_kernels``), with the same arguments as the general fused path.
    One step counts too: a language model's sampling step (the general path runs the reference
    loop for one step, where the fused path's set-up would not pay)."""
    kind = type(cell)
    if kind not in (BasicRNNCell, BasicLSTMCell, GRUCell) or "zero_state" in cell.__dict__:
        return None
    if (
        inputs.dim() != 3
        or inputs.layout != torch.strided
        or inputs.device.type != "cpu"
        or inputs.dtype not in (torch.float32, torch.float64)
        or inputs.is_nested
    ):
        return None
    x = inputs if time_major else inputs.transpose(0, 1)  # [T, B, D]
    steps, batch, depth = x.shape
    if steps == 0 or batch == 0 or not cell.built:
        return None
    if torch.is_autocast_enabled("cpu") or torch.jit.is_tracing() or transform_active():
        return None
    weights = _leaf_weights(cell)
    grad = torch.is_grad_enabled()
    for w in weights:
        if w.dtype != x.dtype or w.device != x.device or (grad and w.requires_grad):
            return None
    if grad and inputs.requires_grad:
        return None
    act = _activation_kind(cell.activation)
    if act not in _SUPPORTED[kind] or kernels._infer_ops(x) is None:
        return None
    units = cell.num_units
    widths = {BasicRNNCell: (units,), BasicLSTMCell: (4 * units,), GRUCell: (2 * units, units)}
    for k, width in enumerate(widths[kind]):
        kernel, bias = weights[2 * k], weights[2 * k + 1]
        if kernel.shape != (depth + units, width) or bias.shape != (width,):
            return None
    if kind is BasicLSTMCell and _use_peer_kernel(cell, x, None, act, False):
        return None
    parts = _plain_state(cell, initial_state, x, grad)
    if parts is None:
        return None
    if kind is BasicRNNCell:
        out, state = kernels.rnn_layer(x, *parts, *weights, None, [batch] * steps, act)
    elif kind is GRUCell:
        out, state = kernels.gru_layer(x, *parts, *weights, None, [batch] * steps, act)
    else:
        kernel, bias = _lstm_params(cell, x.dtype)
        out, c, h = kernels.lstm_layer(x, *parts, kernel, bias, None, [batch] * steps, act)
        state = LSTMStateTuple(c, h) if cell.state_is_tuple else torch.cat([c, h], dim=1)
    return (out if time_major else out.transpose(0, 1)), state


# ----------------------------------------------------------------------------- CUDA: cuDNN
def _use_peer_kernel(
    cell: Any, x: Tensor, lengths: Tensor | None, act: str | None, bf16: bool
) -> bool:
    """cuDNN computes the same cell for BasicRNNCell (tanh, relu) and BasicLSTMCell (tanh);
    on CPU, oneDNN's LSTM (what ``nn.LSTM`` runs in float32 and bfloat16) serves BasicLSTMCell
    in bfloat16 where the AVX512-BF16 kernel cannot run (``bf16``: ``_bf16_kernel``'s answer
    for this layer), and in float32 where the compiled kernel is not the faster one."""
    if lengths is not None:
        return False
    if x.device.type == "cpu":
        return (
            _plain_lstm(cell)
            and act == "tanh"
            and x.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available()
            and bool(torch.backends.mkldnn.enabled)
            and _CPU_LSTM_PEER
            and not (_BF16_OVER_ONEDNN and bf16)
            and not _compiled_lstm_faster(cell, x)
        )
    if not x.is_cuda or not torch.backends.cudnn.is_available():
        return False
    if type(cell) is BasicRNNCell:
        return act in ("tanh", "relu")
    return _plain_lstm(cell) and act == "tanh"


_CPU_LSTM_PEER = True  # benchmarks switch it off to time the generic LSTM kernel


def _compiled_lstm_faster(cell: BasicLSTMCell, x: Tensor) -> bool:
    """Where the compiled generic LSTM beat oneDNN's LSTM in float32 (docs/PERFORMANCE.md).

    With the packed step GEMM's avx512 variant: in every measured case, training and inference
    (1.09x vs 0.95-1.05x at the tutorial size, 0.87x vs 0.75x at batch 1). avx2 variant, with
    oneDNN and MKL held to AVX2 too (an AVX2-only CPU's peer): 1.38-1.42x training, 1.57-1.60x
    inference at the tutorial size (loaded machine), where the oneDNN fallback had trained at
    0.88x on an AVX2-only EPYC. Otherwise: float32 training from 512 x 28 or 128 x 112 rows
    (1.1-1.45x vs ~1.0x) and at 256-512 units."""
    if x.dtype != torch.float32 or _ext.disabled() or _ext.loops() is None:
        return False
    if kernels._packed_gemm(x) is not None:
        return True
    if not (torch.is_grad_enabled() and (x.requires_grad or cell.kernel.requires_grad)):
        return False
    steps, batch, _ = x.shape
    return steps * batch >= 14336 or 256 <= cell.num_units <= 512


# PyTorch's gate order i, f, g, o from TF's i, j(=g), f, o.
_TORCH_LSTM_ORDER = (0, 2, 1, 3)


def _peer_layer(cell: Any, x: Tensor, state: Any, compute: torch.dtype) -> tuple[Tensor, Any]:
    """One layer through PyTorch's fused RNN kernel (cuDNN on CUDA), TF weights converted.

    BasicRNNCell: ``weight_ih = kernel[:D]^T``, ``weight_hh = kernel[D:]^T``, ``b_ih = bias``,
    ``b_hh = 0``. BasicLSTMCell: the same after reordering the gate columns to i, f, g, o and
    folding ``forget_bias`` into ``b_ih``. No sequence lengths (the caller checks).
    """
    depth = x.shape[2]
    with warnings.catch_warnings():
        # cuDNN copies weights that are not one flat buffer, and says so.
        warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
        if type(cell) is BasicRNNCell:
            kernel, bias = _param(cell.kernel, compute), _param(cell.bias, compute)
            weights = [kernel[:depth].t(), kernel[depth:].t(), bias, torch.zeros_like(bias)]
            weights = [w.contiguous() for w in weights]
            run = torch._VF.rnn_tanh if _activation_kind(cell.activation) == "tanh" else None
            run = run or torch._VF.rnn_relu
            out, h_n = run(
                x, state.unsqueeze(0), weights, True, 1, 0.0, cell.training, False, False
            )
            return out, h_n[0]
        if cell.state_is_tuple:
            c0, h0 = state
        else:
            c0, h0 = state.split(cell.num_units, dim=1)  # [B, H] each
        w_ih, w_hh, bias = _torch_lstm_weights(cell, depth, compute)
        weights = [w_ih, w_hh, bias, torch.zeros_like(bias)]
        hx = (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous())
        out, h_n, c_n = torch._VF.lstm(x, hx, weights, True, 1, 0.0, cell.training, False, False)
    c, h = c_n[0], h_n[0]
    return out, (LSTMStateTuple(c, h) if cell.state_is_tuple else torch.cat([c, h], dim=1))
