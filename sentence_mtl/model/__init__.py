"""The multi-task model (Task 2): one shared encoder, one head per task.

``multitask`` (``MultiTaskModel``, ``build_model``), ``tasks`` (``TaskSpec`` and the task-name
rule), ``heads`` (linear and MLP heads) and ``freezing`` (freeze specifications). The model knows
nothing of training.
"""

from sentence_mtl.model.multitask import MultiTaskModel, build_model
from sentence_mtl.model.tasks import TaskSpec

__all__ = ["MultiTaskModel", "TaskSpec", "build_model"]
