"""spacy-emotion: emotion classification for any spaCy pipeline."""

from .component.pipe import EmotionClassifier  # noqa: F401  registers the factory
from .labels import LABELS  # noqa: F401
from .training.backbone import create_transformer_model, resolve_backbone  # noqa: F401  registers the architecture
from .training.callbacks import seed_each_step  # noqa: F401  registers the training callback
from .training.cls_head import build_cls_head  # noqa: F401  registers the textcat architecture
from .training.loggers import progress_console_logger  # noqa: F401  registers the training logger
from .training.optimizers import adam_with_head_rate  # noqa: F401  registers the optimizer

__version__ = "0.1.0"
