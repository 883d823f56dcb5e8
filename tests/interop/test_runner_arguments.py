"""Every argument of the exported-model runners (``onnx_logits``, ``onnx_sequence_logits``,
``onnx_text_logits``, ``torchscript_logits``) and of the loaders is checked before anything
runs, with one wording for the whole family. Before: float or bool lengths were truncated (4.7
ran as 4, True as 1), batch_size -1 returned an empty [0, C], 0 a range() error, a NumPy input
an AttributeError, a missing file onnxruntime's raw NO_SUCHFILE, a NaN series NaN logits; and
``torchscript_logits`` had none of the checks: 40-row images ran on their first 28 rows without
a word, float64 images failed inside the TorchScript interpreter, an empty batch came back
[0, 0]. The truths: PyTorch's own model, and the same call with valid arguments."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from rnnflow.interop.torchscript import load_torchscript, to_torchscript, torchscript_logits
from rnnflow.models import SequenceClassifier
from rnnflow.models.text_classifier import TextClassifier

pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'rnnflow[export]'")
pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime: 'rnnflow[export]'")

from rnnflow.interop.onnx import onnx_logits, onnx_metadata, to_onnx  # noqa: E402
from rnnflow.interop.sequence_onnx import onnx_sequence_logits, sequence_to_onnx  # noqa: E402
from rnnflow.interop.text_onnx import onnx_text_logits, text_to_onnx  # noqa: E402

MAX_STEPS, DEPTH, MAX_CHARS, VOCAB, SIDE = 6, 2, 5, 9, 28


@dataclass(frozen=True)
class Runner:
    """One runner with its exported model, the PyTorch model it came from and a valid call."""

    name: str
    run: Callable[..., torch.Tensor]
    data: bytes
    model: torch.nn.Module
    inputs: Callable[[int], torch.Tensor]  # n -> a valid batch of n
    lengths: Callable[[int], torch.Tensor] | None  # n -> valid lengths, None: no lengths
    kind: str  # "ONNX" or "TorchScript"

    def __call__(self, model, x, lengths=None, **kwargs) -> torch.Tensor:
        if self.lengths is None:
            return self.run(model, x, **kwargs)
        n = len(x) if hasattr(x, "__len__") else 2
        return self.run(model, x, self.lengths(n) if lengths is None else lengths, **kwargs)


def _images(n: int) -> torch.Tensor:
    return torch.rand(n, SIDE, SIDE, generator=torch.Generator().manual_seed(n))  # [N, 28, 28]


def _series(n: int) -> torch.Tensor:
    return torch.randn(n, MAX_STEPS, DEPTH, generator=torch.Generator().manual_seed(3))


def _tokens(n: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, MAX_CHARS), generator=torch.Generator().manual_seed(1))


def _lengths(top: int) -> Callable[[int], torch.Tensor]:
    return lambda n: torch.arange(n) % top + 1  # every length in [1, top]


@pytest.fixture(scope="module")
def runners() -> dict[str, Runner]:
    torch.manual_seed(0)
    image = SequenceClassifier(num_units=4, bidirectional=True).eval()  # both directions read
    seq = SequenceClassifier(input_size=DEPTH, num_classes=3, cell="gru", num_units=4).eval()
    text = TextClassifier(vocab_size=VOCAB, num_classes=3, embedding_size=3, num_units=4).eval()
    mean, std = [0.0] * DEPTH, [1.0] * DEPTH  # no standardisation: PyTorch's model is the truth
    found = [
        Runner("onnx_logits", onnx_logits, to_onnx(image), image, _images, None, "ONNX"),
        Runner(
            "torchscript_logits",
            torchscript_logits,
            to_torchscript(image),
            image,
            _images,
            None,
            "TorchScript",
        ),
        Runner(
            "onnx_sequence_logits",
            onnx_sequence_logits,
            sequence_to_onnx(seq, mean=mean, std=std, max_steps=MAX_STEPS),
            seq,
            _series,
            _lengths(MAX_STEPS),
            "ONNX",
        ),
        Runner(
            "onnx_text_logits",
            onnx_text_logits,
            text_to_onnx(text, max_chars=MAX_CHARS),
            text,
            _tokens,
            _lengths(MAX_CHARS),
            "ONNX",
        ),
    ]
    return {r.name: r for r in found}


NAMES = ["onnx_logits", "torchscript_logits", "onnx_sequence_logits", "onnx_text_logits"]
REAL = ["onnx_logits", "torchscript_logits", "onnx_sequence_logits"]  # float inputs
WITH_LENGTHS = {"onnx_sequence_logits": MAX_STEPS, "onnx_text_logits": MAX_CHARS}


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_pytorch_s_for_tensors_and_numpy_arrays(runners, name) -> None:
    r = runners[name]
    x = r.inputs(5)
    lengths = r.lengths(5) if r.lengths else None
    got = r(r.data, x, lengths, batch_size=2)  # batches of 2, 2, 1
    with torch.no_grad():
        want = r.model(x) if lengths is None else r.model(x, lengths)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    wide = x.numpy().astype(np.float64 if x.is_floating_point() else np.int32)
    numpy_lengths = None if lengths is None else lengths.numpy()
    assert torch.equal(r(r.data, wide, numpy_lengths, batch_size=2), got)


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_batch_gives_zero_rows_of_the_model_s_classes(runners, name) -> None:
    r = runners[name]
    empty = r.inputs(0)
    got = r(r.data, empty, torch.zeros(0, dtype=torch.int64) if r.lengths else None)
    assert got.shape == (0, r.model.num_classes)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "3", None])
def test_batch_size_below_one_or_not_an_int_is_refused(runners, name, batch_size) -> None:
    r = runners[name]
    bad = rf"batch_size must be an int >= 1, got {batch_size!r}$"
    with pytest.raises(ValueError, match=rf"^{name}: {bad}"):
        r(r.data, r.inputs(2), batch_size=batch_size)


class _BytesPath:
    def __fspath__(self) -> bytes:
        return b"m"


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_unreadable_or_mistyped_model_is_named(runners, name, tmp_path) -> None:
    r = runners[name]
    x = r.inputs(1)
    with pytest.raises(FileNotFoundError, match=rf"^{name}: model '.*nope\.bin': no such file$"):
        r(tmp_path / "nope.bin", x)
    with pytest.raises(FileNotFoundError, match=rf"^{name}: model '.*': no such file$"):
        r(str(tmp_path), x)  # a folder
    with pytest.raises(
        ValueError, match=rf"^{name}: model the 4 bytes given is not a readable {r.kind} model: "
    ):
        r(b"junk", x)
    (tmp_path / "junk.bin").write_bytes(b"junk")
    with pytest.raises(
        ValueError, match=rf"^{name}: model '.*junk\.bin' is not a readable {r.kind} model: "
    ):
        r(tmp_path / "junk.bin", x)
    with pytest.raises(
        TypeError, match=rf"^{name}: model must be the {r.kind} bytes or a path to an? .*, got int$"
    ):
        r(3, x)
    with pytest.raises(
        TypeError, match=rf"^{name}: model must be the {r.kind} bytes .*, got the bytes path b'm'$"
    ):
        r(_BytesPath(), x)  # read as the model's bytes otherwise


def test_each_format_s_reader_refuses_the_other_format(runners) -> None:
    onnx_model, script = runners["onnx_logits"].data, runners["torchscript_logits"].data
    with pytest.raises(ValueError, match=r"^torchscript_logits: model the \d+ bytes given is not"):
        torchscript_logits(onnx_model, _images(1))
    with pytest.raises(ValueError, match=r"^onnx_logits: model the \d+ bytes given is not a rea"):
        onnx_logits(script, _images(1))


def test_a_torchscript_module_rnnflow_did_not_write_is_refused(tmp_path) -> None:
    with pytest.warns(DeprecationWarning):  # torch.jit.trace/save are deprecated in 2.13
        traced = torch.jit.trace(torch.nn.Linear(SIDE, 3), (torch.zeros(1, SIDE),))
        torch.jit.save(traced, str(tmp_path / "linear.pt"))
    with pytest.raises(
        ValueError,
        match=r"^torchscript_logits: model is not an rnnflow TorchScript export \(to_torchscript\)"
        r": it has no parameters model\.weights_in and model\.weights_out$",
    ):
        torchscript_logits(tmp_path / "linear.pt", _images(1))


@pytest.mark.parametrize("name", NAMES)
def test_inputs_that_are_not_arrays_are_refused(runners, name) -> None:
    r = runners[name]
    arg = {"onnx_sequence_logits": "series", "onnx_text_logits": "tokens"}.get(name, "images")
    with pytest.raises(
        TypeError, match=rf"^{name}: {arg} must be a torch\.Tensor or a NumPy array, got list$"
    ):
        r(r.data, r.inputs(2).tolist(), r.lengths(2) if r.lengths else None)


DTYPES = [  # name, the input made of a valid one, the message after "{name}: "
    ("onnx_logits", lambda x: x > 0.5, r"images must hold real numbers, got dtype bool"),
    ("torchscript_logits", lambda x: x > 0.5, r"images must hold real numbers, got dtype bool"),
    ("torchscript_logits", lambda x: x.to(torch.complex64), r"images must hold real numbers, "
                                                            r"got dtype complex64"),
    ("onnx_sequence_logits", lambda x: x > 0, r"series must hold real numbers, got dtype bool"),
    ("onnx_text_logits", lambda x: x.float(), r"tokens must hold integer ids, got dtype float32"),
    ("onnx_text_logits", lambda x: x > 3, r"tokens must hold integer ids, got dtype bool"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "convert", "message"), DTYPES)
def test_inputs_of_the_wrong_dtype_are_refused(runners, name, convert, message) -> None:
    r = runners[name]
    with pytest.raises(TypeError, match=rf"^{name}: {message}$"):
        r(r.data, convert(r.inputs(2)))


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.uint8])
def test_every_real_dtype_runs_as_float32(runners, name, dtype) -> None:
    """The TorchScript module itself runs only float32 (float64 failed inside the
    interpreter): every runner converts real inputs, as the ONNX runners did."""
    r = runners[name]
    if name in IMAGE_RUNNERS:  # pixels in [0, 1]: uint8 images of 0s and 1s
        x = (r.inputs(3).round() if dtype == torch.uint8 else r.inputs(3)).to(dtype)
    else:
        x = (r.inputs(3) * 4).to(dtype)
    assert torch.equal(r(r.data, x), r(r.data, x.float()))


SHAPES = [  # name, shape given, the shape the message must state
    ("onnx_logits", (2, 40, 28), r"images must have shape \[N, 28, 28\]"),
    ("torchscript_logits", (2, 40, 28), r"images must have shape \[N, 28, 28\]"),  # read 28 rows
    ("torchscript_logits", (2, 20, 28), r"images must have shape \[N, 28, 28\]"),
    ("torchscript_logits", (2, 28, 20), r"images must have shape \[N, 28, 28\]"),
    ("torchscript_logits", (28, 28), r"images must have shape \[N, 28, 28\]"),
    ("torchscript_logits", (1, 2, 28, 28), r"images must have shape \[N, 28, 28\]"),
    ("onnx_sequence_logits", (2, 12, 2), r"series must have shape \[N, 6, 2\]"),
    ("onnx_sequence_logits", (2, 6, 3), r"series must have shape \[N, 6, 2\]"),
    ("onnx_text_logits", (2, 7), r"tokens must have shape \[N, 5\]"),
]
WHERE = {
    "onnx_logits": r"\(the exported height and width\)",
    "torchscript_logits": r"\(the exported height and width\)",
    "onnx_sequence_logits": r"\(the exported max_steps and channels\)",
    "onnx_text_logits": r"\(the exported max_chars\)",
}


@pytest.mark.parametrize(("name", "shape", "message"), SHAPES)
def test_inputs_of_another_shape_name_the_expected_and_actual_shape(
    runners, name, shape, message
) -> None:
    r = runners[name]
    x = torch.zeros(shape, dtype=r.inputs(1).dtype)
    got = re.escape(str(list(shape)))
    with pytest.raises(ValueError, match=rf"^{name}: {message} {WHERE[name]}, got {got}$"):
        r(r.data, x)


@pytest.mark.parametrize("name", REAL)
def test_non_finite_values_are_refused_naming_the_first(runners, name) -> None:
    r = runners[name]
    arg, axes = (
        ("series", ("step", "channel"))
        if name == "onnx_sequence_logits"
        else ("images", ("row", "column"))
    )
    x = r.inputs(2)
    x[1, 1, 1] = float("-inf")  # within every length (series 1: 2 steps)
    with pytest.raises(
        ValueError,
        match=rf"^{name}: {arg} 1 holds a non-finite value \(-inf\) at {axes[0]} 1, {axes[1]} 1;"
        r" the model takes finite values only$",
    ):
        r(r.data, x)
    x[1, 1, 1] = float("nan")  # NaN: a missing value
    with pytest.raises(
        ValueError,
        match=rf"^{name}: {arg} 1 holds a non-finite value \(nan\) at {axes[0]} 1, {axes[1]} 1;"
        r" fill or drop missing values first$",
    ):
        r(r.data, x)
    big = r.inputs(2).double()
    big[0, 0, 1] = 1e39  # float32 cannot hold it: it would run as inf
    with pytest.raises(
        ValueError,
        match=rf"^{name}: {arg} 0 holds a value beyond float32's range \(1e\+39\) at "
        rf"{axes[0]} 0, {axes[1]} 1; the exported model computes in float32 "
        r"\(\|value\| <= 3\.403e\+38\): scale the values$",
    ):
        r(r.data, big.numpy())


IMAGE_RUNNERS = ["onnx_logits", "torchscript_logits"]
EIGHT_BIT = r"got \d+ at \[0, 0, 0\]; 8-bit pixels \(0\.\.255\)\? divide them by 255$"


@pytest.mark.parametrize("name", IMAGE_RUNNERS)
@pytest.mark.parametrize(
    ("make", "message"),
    [
        # 8-bit pixels: uint8 as read from a PNG, or the same values as floats
        (lambda x: (x * 255).round().to(torch.uint8).numpy(), EIGHT_BIT),
        (lambda x: (x * 255).round(), EIGHT_BIT),
        (lambda x: x * 2 - 1, r"got -?[0-9.e-]+ at \[0, \d+, \d+\]$"),  # [-1, 1]: no hint
        (lambda x: x * 1.01, r"got 1\.0\d* at \[0, \d+, \d+\]$"),  # just above 1: no hint
        (lambda x: x * 300, r"got [0-9.e+]+ at \[0, \d+, \d+\]$"),  # beyond 255: no hint
    ],
)  # fmt: skip
def test_image_runners_refuse_pixels_outside_the_unit_interval(runners, name, make, message):
    """The models were trained on pixels in [0, 1]; 0..255 images ran and returned other
    logits without a word (before: 200 of 200 such calls answered)."""
    r = runners[name]
    x = r.inputs(2)
    with pytest.raises(
        ValueError,
        match=rf"^{name}: images must hold pixels in \[0, 1\] \(as the model was "
        rf"trained on\), {message}",
    ):
        r(r.data, make(x))
    edges = x.clone()
    edges[0, 0, :2] = torch.tensor([0.0, 1.0])  # the interval's ends are inside it
    with torch.no_grad():
        want = r.model(edges)
    torch.testing.assert_close(r(r.data, edges), want, rtol=1e-5, atol=1e-5)


def test_non_finite_padding_past_a_length_is_free(runners) -> None:
    r = runners["onnx_sequence_logits"]
    x, lengths = r.inputs(2), torch.tensor([6, 4])
    x[1, 4:] = float("nan")  # past series 1's length 4: never read
    with torch.no_grad():
        want = r.model(torch.nan_to_num(x), lengths)
    torch.testing.assert_close(r(r.data, x, lengths), want, rtol=1e-5, atol=1e-5)


def test_token_ids_outside_the_vocabulary_are_refused(runners) -> None:
    r = runners["onnx_text_logits"]
    ids = torch.ones(2, MAX_CHARS, dtype=torch.int64)
    ids[1, 2] = -1  # ONNX's Gather would read the table's last row
    with pytest.raises(
        ValueError,
        match=r"^onnx_text_logits: tokens must be ids in \[0, 9\) \(the model's vocabulary\), "
        r"got -1 at \[1, 2\]$",
    ):
        r(r.data, ids, [3, 4])
    ids[1, 2], ids[0, 4] = 1, 9  # past the vocabulary, in the padding: onnxruntime would fail
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 9\) .*got 9 at \[0, 4\]$"):
        r(r.data, ids, [3, 4])


LENGTH_TYPES = [
    (torch.tensor([4.7, 5.9]), TypeError, r"must be an integer tensor, got dtype torch\.float32"),
    (torch.tensor([True, True]), TypeError, r"must be an integer tensor, got dtype torch\.bool"),
    (np.array([4.0, 5.0]), TypeError, r"must be an integer tensor, got dtype torch\.float64"),
    ([4, True], TypeError, r"must hold integers, got True at index 1"),
    (None, TypeError, r"must be given \(one length per series\), got None"),
    (torch.tensor([[4, 5]]), ValueError, r"must have shape \(2,\), got \(1, 2\)"),
    ([3], ValueError, r"must have shape \(2,\), got \(1,\)"),
    (4, TypeError, r"must be an integer tensor of shape \(2,\), got int"),
]


@pytest.mark.parametrize("name", list(WITH_LENGTHS))
@pytest.mark.parametrize(("lengths", "error", "message"), LENGTH_TYPES)
def test_lengths_are_typed_as_dynamic_rnn_types_them(runners, name, lengths, error, message):
    r = runners[name]
    with pytest.raises(error, match=rf"^{name}: sequence_length {message}$"):
        r.run(r.data, r.inputs(2), lengths)


@pytest.mark.parametrize("name", list(WITH_LENGTHS))
@pytest.mark.parametrize(
    ("lengths", "bad", "series"),
    [
        ([3, 0], 0, 1),  # 0 would give another length's logits
        ([-2, 3], -2, 0),  # dynamic_rnn's own message said ">= 0" although 0 is refused too
        (np.array([3, -1], np.int8), -1, 1),
        ("over", "over", 1),  # one above the time axis: an onnxruntime error inside the graph
        ("uint8", 0, 0),  # unsigned: exact Python ints
    ],
)
def test_lengths_outside_the_graph_s_domain_name_the_real_range(
    runners, name, lengths, bad, series
):
    r = runners[name]
    top = WITH_LENGTHS[name]
    axis = "max_steps" if name == "onnx_sequence_logits" else "max_chars"
    if isinstance(lengths, str) and lengths == "over":
        lengths, bad = [2, top + 1], top + 1
    elif isinstance(lengths, str):
        lengths = torch.tensor([0, top], dtype=torch.uint8)
    with pytest.raises(
        ValueError,
        match=rf"^{name}: sequence_length must be in \[1, {top}\] \(the exported {axis}\), "
        rf"got {bad} for {'series' if name == 'onnx_sequence_logits' else 'text'} {series}$",
    ):
        r.run(r.data, r.inputs(2), lengths)


@pytest.mark.parametrize(
    ("load", "kind"), [(load_torchscript, "TorchScript"), (onnx_metadata, "ONNX")]
)
def test_the_loaders_check_their_model_as_the_runners_do(load, kind, tmp_path) -> None:
    name = load.__name__
    with pytest.raises(FileNotFoundError, match=rf"^{name}: model '.*nope': no such file$"):
        load(tmp_path / "nope")
    with pytest.raises(ValueError, match=rf"^{name}: model the 4 bytes given is not a readable "):
        load(b"junk")
    with pytest.raises(TypeError, match=rf"^{name}: model must be the {kind} bytes or a path to"):
        load(3)


def test_the_loaders_read_what_the_exporters_wrote(runners, tmp_path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(to_onnx(runners["onnx_logits"].model, metadata={"k": "v"}))
    assert onnx_metadata(path) == onnx_metadata(path.read_bytes()) == {"k": "v"}
    module = load_torchscript(runners["torchscript_logits"].data)
    x = _images(2)
    with torch.no_grad():
        torch.testing.assert_close(module(x), runners["onnx_logits"].model(x), rtol=0, atol=1e-5)


EXPORTERS = [
    ("to_onnx", lambda m, **k: to_onnx(m, **k)),
    ("to_torchscript", lambda m, **k: to_torchscript(m, **k)),
    (
        "sequence_to_onnx",
        lambda m, **k: sequence_to_onnx(m, mean=[0.0], std=[1.0], max_steps=3, **k),
    ),
    ("text_to_onnx", lambda m, **k: text_to_onnx(m, max_chars=3, **k)),
]


@pytest.mark.parametrize(("name", "export"), EXPORTERS)
def test_exporters_refuse_another_model_class_and_non_string_metadata(runners, name, export):
    """A Linear used to fail with an AttributeError (input_size) in to_onnx and to_torchscript;
    metadata {"a": 3} with onnx's "bad argument type for built-in operation"."""
    with pytest.raises(TypeError, match=r"model must be a \w+, got Linear$"):
        export(torch.nn.Linear(2, 2))
    model = {
        "to_onnx": runners["onnx_logits"].model,
        "to_torchscript": runners["onnx_logits"].model,
        "sequence_to_onnx": SequenceClassifier(input_size=1, num_classes=2, num_units=2),
        "text_to_onnx": runners["onnx_text_logits"].model,
    }[name]
    with pytest.raises(
        TypeError, match=rf"^{name}: metadata must map str to str, got 'a': 3 \(str: int\)$"
    ):
        export(model, metadata={"a": 3})
    with pytest.raises(TypeError, match=rf"^{name}: metadata must be a mapping of str to str, go"):
        export(model, metadata=[("a", "b")])


@pytest.mark.parametrize("export", ["to_onnx", "to_torchscript"])
@pytest.mark.parametrize(
    "options, named",
    [
        ({"pooling": "mean"}, "pooling='mean'"),
        ({"conv_branch": "fcn"}, "conv_branch='fcn'"),
        ({"deltas": True}, "deltas=True"),
    ],
)
def test_the_image_exports_refuse_what_their_graph_would_not_run(export, options, named):
    """The image graph reads the last step's h only: a model pooling otherwise, with a
    convolutional branch or deltas would be exported wrongly (mean pooling: logits 2.8 off)."""
    fn = {"to_onnx": to_onnx, "to_torchscript": to_torchscript}[export]
    model = SequenceClassifier(num_units=4, **options)
    with pytest.raises(
        ValueError,
        match=rf"{export}: the image export runs the last step's output only, got a model "
        rf"with {re.escape(named)}",
    ):
        fn(model)


ONNX_RUNNERS = {
    "onnx_logits": ("to_onnx", "['images']"),
    "onnx_sequence_logits": ("sequence_to_onnx", "['series', 'sequence_length']"),
    "onnx_text_logits": ("text_to_onnx", "['tokens', 'sequence_length']"),
}


@pytest.mark.parametrize(
    "name, other", [(a, b) for a in ONNX_RUNNERS for b in ONNX_RUNNERS if a != b]
)
def test_an_onnx_runner_refuses_another_task_s_graph(runners, name, other) -> None:
    """Every ONNX runner given another exporter's graph names both sets of inputs (before,
    onnxruntime said only that inputs were missing, without the function's name)."""
    r, graph = runners[name], runners[other].data
    exporter, inputs = ONNX_RUNNERS[name]
    x = r.inputs(2)
    lengths = r.lengths(2) if r.lengths else None
    with pytest.raises(
        ValueError,
        match=rf"{name}: model must be a graph written by {exporter} \(inputs "
        rf"{re.escape(inputs)}\), got a graph with inputs {re.escape(ONNX_RUNNERS[other][1])}",
    ):
        r(graph, x, lengths)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", ["image", "sequence", "text"])
def test_every_exported_graph_runs_at_batch_0_in_onnxruntime(kind, bidirectional) -> None:
    """The batch axis is dynamic down to 0 in the graph itself (and the TorchScript module), not
    only in the runners (which never run an empty batch): before, the bidirectional sequence
    and text graphs failed in a Reshape at batch 0 (reverse_sequence's index view), the image
    graph returned [0, 10]."""
    import onnxruntime as ort

    torch.manual_seed(0)
    if kind == "image":
        model = SequenceClassifier(num_units=4, bidirectional=bidirectional).eval()
        graph = to_onnx(model)
        feeds = {"images": np.zeros((0, SIDE, SIDE), np.float32)}
    elif kind == "sequence":
        model = SequenceClassifier(
            input_size=DEPTH, num_classes=3, num_units=4, bidirectional=bidirectional
        ).eval()
        graph = sequence_to_onnx(model, mean=[0.0] * DEPTH, std=[1.0] * DEPTH, max_steps=MAX_STEPS)
        feeds = {"series": np.zeros((0, MAX_STEPS, DEPTH), np.float32)}
    else:
        model = TextClassifier(
            vocab_size=VOCAB, num_classes=3, embedding_size=3, num_units=4,
            bidirectional=bidirectional,
        ).eval()  # fmt: skip
        graph = text_to_onnx(model, max_chars=MAX_CHARS)
        feeds = {"tokens": np.zeros((0, MAX_CHARS), np.int64)}
    if kind != "image":
        feeds["sequence_length"] = np.zeros(0, np.int64)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], feeds)
    assert logits.shape == (0, model.num_classes) and logits.dtype == np.float32
    if kind == "image":  # the TorchScript module too
        module = load_torchscript(to_torchscript(model))
        empty = module(torch.zeros(0, SIDE, SIDE))
        assert empty.shape == (0, model.num_classes) and empty.dtype == torch.float32
