"""The six emotion labels of dair-ai/emotion, in the Hub's ClassLabel order."""

from typing import Tuple

LABELS: Tuple[str, ...] = ("sadness", "joy", "love", "anger", "fear", "surprise")
"""Label names; the position of a name is its integer id in the Hub layout."""

LABEL_TO_ID = {label: i for i, label in enumerate(LABELS)}


def normalize(name: object) -> str:
    """A label name as LABELS spell it, whatever its case and surrounding
    spaces ("Joy " -> "joy"); a name that is no emotion stays one."""
    return str(name).strip().lower()
