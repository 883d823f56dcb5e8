"""`rnnflow serve`: a local web page and JSON API to watch a trained RNN read.

An application layer beside ``rnnflow.cli``: it imports the models, training, text and data
packages; none of them imports it. Needs the optional extra ``rnnflow[serve]`` (Starlette and
uvicorn); :mod:`rnnflow.serve.runs` alone needs neither. Import by path::

    from rnnflow.serve import create_app, load_run
    app = create_app(load_run("runs/tutorial"))      # an ASGI app: uvicorn.run(app) serves it
"""

from rnnflow.serve.app import MAX_BODY_BYTES, create_app
from rnnflow.serve.runs import ImageRun, PoemRun, RequestError, SequenceRun, load_run

__all__ = [
    "MAX_BODY_BYTES",
    "ImageRun",
    "PoemRun",
    "RequestError",
    "SequenceRun",
    "create_app",
    "load_run",
]
