"""One SetFit run on a task folder, for bench/fewshot.py: train on train.tsv, score test.tsv, print JSON.

SetFit 1.2.0 (Tunstall et al. 2022) with the paper's settings: 20 pair iterations per row, one
epoch, batch 16, and its logistic-regression head; the library's defaults otherwise. The body is
the packaged all-MiniLM-L6-v2, or --model. Run with the Python of an environment that has setfit:

    pip install -e ".[fewshot]"
    python bench/setfit_run.py --folder SAMPLE_DIR --seed 0

--label-sentences K adds the rows Task 4's contrastive path adds (K copies of "This sentence is
{label}." a class, sentence_mtl/training/label_sentences.py), to compare the two on the same rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile

from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
from sklearn.metrics import accuracy_score, f1_score
from transformers.utils import logging as transformers_logging

from sentence_mtl.data.task_folders import load_task_folder
from sentence_mtl.encoder.model_files import packaged_model_path
from sentence_mtl.training.label_sentences import task_with_label_sentences


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", required=True, help="a task folder with train.tsv and test.tsv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="default: packaged all-MiniLM-L6-v2")
    parser.add_argument(
        "--label-sentences",
        type=int,
        default=0,
        help='copies of "This sentence is {label}." added to each class',
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    transformers_logging.disable_progress_bar()

    task = load_task_folder("task", args.folder, dev_fraction=0)  # the same reader as Task 4's
    task = task_with_label_sentences(task, args.label_sentences)  # the rows Task 4's defaults add
    train = Dataset.from_dict({"text": task.train.texts, "label": task.train.labels})
    model = SetFitModel.from_pretrained(str(args.model or packaged_model_path()))
    with tempfile.TemporaryDirectory(
        prefix="setfit-"
    ) as scratch:  # its checkpoints, not in the caller's folder
        settings = TrainingArguments(
            output_dir=scratch, num_iterations=20, num_epochs=1, batch_size=16, seed=args.seed,
            show_progress_bar=False,
        )  # fmt: skip
        Trainer(model=model, args=settings, train_dataset=train).train()
    predicted = model.predict(task.test.texts, batch_size=64, as_numpy=True)
    truth = task.test.labels
    print(
        json.dumps(
            {
                "accuracy": float(accuracy_score(truth, predicted)),
                "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            }
        )
    )


if __name__ == "__main__":
    main()
