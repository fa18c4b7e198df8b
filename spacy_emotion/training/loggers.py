"""A training logger that shows progress in logs as well as in terminals."""

import sys
import time
from typing import IO, Any, Callable, Dict, Optional, Tuple

from spacy.training.loggers import console_logger_v3
from spacy.util import registry


@registry.loggers("spacy_emotion.ConsoleLogger.v1")
def progress_console_logger(progress_bar: Optional[str] = "eval", every: int = 25) -> Callable:
    """spaCy's ConsoleLogger.v3 (table and tqdm bar), plus a plain progress line
    every `every` steps when stderr is not a terminal (CI logs, `| tee`), where
    tqdm stays silent. Nobody waits minutes without a sign of life.

    progress_bar (Optional[str]): "eval", "train" or None, as in ConsoleLogger.v3.
    every (int): steps between plain progress lines; 0 turns them off.
    """
    make_console = console_logger_v3(progress_bar=progress_bar)

    def setup(nlp, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> Tuple[Callable, Callable]:
        log_step, finalize = make_console(nlp, stdout, stderr)
        plain = every > 0 and not stderr.isatty()
        start = time.perf_counter()
        state = {"steps": 0, "since": start}

        def log(info: Optional[Dict[str, Any]]) -> None:
            state["steps"] += 1
            log_step(info)
            if plain and info is None and state["steps"] % every == 0:
                now = time.perf_counter()
                per_step = (now - state["since"]) / every
                state["since"] = now
                elapsed = (now - start) / 60
                stdout.write(f"  … step {state['steps']}: {per_step:.2f} s/step, {elapsed:.1f} min elapsed\n")
                stdout.flush()

        return log, finalize

    return setup
