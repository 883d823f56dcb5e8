"""The masked convolutional branch (rnnflow.models.fcn) and SequenceClassifier(conv_branch=...).

Independent truths: ``nn.BatchNorm1d`` applied to the valid steps gathered by hand (a loop over
the rows, slicing each to its length); squeeze-and-excitation computed by hand on a 2-channel
series; the same rows with other padding; each row run alone.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnnflow.models import SequenceClassifier
from rnnflow.models.classifier import append_deltas
from rnnflow.models.fcn import FCNBranch, MaskedBatchNorm1d, SqueezeExcite, valid_steps

LENGTHS = torch.tensor([7, 3, 1, 5])  # B = 4, T = 7


def _gathered(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, C, T] -> [N, C]: the valid steps of each row, row by row (the truth's input)."""
    return torch.cat([x[b, :, : int(n)].T for b, n in enumerate(lengths)])


def _scattered(values: torch.Tensor, lengths: torch.Tensor, time: int) -> torch.Tensor:
    """[N, C] -> [B, C, T] with zeros past each length (the truth's output layout)."""
    rows, start = [], 0
    for n in lengths.tolist():
        row = torch.zeros(values.shape[1], time, dtype=values.dtype)
        row[:, :n] = values[start : start + n].T
        rows.append(row)
        start += n
    return torch.stack(rows)


@pytest.mark.parametrize("momentum", [0.1, 0.01])
def test_masked_batch_norm_is_batch_norm_of_the_valid_steps(momentum) -> None:
    """Three training batches then eval: outputs, input and parameter gradients, running mean and
    variance equal nn.BatchNorm1d's on the valid steps alone; padding comes out zero."""
    torch.manual_seed(0)
    masked = MaskedBatchNorm1d(3, momentum=momentum, eps=1e-3).double()
    truth = nn.BatchNorm1d(3, momentum=momentum, eps=1e-3).double()
    with torch.no_grad():
        masked.weight.uniform_(0.5, 2.0)
        masked.bias.uniform_(-1.0, 1.0)
    truth.load_state_dict(masked.state_dict(), strict=False)  # all but num_batches_tracked
    for step in range(3):
        x = torch.randn(4, 3, 7, dtype=torch.float64) * 2 + 1
        x[1, :, 3:] = 1e6  # padding garbage
        x = x.requires_grad_()
        ref_in = _gathered(x.detach(), LENGTHS).requires_grad_()
        out, ref = masked(x, valid_steps(LENGTHS, 4, 7, x.device)), truth(ref_in)
        torch.testing.assert_close(out, _scattered(ref.detach(), LENGTHS, 7), rtol=1e-12, atol=0)
        weights = torch.randn(4, 3, 7, dtype=torch.float64)
        (out * weights).sum().backward()
        (ref * _gathered(weights, LENGTHS)).sum().backward()
        torch.testing.assert_close(_gathered(x.grad, LENGTHS), ref_in.grad, rtol=1e-10, atol=1e-12)
        assert x.grad[1, :, 3:].abs().max() == 0  # the padding gets no gradient
        for name in ("running_mean", "running_var", "weight.grad", "bias.grad"):
            got, want = masked, truth
            for attr in name.split("."):
                got, want = getattr(got, attr), getattr(want, attr)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)
        assert step < 1 or masked.running_var.ne(1.0).all()  # the statistics did move
    masked.eval(), truth.eval()
    x = torch.randn(4, 3, 7, dtype=torch.float64)
    out = masked(x, valid_steps(LENGTHS, 4, 7, x.device))
    ref = truth(_gathered(x, LENGTHS))
    torch.testing.assert_close(out, _scattered(ref, LENGTHS, 7), rtol=1e-12, atol=0)


def test_masked_batch_norm_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"MaskedBatchNorm1d: momentum must be a float in "
                       r"\[0, 1\], got None"):  # fmt: skip
        MaskedBatchNorm1d(2, momentum=None)  # type: ignore[arg-type]
    norm = MaskedBatchNorm1d(2)
    with pytest.raises(ValueError, match=r"MaskedBatchNorm1d: training needs at least 2 valid "
                       r"steps in a batch \(to take a variance\), got 1"):  # fmt: skip
        norm(torch.randn(2, 2, 4), valid_steps(torch.tensor([1, 0]), 2, 4, torch.device("cpu")))


def test_squeeze_excite_by_hand() -> None:
    """C = 2, reduction 2 (one hidden unit), W1 = [1, -1], W2 = [2, -1]^T; one row of 3 steps of
    which 2 are valid: s = mean of the first two steps = (2, 1); relu(2 - 1) = 1; the channels are
    scaled by sigmoid(2) and sigmoid(-1), the step past the length too (it is the caller's to
    zero)."""
    se = SqueezeExcite(2, reduction=2)
    with torch.no_grad():
        se.squeeze.weight.copy_(torch.tensor([[1.0, -1.0]]))
        se.excite.weight.copy_(torch.tensor([[2.0], [-1.0]]))
    x = torch.tensor([[[1.0, 3.0, 100.0], [2.0, 0.0, -50.0]]])  # [1, 2, 3]
    out = se(x, valid_steps(torch.tensor([2]), 1, 3, x.device))
    up, down = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))
    want = torch.tensor([[[up, 3 * up, 100 * up], [2 * down, 0.0, -50 * down]]])
    torch.testing.assert_close(out, want)


def test_squeeze_excite_and_branch_refuse_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"SqueezeExcite: reduction must be a positive int, got 0"):
        SqueezeExcite(4, reduction=0)
    with pytest.raises(ValueError, match=r"FCNBranch: widths and kernels must be non-empty and "
                       r"of equal length, got \(8, 8\) and \(3,\)"):  # fmt: skip
        FCNBranch(2, widths=(8, 8), kernels=(3,))
    with pytest.raises(ValueError, match=r"FCNBranch: inputs must have shape \[batch, time, 3\], "
                       r"got \(2, 5, 4\)"):  # fmt: skip
        FCNBranch(3)(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"SequenceClassifier: conv_branch must be one of "
                       r"\('none', 'fcn', 'fcn-se'\), got 'inception'"):  # fmt: skip
        SequenceClassifier(input_size=3, conv_branch="inception")  # type: ignore[arg-type]


def test_same_padding_is_tensorflows_for_an_even_kernel() -> None:
    """One block, kernel 4, an all-ones filter, batch norm off (eval with fresh statistics: the
    identity up to eps): step t sums steps t-1..t+2 (one zero before, two after: TF's "same")."""
    branch = FCNBranch(1, widths=(1,), kernels=(4,), squeeze_excite=False).eval()
    with torch.no_grad():
        branch.convs[0].weight.fill_(1.0)
    branch.norms[0].eps = 0.0
    x = torch.tensor([[[1.0], [2.0], [4.0], [8.0], [16.0]]])  # [1, 5, 1]
    sums = torch.tensor([7.0, 15.0, 30.0, 28.0, 24.0])  # [0+1+2+4, 1+2+4+8, ..., 8+16+0+0]
    torch.testing.assert_close(branch(x), sums.mean().view(1, 1))
    cut = torch.tensor([[(7.0 + 7.0 + 6.0) / 3]])  # length 3: 0+1+2+4, 1+2+4+0, 2+4+0+0
    torch.testing.assert_close(branch(x, torch.tensor([3])), cut)


def _model(conv_branch: str, deltas: bool = False) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(
        input_size=3, num_classes=4, cell="gru", num_units=5, bidirectional=True,
        init="glorot", conv_branch=conv_branch, deltas=deltas,  # type: ignore[arg-type]
    )  # fmt: skip


def test_deltas_by_hand() -> None:
    x = torch.tensor([[[1.0, 2.0], [4.0, 0.0], [3.0, 3.0]]])  # [1, 3, 2]
    want = torch.tensor([[[1.0, 2.0, 0.0, 0.0], [4.0, 0.0, 3.0, -2.0], [3.0, 3.0, -1.0, 3.0]]])
    assert append_deltas(x).equal(want)
    assert append_deltas(x[:, :0]).shape == (1, 0, 4)
    model = _model("fcn-se", deltas=True)
    assert model.weights_in.shape[0] == 6 and model.fcn.input_size == 6


def test_delta_standardisation_by_hand() -> None:
    """Delta channels become delta * scale + shift per channel; a model without deltas, or a
    wrong count, is refused."""
    model = _model("none", deltas=True)
    model.set_delta_standardisation([2.0, 0.5, 1.0], [1.0, 0.0, -1.0])
    x = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 6.0, 2.0]]])  # [1, 2, 3]
    want = torch.tensor([[[1.0, 2.0, 3.0, 1.0, 0.0, -1.0], [3.0, 6.0, 2.0, 5.0, 2.0, -2.0]]])
    assert model.model_inputs(x).equal(want)
    assert {"delta_scale", "delta_shift"} <= model.state_dict().keys()
    with pytest.raises(ValueError, match=r"scale and shift must hold 3 values \(input_size\), "
                       r"got 2 and 3"):  # fmt: skip
        model.set_delta_standardisation([1.0, 1.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"set_delta_standardisation: the model has no deltas"):
        _model("none").set_delta_standardisation([1.0] * 3, [0.0] * 3)


@pytest.mark.parametrize(("conv_branch", "deltas"), [("fcn", False), ("fcn-se", False),
                                                     ("fcn-se", True), ("none", True)])  # fmt: skip
@pytest.mark.parametrize("training", [True, False])
def test_padding_never_changes_the_logits(conv_branch: str, deltas: bool, training: bool) -> None:
    """Other values past each length (huge, or in the branch alone inf and NaN) leave the logits
    as they were, with batch statistics (train) and running statistics (eval); with deltas,
    whose step at each length reads the padding, too."""
    model = _model(conv_branch, deltas).train(training)
    x = torch.randn(4, 7, 3)
    other = x.clone()
    for b, n in enumerate(LENGTHS.tolist()):
        other[b, n:] = 1e4 * torch.randn(7 - n, 3)
    want = model(x, LENGTHS)
    assert model(other, LENGTHS).equal(want)
    if conv_branch != "none":
        other[1, 3:] = float("nan")
        other[2, 1:] = float("inf")
        front = model.model_inputs  # the inputs the branch reads (with their deltas)
        assert model.fcn(front(other), LENGTHS).equal(model.fcn(front(x), LENGTHS))


@pytest.mark.parametrize(("conv_branch", "deltas"), [("fcn", False), ("fcn-se", True)])
def test_a_row_alone_equals_the_row_in_a_batch(conv_branch: str, deltas: bool) -> None:
    """Eval mode: each row run alone, cut to its length, gives its logits in the padded batch."""
    model = _model(conv_branch, deltas)
    model.train()
    for _ in range(3):  # running statistics away from their initial 0 / 1
        model(torch.randn(4, 7, 3) * 3 + 1, LENGTHS)
    model.eval()
    x = torch.randn(4, 7, 3)
    batch = model(x, LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        alone = model(x[b : b + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(alone, batch[b : b + 1], rtol=1e-5, atol=1e-6)
        assert model(x[b : b + 1, :n]).allclose(alone, rtol=1e-5, atol=1e-6)  # no lengths: all


@pytest.mark.parametrize(("conv_branch", "deltas"), [("fcn", False), ("fcn-se", True)])
def test_prefix_logits_are_the_logits_of_each_cut(conv_branch: str, deltas: bool) -> None:
    """What `rnnflow serve` reads step by step: prefix_logits[:, t] = forward(inputs[:, :t]),
    t = 0 (no step: the recurrent zero state, the branch's zeros) included."""
    model = _model(conv_branch, deltas).eval()
    x = torch.randn(2, 6, 3)
    prefix = model.prefix_logits(x)  # [2, 7, 4]
    for t in range(7):
        torch.testing.assert_close(prefix[:, t], model(x[:, :t]), rtol=1e-5, atol=1e-6)
    assert model.fcn(model.model_inputs(x[:, :0])).equal(torch.zeros(2, 128))


def test_the_branch_widens_the_output_layer_and_is_saved() -> None:
    model = _model("fcn-se")
    assert model.weights_out.shape == (2 * 5 + 128, 4)
    keys = model.state_dict().keys()
    assert {"fcn.norms.0.running_mean", "fcn.excites.1.excite.weight"} <= keys
    assert not any(k.startswith("fcn.excites") for k in _model("fcn").state_dict())
    assert not any(k.startswith("fcn") for k in _model("none").state_dict())
