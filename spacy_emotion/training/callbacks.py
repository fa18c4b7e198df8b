"""Training callbacks for the configs' `[training]` block.

`spacy_emotion.seed_each_step.v1` makes the order of the training texts
independent of the dev evaluations. spaCy shuffles each epoch's texts with
Python's global `random`; spacy-transformers draws one number from that same
`random` at every forward batch of the transformer
(`maybe_flush_pytorch_cache`, even where it flushes nothing), so the number
of batches the dev evaluations take (set by `max_batch_items`, an inference
setting) used to change the order of every epoch after the first, as a new
seed would. Reseeding before each update from the seed and the step leaves
that order to the seed and the step alone.
"""

import random
from typing import Any, Callable, Dict

from spacy.language import Language
from spacy.util import registry


@registry.callbacks("spacy_emotion.seed_each_step.v1")
def seed_each_step(seed: int = 0) -> Callable[[Language, Dict[str, Any]], None]:
    """A `training.before_update` callback: reseeds Python's `random` from
    `seed` and the step before every update.

    seed (int): usually `${system.seed}`.
    RETURNS (Callable): called by spaCy's training loop as
        `before_update(nlp, {"step": step, "epoch": epoch})`.
    """

    def before_update(nlp: Language, args: Dict[str, Any]) -> None:
        # a str seed is hashed with SHA-512: the same stream in every process
        random.seed(f"spacy_emotion:{seed}:{args['step']}")

    return before_update
