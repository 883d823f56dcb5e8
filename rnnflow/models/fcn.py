"""The fully convolutional branch of LSTM-FCN / MLSTM-FCN, masked to each series' valid steps.

Karim, Majumdar, Darabi and Harford, "Multivariate LSTM-FCNs for time series classification",
Neural Networks 116 (2019) 237-245 (arXiv:1801.04503), and its authors' Keras code
(github.com/titu1994/MLSTM-FCN, ``japanese_vowels_model.py``): beside the recurrent network, three
temporal convolution blocks read the series, their output is averaged over time and concatenated
with the recurrent features before the output layer::

    x [B, T, D] -> Conv1d(D -> 128, k 8)   -> BN -> ReLU -> SE     # "same" padding
                -> Conv1d(128 -> 256, k 5) -> BN -> ReLU -> SE
                -> Conv1d(256 -> 128, k 3) -> BN -> ReLU
                -> mean over time                                   # [B, 128]

SE is the squeeze-and-excitation block (Hu et al., CVPR 2018) with reduction 16: each channel
scaled by ``sigmoid(W2 relu(W1 mean_t(h)))`` (no biases). LSTM-FCN (Karim et al., IEEE Access
2018) is the same branch without SE. Initialisation as the authors' code: convolutions
He-uniform (Keras ``he_uniform``: U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)), zero biases), SE
weights He-normal (N(0, 2 / fan_in); Keras truncates at 2 standard deviations, we do not), batch
norm as Keras' default ``BatchNormalization`` (momentum 0.99 of the running average, i.e.
PyTorch ``momentum=0.01``, epsilon 1e-3).

What differs from the paper, for variable lengths: the authors zero-pad every series to the
longest and let the convolutions, batch norm, SE and the average read the padding. Here a
batch is padded only to its own longest series and every step past a series' length is
ignored: the input is zeroed there before each convolution (so "same" padding sees zeros past
the end exactly as it does before the start, and a series gets the same features in any batch),
batch norm's statistics (and running statistics) are taken over the valid steps only
(:class:`MaskedBatchNorm1d`), SE's squeeze and the final average are means over the valid steps.
The paper's other choices belong to its recurrent branch (an 8-128-cell LSTM reading the
transposed input, "dimension shuffle", dropout 0.8) and are not taken: transposing makes the
time axis a feature axis, whose width would change with each batch's length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FCNBranch", "MaskedBatchNorm1d", "SqueezeExcite", "valid_steps"]


def valid_steps(
    sequence_length: Tensor | None, batch: int, max_time: int, device: torch.device
) -> Tensor:
    """bool [B, T]: ``[b, t]`` is whether step t is inside row b's length (every step when
    ``sequence_length`` is None)."""
    steps = torch.arange(max_time, device=device)  # [T]
    if sequence_length is None:
        return torch.ones(batch, max_time, dtype=torch.bool, device=device)
    return steps[None, :] < sequence_length.to(device=device)[:, None]  # [B, T]


def _mean_over_valid(h: Tensor, valid: Tensor) -> Tensor:
    """[B, C, T] -> [B, C]: the mean over each row's valid steps (zeros for a row of none)."""
    mask = valid[:, None, :]  # [B, 1, T]
    count = mask.sum(dim=2).clamp(min=1).to(h.dtype)  # [B, 1]
    return torch.where(mask, h, 0.0).sum(dim=2) / count  # [B, C]


class MaskedBatchNorm1d(nn.Module):
    """Batch normalisation (``nn.BatchNorm1d``) over the valid steps of a padded batch only.

        y[b, c, t] = (x[b, c, t] - mean_c) / sqrt(var_c + eps) * weight_c + bias_c   (t < len_b)
        y[b, c, t] = 0                                                               (t >= len_b)

    Training mode: ``mean_c``, ``var_c`` (biased) are those of the N valid steps of the batch
    (the rows cut to their lengths and joined), and the running statistics move as
    ``nn.BatchNorm1d``'s would on those N steps: ``running = (1 - momentum) * running +
    momentum * batch`` (the variance unbiased, N / (N - 1)). Eval mode: the running statistics.
    Parameters ``weight``, ``bias`` [C] (1, 0) and buffers ``running_mean``, ``running_var``
    [C] (0, 1) under ``nn.BatchNorm1d``'s names; unlike it no integer ``num_batches_tracked``
    (checkpoints hold floating-point tensors only), so ``momentum`` is a float (no cumulative
    average).

    ``forward(x, valid)``: x float [B, C, T], valid bool [B, T] (:func:`valid_steps`) ->
    [B, C, T]. Raises ``ValueError`` for a bad size or momentum, and when training on a batch
    with fewer than 2 valid steps (one value per channel has no variance; ``nn.BatchNorm1d``
    refuses it too).
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"MaskedBatchNorm1d: num_features must be a positive int, got {num_features!r}"
            )
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, int | float)
            or not (0.0 <= momentum <= 1.0)
        ):
            raise ValueError(
                f"MaskedBatchNorm1d: momentum must be a float in [0, 1], got {momentum!r}"
            )
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.weight = nn.Parameter(torch.ones(num_features))  # [C]
        self.bias = nn.Parameter(torch.zeros(num_features))  # [C]
        self.register_buffer("running_mean", torch.zeros(num_features))  # [C]
        self.register_buffer("running_var", torch.ones(num_features))  # [C]

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        mean, var = self.running_mean, self.running_var
        if not self.training:  # an affine map per channel, then the padding zeroed
            out = F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
            return torch.where(valid[:, None, :], out, 0.0)  # [B, C, T]
        rows = x.transpose(1, 2)  # [B, T, C]
        values = rows[valid]  # [N, C]: the valid steps of every row, in order
        if values.shape[0] < 2:
            raise ValueError(
                f"MaskedBatchNorm1d: training needs at least 2 valid steps in a batch (to take "
                f"a variance), got {values.shape[0]}"
            )
        normed = F.batch_norm(
            values, mean, var, self.weight, self.bias, True, self.momentum, self.eps
        )  # [N, C]; updates running_mean and running_var in place
        out = torch.zeros_like(rows).index_put((valid,), normed)  # [B, T, C], zeros past lengths
        return out.transpose(1, 2)  # [B, C, T]

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation over the valid steps (Hu et al. 2018; MLSTM-FCN's SE block).

        s = mean_{t < len_b} x[b, :, t]                        # [B, C] the squeeze
        e = sigmoid(relu(s @ W1.T) @ W2.T)                     # [B, C] W1 [C/r, C], W2 [C, C/r]
        y = x * e[:, :, None]                                  # [B, C, T]

    No biases (as the authors' code). ``forward(x, valid)``: x [B, C, T], valid bool [B, T];
    steps past a length keep whatever x holds there (zeros, after :class:`MaskedBatchNorm1d`
    and a ReLU). The bottleneck has ``max(1, C // reduction)`` units.
    """

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("reduction", reduction)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"SqueezeExcite: {name} must be a positive int, got {value!r}")
        hidden = max(1, channels // reduction)
        self.squeeze = nn.Linear(channels, hidden, bias=False)  # W1 [C/r, C]
        self.excite = nn.Linear(hidden, channels, bias=False)  # W2 [C, C/r]
        for layer in (self.squeeze, self.excite):  # Keras he_normal, untruncated
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        s = _mean_over_valid(x, valid)  # [B, C]
        e = torch.sigmoid(self.excite(torch.relu(self.squeeze(s))))  # [B, C]
        return x * e[:, :, None]  # [B, C, T]


class FCNBranch(nn.Module):
    """The masked convolutional branch: [B, T, D] series and their lengths -> [B, widths[-1]].

    Block i: ``Conv1d(k_i, "same")`` -> :class:`MaskedBatchNorm1d` -> ReLU (->
    :class:`SqueezeExcite` on all blocks but the last when ``squeeze_excite``), the input of
    every convolution zero past each length; then the mean over the valid steps. "Same" padding
    as TensorFlow's: ``(k - 1) // 2`` zeros before, ``k // 2`` after (an even kernel's extra zero
    goes after the end).

    Args:
        input_size: D, channels per step.
        widths: output channels of each block (the paper: 128, 256, 128).
        kernels: kernel size of each block (the paper: 8, 5, 3).
        squeeze_excite: SE after every block but the last (MLSTM-FCN), or none (LSTM-FCN).

    ``forward(inputs, sequence_length)``: inputs float [B, T, D], sequence_length int [B] or None
    (every row T steps); rows of length 0 (or T = 0) give zeros. Values past a row's length
    never change its features. Raises ``ValueError`` for inputs of another shape.
    """

    def __init__(
        self,
        input_size: int,
        *,
        widths: tuple[int, ...] = (128, 256, 128),
        kernels: tuple[int, ...] = (8, 5, 3),
        squeeze_excite: bool = True,
    ) -> None:
        super().__init__()
        if len(widths) != len(kernels) or not widths:
            raise ValueError(
                f"FCNBranch: widths and kernels must be non-empty and of equal length, got "
                f"{widths!r} and {kernels!r}"
            )
        for name, value in [
            ("input_size", input_size),
            *(("widths", w) for w in widths),
            *(("kernels", k) for k in kernels),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"FCNBranch: {name} must hold positive ints, got {value!r}")
        self.input_size = input_size
        self.num_features = widths[-1]
        self.kernels = tuple(kernels)
        depths = (input_size, *widths[:-1])
        self.convs = nn.ModuleList(
            nn.Conv1d(i, o, k, padding=k // 2) for i, o, k in zip(depths, widths, kernels)
        )
        self.norms = nn.ModuleList(MaskedBatchNorm1d(o, eps=1e-3, momentum=0.01) for o in widths)
        self.excites = nn.ModuleList(
            SqueezeExcite(o) for o in (widths[:-1] if squeeze_excite else ())
        )
        for conv in self.convs:  # Keras he_uniform, zero bias
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, inputs: Tensor, sequence_length: Tensor | None = None) -> Tensor:
        if inputs.dim() != 3 or inputs.shape[2] != self.input_size:
            raise ValueError(
                f"FCNBranch: inputs must have shape [batch, time, {self.input_size}], got "
                f"{tuple(inputs.shape)}"
            )
        batch, max_time = inputs.shape[0], inputs.shape[1]
        if max_time == 0:  # no step at all (a convolution needs one): the mean of none
            return inputs.new_zeros(batch, self.num_features)
        valid = valid_steps(sequence_length, batch, max_time, inputs.device)  # [B, T]
        h = torch.where(valid[:, None, :], inputs.transpose(1, 2), 0.0)  # [B, D, T], zeros past
        # each length (whatever the padding holds, inf and NaN too)
        for i, (conv, norm, k) in enumerate(zip(self.convs, self.norms, self.kernels)):
            # k // 2 zeros each side, then the T outputs of TF's "same" ((k - 1) // 2 zeros before,
            # k // 2 after): one slice, as an ONNX Pad would reverse its pad list (a step of -1)
            shift = k // 2 - (k - 1) // 2  # 1 for an even kernel, 0 for an odd one
            h = conv(h)[:, :, shift : shift + max_time]  # [B, C_i, T]
            h = torch.relu(norm(h, valid))  # zeros past each length
            if i < len(self.excites):
                h = self.excites[i](h, valid)
        return _mean_over_valid(h, valid)  # [B, C_last]
