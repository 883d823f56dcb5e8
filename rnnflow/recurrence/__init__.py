"""The time loop: ``dynamic_rnn`` and ``bidirectional_dynamic_rnn`` with TF1's semantics."""

from rnnflow.recurrence.bidirectional import bidirectional_dynamic_rnn
from rnnflow.recurrence.dynamic_rnn import dynamic_rnn

__all__ = ["dynamic_rnn", "bidirectional_dynamic_rnn"]
