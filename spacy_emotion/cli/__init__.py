"""The `spacy-emotion` command line (also `python -m spacy_emotion`)."""

from . import annotate, convert, evaluate, hf_baseline, predict, reports, serve, train  # noqa: F401  registers the commands
from .app import app  # noqa: F401
