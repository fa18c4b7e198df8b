"""The `spacy-emotion` command line (also `python -m spacy_emotion`)."""
from .app import app  # noqa: F401
from . import annotate, convert, evaluate, predict, reports, serve, train  # noqa: F401  registers the commands
