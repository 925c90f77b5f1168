"""What a run measures besides its task scores, and the training subsets of a learning curve.

- ``subset_folder``: a stratified sample of a task's training rows, dev and test whole, so a point of
  a learning curve differs from the full run in its training rows only.
- ``sts_dev_spearman``: the STS-B dev Spearman of a model's encoder, which says whether fine-tuning
  for classification kept the general-purpose embedding.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from sklearn.model_selection import train_test_split

from sentence_mtl import SentenceEncoder
from sentence_mtl.analysis.similarity import read_sts_pairs, sts_spearman
from sentence_mtl.data.task_folders import Split, load_task_folder

STS_DEV = Path("stsb") / "dev.tsv"  # inside the data folder


def subset_folder(name: str, folder: Path, rows: int, seed: int, scratch: Path) -> Path:
    """``rows`` training rows of ``folder``, stratified by label and drawn with ``seed``; dev and test whole.

    The folder is written once under ``scratch/subsets`` (through a temporary sibling and one rename,
    so runs that share it in parallel never see half of it) and reused afterwards. The dev split is
    the full run's, carved with data seed 0 where the folder has none.
    """
    task = load_task_folder(name, folder, seed=0)
    target = scratch / "subsets" / f"{folder.name}-n{rows}-seed{seed}"
    if target.is_dir():
        return target
    if not 0 < rows < len(task.train):
        raise ValueError(f"{folder}: a subset of {rows} rows needs 0 < rows < {len(task.train)}")
    keep, _ = train_test_split(
        list(range(len(task.train))), train_size=rows, stratify=task.train.labels, random_state=seed
    )
    train = Split([task.train.texts[i] for i in keep], [task.train.labels[i] for i in keep], "subset")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    for split_name, split in (("train", train), ("dev", task.dev), ("test", task.test)):
        if split is None:
            continue
        lines = [
            json.dumps({"text": text, "label": task.labels[label]}, ensure_ascii=False)
            for text, label in zip(split.texts, split.labels, strict=True)
        ]
        (staging / f"{split_name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        os.rename(staging, target)
    except OSError:  # another run wrote it first; theirs is the same sample
        shutil.rmtree(staging, ignore_errors=True)
    return target


def sts_dev_spearman(encoder: SentenceEncoder, data: Path) -> float | None:
    """STS-B dev Spearman ×100 of ``encoder`` (cosine of the pooled embeddings); None without STS-B."""
    path = data / STS_DEV
    if not path.is_file():
        return None
    first, second, scores = read_sts_pairs(path)
    return round(sts_spearman(encoder, first, second, scores), 2)
