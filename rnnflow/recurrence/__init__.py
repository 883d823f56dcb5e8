"""The time loop: ``dynamic_rnn`` and ``bidirectional_dynamic_rnn`` with TF1's semantics."""

from rnnflow.recurrence.bidirectional import bidirectional_dynamic_rnn
from rnnflow.recurrence.dynamic_rnn import dynamic_rnn
from rnnflow.recurrence.raw_rnn import raw_rnn
from rnnflow.recurrence.stack_bidirectional import (
    stack_bidirectional_dynamic_rnn,
    stack_bidirectional_rnn,
)
from rnnflow.recurrence.static_rnn import (
    static_bidirectional_rnn,
    static_rnn,
    static_state_saving_rnn,
)

__all__ = [
    "dynamic_rnn",
    "bidirectional_dynamic_rnn",
    "static_rnn",
    "static_bidirectional_rnn",
    "static_state_saving_rnn",
    "raw_rnn",
    "stack_bidirectional_dynamic_rnn",
    "stack_bidirectional_rnn",
]
