"""Sampling from a CharLM one character at a time, carrying the recurrent state.

    logits, state = model([<bos>, prime...])             # one dynamic_rnn call over the prime
    repeat:
        p  = softmax(mask(logits) / temperature)          # mask: specials, constraints, top-k/p
        c ~ p                                             # torch.Generator seeded by ``seed``
        logits, state = model([c], initial_state=state)   # one step, the state carried
    until <eos> (or ``length`` characters, or the form is complete)

With the adaptive softmax (``CharLM(softmax="adaptive")``) the model returns its full
log-probabilities in place of logits; their softmax is the same distribution, so everything below
applies unchanged.

The mask always removes ``<pad>``, ``<unk>`` and ``<bos>``; with a :class:`PoemForm` it keeps only
the ids the form allows at each position (hanzi, ``，``, ``。？！``, a line break, ``<eos>``), so
the poem is well formed whatever the model prefers; ``acrostic``, ``rhyme`` and ``tonal`` narrow
it further (:class:`rnnflow.text.constraints.ConstraintMask`). Top-k then keeps the k most likely
of the allowed ids, top-p the smallest set of them whose probability reaches p (Holtzman et al.
2020, "The Curious Case of Neural Text Degeneration"); ``temperature=0`` picks the most likely
allowed id (greedy). Masks are applied before sampling, so every constraint holds by
construction: no sample is ever drawn and thrown away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rnnflow.models.char_lm import CharLM
from rnnflow.text.constraints import ConstraintError, ConstraintMask, PoemConstraints, poem_checks
from rnnflow.text.corpus import Vocabulary
from rnnflow.text.poetry import PoemForm

__all__ = ["MAX_SEED", "Sample", "generate", "sample_record"]

MAX_SEED = 2**62
"""The largest seed `rnnflow generate --seed` and ``/api/generate`` take: ``--num N`` draws with
seeds S .. S + N - 1, which stay well inside :func:`generate`'s int64 range."""


@dataclass(frozen=True)
class Sample:
    """A generated text: ``text`` is the prime followed by the sampled characters."""

    text: str
    prime: str
    ids: list[int]  # sampled ids (not the prime), <eos> included when it was drawn
    log_prob: float  # sum of log p of the sampled ids under the masked, tempered distribution
    finished: bool  # True if <eos> was drawn (always True with a form)
    # with generate(candidates=k): per sampled id, the k most likely (id, probability) pairs of
    # the distribution it was drawn from (masked, tempered, top-k; greedy: softmax of the
    # masked logits), most likely first
    candidates: tuple[tuple[tuple[int, float], ...], ...] = ()


@torch.no_grad()
def generate(
    model: CharLM,
    vocab: Vocabulary,
    *,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    form: PoemForm | None = None,
    candidates: int = 0,
    top_p: float = 1.0,
    acrostic: str = "",
    rhyme: bool = False,
    tonal: bool = False,
) -> Sample:
    """Sample a continuation of ``prime`` from ``model`` (see the module docstring).

    Args:
        prime: text to start with (every character must be in the vocabulary).
        length: at most this many characters after the prime (ignored with ``form``: the form
            fixes the length).
        temperature: a finite float > 0 divides the logits (however small: the limit is
            greedy); 0 is greedy decoding.
        top_k: keep the k most likely allowed ids; 0 (or more than are allowed) keeps all.
        seed: seeds the sampling generator (an int in [0, 2**63 - 1]): the same seed gives the
            same text.
        candidates: also record, for each sampled id,
            the ``candidates`` most likely ids and their probabilities (``Sample.candidates``);
            0 records nothing.
        form: force a regular poem; ``prime`` must then be a prefix that fits it.
        top_p: nucleus sampling: keep the most likely allowed ids until their probability
            reaches ``top_p`` (in (0, 1]; 1 keeps all).
        acrostic: with ``form``: verse i starts with ``acrostic[i]`` (one character per verse).
        rhyme: with ``form``: the even verses end on characters of one rhyme group.
        tonal: with a 5- or 7-character ``form``: the level/oblique pattern of regulated verse.

    Raises ``ValueError`` for a NaN, infinite or negative ``temperature``, a ``top_k`` or
    ``length`` that is not an int >= 0, a ``seed`` outside [0, 2**63 - 1], a ``top_p`` outside
    (0, 1], an unknown prime character or a prime that does not fit ``form``, and
    :class:`~rnnflow.text.constraints.ConstraintError` (a ``ValueError``) when
    acrostic/rhyme/tonal are asked without a form or cannot be met.
    """
    if isinstance(temperature, bool) or not (
        isinstance(temperature, int | float) and _finite_float(temperature) and temperature >= 0
    ):
        raise ValueError(
            f"generate: temperature must be a finite number >= 0 (0: greedy), got {temperature!r}"
        )
    for name, value in (("top_k", top_k), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"generate: {name} must be an int >= 0, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**63 - 1:
        raise ValueError(f"generate: seed must be an int in [0, 2**63 - 1], got {seed!r}")
    if len(vocab) != model.vocab_size:
        raise ValueError(
            f"generate: the vocabulary has {len(vocab)} symbols, the model {model.vocab_size}"
        )
    unknown = list(dict.fromkeys(ch for ch in prime if ch not in vocab))  # as typed
    if unknown:
        raise ValueError(f"generate: the prime has characters the model does not know: {unknown}")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
        raise ValueError(f"generate: candidates must be an int >= 0, got {candidates!r}")
    if isinstance(top_p, bool) or not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        raise ValueError(f"generate: top_p must be a number in (0, 1], got {top_p!r}")
    if form is None and (acrostic or rhyme or tonal):
        raise ConstraintError(
            "generate: acrostic, rhyme and tonal constrain a poem: pass a form (e.g. "
            "PoemForm.parse('5x4'))"
        )
    form_mask = (
        ConstraintMask(PoemConstraints(form, acrostic, rhyme, tonal), vocab)
        if form is not None
        else None
    )
    if form_mask is not None:
        form_mask.check_prefix(prime)
        length = len(form_mask) - len(prime)

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    base = torch.ones(len(vocab), dtype=torch.bool)  # [V]
    base[[vocab.pad_id, vocab.unk_id, vocab.bos_id]] = False
    try:
        tokens = torch.tensor([[vocab.bos_id, *vocab.encode(prime)]], device=device)  # [1, L]
        logits, state = model(tokens)  # [1, L, V]
        last = logits[0, -1].float().cpu()  # [V]
        ids: list[int] = []
        log_prob = 0.0
        finished = False
        shown: list[tuple[tuple[int, float], ...]] = []
        text = prime
        for _ in range(length):
            allowed = base
            if form_mask is not None:
                allowed = allowed & form_mask.allowed(text)
            choice, lp, probs = _draw(last, allowed, temperature, top_k, top_p, generator)
            if candidates:
                values, top = probs.topk(min(candidates, len(probs)))
                shown.append(tuple((int(i), float(v)) for v, i in zip(values, top) if v > 0))
            ids.append(choice)
            text += vocab.decode([choice])
            log_prob += lp
            if choice == vocab.eos_id:
                finished = True
                break
            step = torch.tensor([[choice]], device=device)  # [1, 1]
            # one step: the reference loop (no fused-path set-up cost per call; same results)
            logits, state = model(step, initial_state=state, impl="reference")
            last = logits[0, -1].float().cpu()
    finally:
        model.train(was_training)
    return Sample(
        text=prime + vocab.decode(ids),
        prime=prime,
        ids=ids,
        log_prob=log_prob,
        finished=finished,
        candidates=tuple(shown),
    )


def _finite_float(value: float) -> bool:
    """Whether ``value`` is a finite float, or an int a float can hold (10**400 cannot)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def sample_record(seed: int, sample: Sample, form: PoemForm | None) -> dict[str, Any]:
    """One sample as ``rnnflow generate --json`` and ``/api/generate`` write it: ``seed``,
    ``text``, ``finished``, ``log_prob``, and with a ``form`` the checks of
    :func:`~rnnflow.text.constraints.poem_checks` (``well_formed``, ``rhymes``, ``tonal``)."""
    record: dict[str, Any] = {
        "seed": seed,
        "text": sample.text,
        "finished": sample.finished,
        "log_prob": sample.log_prob,
    }
    if form is not None:
        record.update(poem_checks(sample.text, form))
    return record


def _draw(
    logits: Tensor,
    allowed: Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
) -> tuple[int, float, Tensor]:
    """One id from ``logits`` [V] restricted to ``allowed`` [V], its log-probability, and the
    probabilities [V] it was drawn from (greedy: the softmax of the masked logits)."""
    masked = logits.masked_fill(~allowed, float("-inf"))  # [V]
    if temperature == 0:
        choice = int(masked.argmax())
        return choice, 0.0, masked.softmax(-1)
    # shifted so that the largest allowed logit is 0, and divided in float64: every value is in
    # [-inf, 0] for any temperature > 0 (a tiny one, even below float32's smallest, cannot
    # overflow to inf - inf = NaN); the softmax is the same, being shift-invariant
    masked = ((masked.double() - masked.max()) / temperature).float()  # [V]
    if top_k and top_k < int(allowed.sum()):
        kth = masked.topk(top_k).values[-1]
        masked = masked.masked_fill(masked < kth, float("-inf"))
    if top_p < 1:
        probs, order = masked.softmax(-1).sort(descending=True)  # [V]
        before = probs.cumsum(-1) - probs  # mass of the more likely ids
        cut = before >= top_p  # [V]; top_p is compared in float32: a tiny one rounds to 0
        cut[0] = False  # so the most likely id is kept explicitly: never an empty nucleus
        masked = masked.index_fill(0, order[cut], float("-inf"))
    log_p = masked.log_softmax(-1)  # [V]
    probs = log_p.exp()  # [V]
    choice = int(torch.multinomial(probs, 1, generator=generator))
    return choice, float(log_p[choice]), probs
