"""A Ray worker process setup hook for tests/test_annotate_ray.py.

`install` makes the annotate actors slow (so that a test can kill one while
work is left) and makes each process that classifies leave a file named by
its process id in the folder given by SPACY_EMOTION_TEST_PIDS.
"""

import os
import time


def install() -> None:
    import spacy_emotion.serving.annotate_ray as module

    real = module.classify
    folder = os.environ["SPACY_EMOTION_TEST_PIDS"]
    delay = float(os.environ.get("SPACY_EMOTION_TEST_DELAY", "0.5"))

    def slow(*args, **kwargs):
        open(os.path.join(folder, str(os.getpid())), "w").close()
        time.sleep(delay)
        return real(*args, **kwargs)

    module.classify = slow
