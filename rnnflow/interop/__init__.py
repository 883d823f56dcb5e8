"""Interoperability with TensorFlow 1: read its checkpoints and map its names, without TF.

Import by path: ``from rnnflow.interop.tf1_checkpoint import TF1Checkpoint``,
``from rnnflow.interop.tf1_import import import_tutorial, load_tf1_cell``. See
docs/MIGRATION.md.
"""
