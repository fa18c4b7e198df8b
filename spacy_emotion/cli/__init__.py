"""The `spacy-emotion` command line (also `python -m spacy_emotion`)."""
from ._util import app  # noqa: F401
from . import convert, evaluate  # noqa: F401  registers the commands
