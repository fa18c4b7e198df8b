"""The six emotion labels of dair-ai/emotion, in the Hub's ClassLabel order."""
from typing import Tuple

LABELS: Tuple[str, ...] = ("sadness", "joy", "love", "anger", "fear", "surprise")
"""Label names; the position of a name is its integer id in the Hub layout."""

LABEL_TO_ID = {label: i for i, label in enumerate(LABELS)}
