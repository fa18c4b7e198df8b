"""The `spacy-emotion` command line (also `python -m spacy_emotion`)."""
from ._util import app  # noqa: F401
from . import analysis, annotate, convert, evaluate, predict, serve, train  # noqa: F401  registers the commands
