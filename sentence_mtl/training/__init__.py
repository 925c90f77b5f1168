"""Training: the multi-task loop and everything only it needs.

The rooms, each with one job: ``config`` (every knob), ``inputs`` (tokenised splits, batch
streams, cached embeddings), ``sampling`` (which task the next batch comes from), ``weighting``
(how task losses combine), ``objective`` (the loss of a batch), ``optimization`` (parameter groups,
schedule, precision), ``loop`` (steps and epochs), ``run`` (one run end to end), ``evaluation``
(metrics and the final report), ``checkpoint`` (``best/``, ``last/``, resume), ``run_folder`` (the
output folder: one writer, replaced without deleting first), ``signals`` (stopping cleanly) and
``distributed`` (DDP). The model and encoder layers below import nothing from here.
"""

from sentence_mtl.devices import hardware_description
from sentence_mtl.training.checkpoint import load_saved_config
from sentence_mtl.training.config import AMP_MODES, CLASS_WEIGHTS, TrainingConfig
from sentence_mtl.training.loop import Trainer
from sentence_mtl.training.run import train

__all__ = [
    "AMP_MODES",
    "CLASS_WEIGHTS",
    "Trainer",
    "TrainingConfig",
    "hardware_description",
    "load_saved_config",
    "train",
]
