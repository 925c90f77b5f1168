"""Precision choices: which CPU features are read, and when ``--amp auto`` takes bf16 on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ToyData, tiny_config

from sentence_mtl.devices import cpu_features, hardware_description
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.training import Trainer, loop
from sentence_mtl.training.optimization import resolve_amp

CPU = torch.device("cpu")


def test_cpu_features_are_read_from_the_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 avx512_vnni\n")
    assert cpu_features(cpuinfo) == ("avx2", "avx512f", "avx512_vnni", "amx_bf16")
    assert cpu_features(tmp_path / "missing") == ()
    assert "threads;" in hardware_description(CPU)  # every CPU figure names its instruction sets


def test_auto_precision_on_a_cpu_takes_bf16_only_where_the_caller_measured_it() -> None:
    assert resolve_amp("auto", CPU) == "fp32"
    assert resolve_amp("auto", CPU, cpu_bf16=True) == "bf16"
    assert resolve_amp("fp32", CPU, cpu_bf16=True) == "fp32"  # an explicit choice stays
    with pytest.raises(InvalidInputError, match="CUDA"):
        resolve_amp("fp16", CPU)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_the_contrastive_stage_uses_bf16_on_a_bf16_cpu_and_fine_tuning_does_not(
    has_bf16: bool, toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: has_bf16)
    contrastive = Trainer(tiny_config(tiny_bert_dir, tmp_path / "c", method="contrastive"), toy.tasks())
    finetune = Trainer(tiny_config(tiny_bert_dir, tmp_path / "f"), toy.tasks())
    assert contrastive.amp == ("bf16" if has_bf16 else "fp32")
    assert finetune.amp == "fp32"
