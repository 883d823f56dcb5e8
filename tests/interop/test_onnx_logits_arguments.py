"""Every argument of the ``onnx_*_logits`` runners is checked before onnxruntime runs: float or
bool lengths used to be truncated (4.7 ran as 4, True as 1), batch_size -1 returned an empty
[0, C], 0 a range() error, a NumPy input an AttributeError, a missing file onnxruntime's raw
NO_SUCHFILE, a NaN series NaN logits. The truths: the same call with valid arguments, and
PyTorch's own model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnflow.models import SequenceClassifier
from rnnflow.models.text_classifier import TextClassifier

pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'rnnflow[export]'")
pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime: 'rnnflow[export]'")

from rnnflow.interop.onnx import onnx_logits, to_onnx  # noqa: E402
from rnnflow.interop.sequence_onnx import onnx_sequence_logits, sequence_to_onnx  # noqa: E402
from rnnflow.interop.text_onnx import onnx_text_logits, text_to_onnx  # noqa: E402

MAX_STEPS, DEPTH, MAX_CHARS = 6, 2, 5


@pytest.fixture(scope="module")
def seq() -> tuple[SequenceClassifier, bytes]:
    torch.manual_seed(0)
    m = SequenceClassifier(input_size=DEPTH, num_classes=3, cell="gru", num_units=4).eval()
    return m, sequence_to_onnx(m, mean=[0.0] * DEPTH, std=[1.0] * DEPTH, max_steps=MAX_STEPS)


@pytest.fixture(scope="module")
def text() -> bytes:
    torch.manual_seed(0)
    m = TextClassifier(vocab_size=9, num_classes=3, embedding_size=3, num_units=4).eval()
    return text_to_onnx(m, max_chars=MAX_CHARS)


@pytest.fixture(scope="module")
def images() -> bytes:
    torch.manual_seed(0)
    return to_onnx(SequenceClassifier(num_units=4).eval())


def series(n: int = 2) -> torch.Tensor:
    return torch.randn(n, MAX_STEPS, DEPTH, generator=torch.Generator().manual_seed(3))


LENGTH_ERRORS = [
    (torch.tensor([4.7, 5.9]), TypeError, r"must be an integer tensor, got dtype torch\.float32"),
    (torch.tensor([True, True]), TypeError, r"must be an integer tensor, got dtype torch\.bool"),
    (np.array([4.0, 5.0]), TypeError, r"must be an integer tensor, got dtype torch\.float64"),
    ([4, True], TypeError, r"must hold integers, got True at index 1"),
    (None, TypeError, r"must be given \(one length per series\), got None"),
    (torch.tensor([[4, 5]]), ValueError, r"must have shape \(2,\), got \(1, 2\)"),
]


@pytest.mark.parametrize(("lengths", "error", "message"), LENGTH_ERRORS)
def test_sequence_lengths_are_checked_as_dynamic_rnn_checks_them(seq, lengths, error, message):
    with pytest.raises(error, match=rf"^onnx_sequence_logits: sequence_length {message}"):
        onnx_sequence_logits(seq[1], series(), lengths)


@pytest.mark.parametrize(("lengths", "error", "message"), LENGTH_ERRORS)
def test_text_lengths_are_checked_as_dynamic_rnn_checks_them(text, lengths, error, message):
    tokens = torch.ones(2, MAX_CHARS, dtype=torch.int64)
    with pytest.raises(error, match=rf"^onnx_text_logits: sequence_length {message}"):
        onnx_text_logits(text, tokens, lengths)
    with pytest.raises(ValueError, match=r"sequence_length must be in \[1, 5\] .* got 6 for "):
        onnx_text_logits(text, tokens, torch.tensor([2, 6]))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "3"])
def test_batch_size_below_one_or_not_an_int_is_refused(seq, text, images, batch_size) -> None:
    bad = rf"batch_size must be an int >= 1, got {batch_size!r}$"
    with pytest.raises(ValueError, match=rf"^onnx_sequence_logits: {bad}"):
        onnx_sequence_logits(seq[1], series(), torch.tensor([3, 4]), batch_size=batch_size)
    tokens = torch.ones(2, MAX_CHARS, dtype=torch.int64)
    with pytest.raises(ValueError, match=rf"^onnx_text_logits: {bad}"):
        onnx_text_logits(text, tokens, torch.tensor([3, 4]), batch_size=batch_size)
    with pytest.raises(ValueError, match=rf"^onnx_logits: {bad}"):
        onnx_logits(images, torch.zeros(2, 28, 28), batch_size=batch_size)


def test_numpy_inputs_and_lists_give_the_tensor_call_s_logits(seq, text, images) -> None:
    m, data = seq
    x, lengths = series(3), torch.tensor([6, 1, 4])
    got = onnx_sequence_logits(data, x.numpy().astype(np.float64), lengths.numpy(), batch_size=2)
    with torch.no_grad():  # the truth: PyTorch's model (mean 0, std 1: no standardisation)
        torch.testing.assert_close(got, m(x, lengths), rtol=1e-5, atol=1e-5)
    assert torch.equal(onnx_sequence_logits(data, x, [6, 1, 4]), got)
    half = x.to(torch.bfloat16)  # no NumPy dtype: read as float32, as before
    want = onnx_sequence_logits(data, half.float(), lengths)
    assert torch.equal(onnx_sequence_logits(data, half.requires_grad_(), lengths), want)
    tokens = torch.randint(0, 9, (3, MAX_CHARS), generator=torch.Generator().manual_seed(1))
    want = onnx_text_logits(text, tokens, torch.tensor([5, 1, 3]))
    assert torch.equal(onnx_text_logits(text, tokens.numpy().astype(np.int32), [5, 1, 3]), want)
    pixels = torch.rand(2, 28, 28, generator=torch.Generator().manual_seed(2))
    assert torch.equal(onnx_logits(images, pixels.numpy()), onnx_logits(images, pixels))


def test_an_empty_batch_gives_zero_rows(seq, text) -> None:
    assert onnx_sequence_logits(seq[1], series(0), torch.zeros(0, dtype=torch.int64)).shape == (
        0,
        3,
    )
    tokens = torch.zeros(0, MAX_CHARS, dtype=torch.int64)
    assert onnx_text_logits(text, tokens, torch.zeros(0, dtype=torch.int64)).shape == (0, 3)


def test_non_finite_values_within_a_length_are_refused_padding_is_free(seq, images) -> None:
    m, data = seq
    x = series()
    x[1, 2, 1] = float("nan")
    lengths = torch.tensor([6, 4])
    with pytest.raises(
        ValueError,
        match=r"^onnx_sequence_logits: series 1 holds a non-finite value \(nan\) at step 2, "
        r"channel 1; fill or drop missing values first$",
    ):
        onnx_sequence_logits(data, x, lengths)
    x[1, 2, 1] = 0.5
    x[1, 4:] = float("inf")  # past series 1's length 4: never read
    with torch.no_grad():
        want = m(torch.nan_to_num(x, posinf=0.0), lengths)
    torch.testing.assert_close(onnx_sequence_logits(data, x, lengths), want, rtol=1e-5, atol=1e-5)
    big = x.double()
    big[0, 5, 0] = 1e39  # float32 cannot hold it: it would run as inf
    with pytest.raises(
        ValueError,
        match=r"^onnx_sequence_logits: series 0 holds a value beyond float32's range \(1e\+39\) "
        r"at step 5, channel 0;",
    ):
        onnx_sequence_logits(data, big.numpy(), lengths)
    with pytest.raises(ValueError, match=r"series 0 holds a value beyond float32's range"):
        onnx_sequence_logits(data, big, lengths)  # a float64 tensor too
    pixels = torch.zeros(2, 28, 28)
    pixels[0, 3, 5] = float("-inf")
    with pytest.raises(
        ValueError, match=r"^onnx_logits: images 0 holds a non-finite value \(-inf\) at row 3, "
    ):
        onnx_logits(images, pixels)


def test_wrong_types_and_shapes_name_the_argument(seq, text, images) -> None:
    data = seq[1]
    with pytest.raises(TypeError, match=r"^onnx_sequence_logits: series must hold real numbers, "):
        onnx_sequence_logits(data, series() > 0, torch.tensor([3, 4]))
    with pytest.raises(
        TypeError, match=r"^onnx_sequence_logits: series must be a torch.Tensor or a NumPy array, "
    ):
        onnx_sequence_logits(data, series().tolist(), torch.tensor([3, 4]))
    with pytest.raises(
        ValueError, match=r"^onnx_logits: images must have shape \[N, 28, 28\] \(the exported "
    ):
        onnx_logits(images, torch.zeros(2, 28))
    with pytest.raises(TypeError, match=r"^onnx_text_logits: tokens must hold integer ids, got "):
        onnx_text_logits(text, torch.ones(2, MAX_CHARS), torch.tensor([3, 4]))
    ids = torch.ones(2, MAX_CHARS, dtype=torch.int64)
    ids[1, 2] = -1  # ONNX's Gather would read the table's last row
    with pytest.raises(
        ValueError,
        match=r"^onnx_text_logits: tokens must be ids in \[0, 9\) \(the model's vocabulary\), "
        r"got -1 at \[1, 2\]$",
    ):
        onnx_text_logits(text, ids, [3, 4])
    ids[1, 2], ids[0, 4] = 1, 9  # past the vocabulary, in the padding: onnxruntime would fail
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 9\) .*got 9 at \[0, 4\]$"):
        onnx_text_logits(text, ids, [3, 4])
    with pytest.raises(ValueError, match=r"tokens must have shape \[N, 5\] \(the exported max_c"):
        onnx_text_logits(text, torch.ones(2, 7, dtype=torch.int64), torch.tensor([3, 4]))


def test_a_missing_or_unreadable_model_is_named(tmp_path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(
        FileNotFoundError, match=r"^onnx_sequence_logits: model '.*nope\.onnx': no "
    ):
        onnx_sequence_logits(missing, series(), torch.tensor([3, 4]))
    with pytest.raises(FileNotFoundError, match=r"^onnx_logits: model '.*nope\.onnx': no such f"):
        onnx_logits(missing, torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=r"^onnx_text_logits: model the 4 bytes given is not a r"):
        onnx_text_logits(b"junk", torch.ones(1, MAX_CHARS, dtype=torch.int64), [1])
    with pytest.raises(TypeError, match=r"^onnx_logits: model must be the ONNX bytes or a path "):
        onnx_logits(3, torch.zeros(1, 28, 28))  # type: ignore[arg-type]
