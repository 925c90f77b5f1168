"""MultiTaskModel: shapes, one encoder pass, independent heads, freezing, predict, save/load, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from sentence_mtl import SentenceEncoder
from sentence_mtl.errors import CheckpointError, InvalidInputError, InvalidTypeError
from sentence_mtl.model.multitask import CONFIG_NAME, WEIGHTS_NAME, MultiTaskModel
from sentence_mtl.model.tasks import TaskSpec

TASKS = [TaskSpec("topic", ["business", "food", "sports"]), TaskSpec("sentiment", ["negative", "positive"])]
SENTENCES = ["The team won the cup.", "Stocks fell sharply today", "I loved this pasta!", "meh"]


def make_model(folder: Path, tasks: list[TaskSpec] = TASKS, head: str = "linear") -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(SentenceEncoder.from_pretrained(folder, device="cpu"), tasks, head=head)


@pytest.fixture(params=["tiny_bert_dir", "tiny_qwen2_dir"])
def tiny_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def batch(model: MultiTaskModel, sentences: list[str] = SENTENCES) -> dict[str, torch.Tensor]:
    return model.encoder.tokenize(sentences)


# ---------------------------------------------------------------------- specs and construction


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("topic", ["a", "b", "a"], "more than once|twice"),
        ("topic", [], "two or more"),
        ("topic", ["only"], "two or more"),
        ("topic", ["a", ""], "non-empty"),
        ("", ["a", "b"], "empty or odd"),
        ("my task", ["a", "b"], "empty or odd"),
        ("a.b", ["a", "b"], "empty or odd"),
        ("keys", ["a", "b"], "ModuleDict"),
    ],
)
def test_task_spec_rejects_bad_names_and_labels(name: str, labels: list[str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        TaskSpec(name, labels)


def test_task_spec_keeps_label_order_as_a_tuple() -> None:
    spec = TaskSpec("sentiment", ["negative", "neutral", "positive"])
    assert spec.labels == ("negative", "neutral", "positive")
    with pytest.raises(InvalidTypeError, match="list of strings"):
        TaskSpec("topic", "abc")


def test_model_rejects_duplicate_tasks_and_bad_head_settings(tiny_bert_dir: Path) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    with pytest.raises(InvalidInputError, match=r"\['topic'\] appear twice"):
        MultiTaskModel(encoder, [TASKS[0], TaskSpec("topic", ["x", "y"])])
    with pytest.raises(InvalidInputError, match="Valid heads are: linear, mlp"):
        MultiTaskModel(encoder, TASKS, head="transformer")
    with pytest.raises(InvalidInputError, match="mlp head only"):
        MultiTaskModel(encoder, TASKS, hidden=16)
    with pytest.raises(InvalidInputError, match="dropout"):
        MultiTaskModel(encoder, TASKS, dropout=1.0)
    with pytest.raises(InvalidInputError, match="non-empty list"):
        MultiTaskModel(encoder, [])


def test_heads_are_a_module_dict_of_linear_or_mlp_layers(tiny_bert_dir: Path) -> None:
    linear = make_model(tiny_bert_dir)
    assert isinstance(linear.heads, torch.nn.ModuleDict) and list(linear.heads) == ["topic", "sentiment"]
    assert [type(m).__name__ for m in linear.heads["topic"]] == ["Dropout", "Linear"]
    mlp = MultiTaskModel(linear.encoder, TASKS, head="mlp", hidden=16)
    assert [type(m).__name__ for m in mlp.heads["topic"]] == ["Linear", "GELU", "Dropout", "Linear"]
    assert mlp.heads["topic"][0].out_features == 16 and mlp.heads["topic"][3].out_features == 3
    assert mlp.describe()["tasks"]["sentiment"]["layers"] == [
        "Linear(32 → 16)",
        "GELU",
        "Dropout(0.1)",
        "Linear(16 → 2)",
    ]
    default_hidden = MultiTaskModel(linear.encoder, TASKS, head="mlp")
    assert default_hidden.hidden == linear.encoder.embedding_dim == 32


# ---------------------------------------------------------------------- forward


def test_shapes_for_one_task_and_for_all_tasks(tiny_dir: Path) -> None:
    model = make_model(tiny_dir)
    dim = model.encoder.embedding_dim
    features = batch(model)
    all_logits = model(features)
    assert set(all_logits) == {"topic", "sentiment"}
    assert all_logits["topic"].shape == (4, 3) and all_logits["sentiment"].shape == (4, 2)
    assert model(features, task="sentiment").shape == (4, 2)
    assert model.classify(torch.zeros(5, dim), task="topic").shape == (5, 3)


def test_encoder_runs_once_per_batch_however_many_heads(tiny_dir: Path) -> None:
    tasks = [*TASKS, TaskSpec("intent", ["ask", "tell", "order", "greet"])]
    model = make_model(tiny_dir, tasks)
    calls = []
    model.encoder.backbone.register_forward_hook(lambda *_: calls.append(1))
    features = batch(model)
    assert len(model(features)) == 3 and len(calls) == 1
    model(features, task="intent")
    assert len(calls) == 2


def test_forward_is_the_encoder_then_classify(tiny_bert_dir: Path) -> None:
    model = make_model(tiny_bert_dir).eval()
    features = batch(model)
    with torch.no_grad():
        direct = model.classify(model.encoder(features))
        forward = model(features)
    for task in ("topic", "sentiment"):
        torch.testing.assert_close(forward[task], direct[task], rtol=0, atol=0)


def test_heads_are_independent(tiny_bert_dir: Path) -> None:
    model = make_model(tiny_bert_dir).train()
    logits = model(batch(model))
    loss = F.cross_entropy(logits["topic"], torch.tensor([2, 0, 1, 1]))
    loss.backward()
    for parameter in model.heads["sentiment"].parameters():
        assert parameter.grad is None or not parameter.grad.any()
    assert all(parameter.grad.abs().sum() > 0 for parameter in model.heads["topic"].parameters())
    assert any(parameter.grad is not None for parameter in model.encoder.parameters())


def test_unknown_task_lists_the_known_tasks(tiny_bert_dir: Path) -> None:
    model = make_model(tiny_bert_dir)
    with pytest.raises(InvalidInputError, match="unknown task 'topics'; known tasks are: topic, sentiment"):
        model(batch(model), task="topics")


# ---------------------------------------------------------------------- predict


def test_predict_returns_labels_probabilities_and_the_softmax_distribution(tiny_bert_dir: Path) -> None:
    model = make_model(tiny_bert_dir).train()
    predictions = model.predict(SENTENCES, batch_size=3, return_distribution=True)
    assert model.training and model.heads["topic"].training  # the caller's mode comes back
    model.eval()
    with torch.no_grad():
        logits = model(batch(model))
    assert len(predictions) == len(SENTENCES)
    for row, prediction in enumerate(predictions):
        for task in TASKS:
            result = prediction[task.name]
            expected = logits[task.name][row].softmax(dim=-1)
            distribution = torch.tensor([result["distribution"][label] for label in task.labels])
            torch.testing.assert_close(distribution, expected, rtol=0, atol=1e-5)
            assert abs(sum(result["distribution"].values()) - 1) < 1e-5
            assert result["label"] == task.labels[int(expected.argmax())]
            assert result["probability"] == max(result["distribution"].values())
    single = model.predict("just one")
    assert len(single) == 1 and set(single[0]["topic"]) == {"label", "probability"}


# ---------------------------------------------------------------------- freezing


def trainable_names(model: MultiTaskModel) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_frozen_parameters_do_not_move_under_adamw_with_weight_decay(tiny_bert_dir: Path) -> None:
    model = make_model(tiny_bert_dir).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    targets = {"topic": torch.tensor([2, 0, 1, 1]), "sentiment": torch.tensor([1, 0, 1, 0])}

    def step() -> None:
        logits = model(batch(model))
        loss = sum(F.cross_entropy(logits[task], targets[task]) for task in targets)
        loss.backward()
        optimizer.step()

    step()  # every parameter now has Adam state and a gradient
    model.apply_freeze("encoder+head:sentiment")
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    topic_before = model.heads["topic"][1].weight.detach().clone()
    step()
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name
    assert not torch.equal(model.heads["topic"][1].weight, topic_before)
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.heads["topic"].parameters()}


# BERT keeps its blocks in encoder.layer, Qwen2 in layers; after them Qwen2 has a final norm and the
# fixture a Dense projection, which train with K > 0. BERT's embeddings and unused pooler never do.
TOP_LAYER_CASES = [
    ("tiny_bert_dir", "encoder.backbone.encoder.layer.", set()),
    (
        "tiny_qwen2_dir",
        "encoder.backbone.layers.",
        {
            "encoder.backbone.norm.weight",
            "encoder.projection.linear.weight",
            "encoder.projection.linear.bias",
        },
    ),
]


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize(("fixture", "prefix", "after_layers"), TOP_LAYER_CASES)
def test_top_k_unfreezes_exactly_the_top_layers(
    fixture: str, prefix: str, after_layers: set[str], k: int, request: pytest.FixtureRequest
) -> None:
    model = make_model(request.getfixturevalue(fixture))
    model.unfreeze_top_layers(k)
    layers = model.encoder.transformer_layers()
    assert len(layers) == 2
    encoder_trainable = {name for name in trainable_names(model) if name.startswith("encoder.")}
    in_layers = {name for name in encoder_trainable if name.startswith(prefix)}
    assert {int(name[len(prefix) :].split(".")[0]) for name in in_layers} == set(range(2 - k, 2))
    for index in range(2 - k, 2):  # every parameter of an unfrozen layer trains
        assert all(parameter.requires_grad for parameter in layers[index].parameters())
    assert encoder_trainable - in_layers == (after_layers if k else set())
    assert model.encoder_frozen == (k == 0)
    assert all(parameter.requires_grad for parameter in model.heads.parameters())


def test_apply_freeze_is_declarative_and_reports_counts(tiny_bert_dir: Path) -> None:
    model = make_model(tiny_bert_dir)
    model.apply_freeze("top:1+head:topic")
    report = model.parameter_report()
    assert report["heads"]["topic"] == {"trainable": 0, "frozen": 99, "total": 99}
    assert report["heads"]["sentiment"] == {"trainable": 66, "frozen": 0, "total": 66}
    layer = sum(p.numel() for p in model.encoder.transformer_layers()[1].parameters())
    assert report["shared"]["trainable"] == layer
    assert report["total"]["trainable"] == layer + 66
    assert report["total"]["total"] == sum(p.numel() for p in model.parameters())
    model.apply_freeze("encoder")  # replaces, not adds to, the previous spec
    assert trainable_names(model) == {n for n, _ in model.named_parameters() if n.startswith("heads.")}
    assert model.encoder_frozen
    model.apply_freeze("none")
    assert trainable_names(model) == {n for n, _ in model.named_parameters()}
    assert not model.encoder_frozen


def test_a_frozen_encoder_stays_in_eval_mode_so_cached_embeddings_match(tiny_bert_dir: Path) -> None:
    model = make_model(tiny_bert_dir).train()
    model.freeze_encoder()
    assert model.heads.training and not model.encoder.training
    model.train()
    assert model.heads.training and not model.encoder.training
    model.apply_freeze("top:1")
    assert model.encoder.training
    model.apply_freeze("encoder")
    assert not model.encoder.training
    model.eval().apply_freeze("none")
    assert not model.encoder.training and not model.heads.training
    model.train()
    assert model.encoder.training


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("top:-1", "out of range; the encoder has 2 transformer layers"),
        ("top:3", "out of range; the encoder has 2 transformer layers"),
        ("top:two", "whole number"),
        ("head:nope", "known tasks are: topic, sentiment"),
        ("banana", "valid specs are: none, encoder, top:K, head:NAME"),
        ("", "empty"),
        ("encoder+top:1", "sets the encoder twice"),
        ("none+head:topic", "use it alone"),
        ("encoder+head:topic+head:sentiment", "nothing to train"),
    ],
)
def test_bad_freeze_specs_are_clear_and_change_nothing(tiny_bert_dir: Path, spec: str, message: str) -> None:
    model = make_model(tiny_bert_dir)
    model.apply_freeze("head:topic")
    before = trainable_names(model)
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        model.apply_freeze(spec)
    assert trainable_names(model) == before


# ---------------------------------------------------------------------- save and load


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_save_load_round_trip_gives_identical_logits(tiny_dir: Path, tmp_path: Path, head: str) -> None:
    model = make_model(tiny_dir, head=head).eval()
    with torch.no_grad():  # move the heads off their initialisation so a fresh init cannot pass
        for parameter in model.heads.parameters():
            parameter.add_(0.5)
    model.save(tmp_path / "saved")
    files = {path.relative_to(tmp_path / "saved").as_posix() for path in (tmp_path / "saved").rglob("*")}
    assert {CONFIG_NAME, WEIGHTS_NAME, "encoder/modules.json", "encoder/model.safetensors"} <= files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pkl", ".pth"))]
    config = json.loads((tmp_path / "saved" / CONFIG_NAME).read_text())
    assert config["format_version"] == 1 and config["head"] == head
    assert config["tasks"][0] == {"name": "topic", "labels": ["business", "food", "sports"]}
    assert config["encoder"]["embedding_dim"] == model.encoder.embedding_dim

    loaded = MultiTaskModel.load(tmp_path / "saved", device="cpu")
    assert not loaded.training and loaded.tasks == model.tasks
    features = batch(model)
    with torch.no_grad():
        expected, actual = model(features), loaded(features)
    for task in ("topic", "sentiment"):
        torch.testing.assert_close(actual[task], expected[task], rtol=0, atol=0)


@pytest.fixture
def saved(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return make_model(tiny_bert_dir).save(tmp_path / "saved")


def test_save_refuses_a_non_empty_folder_unless_overwrite(tiny_bert_dir: Path, saved: Path) -> None:
    model = make_model(tiny_bert_dir, head="mlp")
    with pytest.raises(InvalidInputError, match="not empty"):
        model.save(saved)
    model.save(saved, overwrite=True)
    assert json.loads((saved / CONFIG_NAME).read_text())["head"] == "mlp"


def test_weights_from_another_task_set_are_a_checkpoint_error(tiny_bert_dir: Path, saved: Path) -> None:
    other_tasks = [TaskSpec("topic", ["a", "b", "c", "d"]), TaskSpec("intent", ["x", "y"])]
    other = make_model(tiny_bert_dir, tasks=other_tasks).save(saved.parent / "other")
    (saved / WEIGHTS_NAME).write_bytes((other / WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError) as caught:
        MultiTaskModel.load(saved)
    message = str(caught.value)
    assert str(saved / WEIGHTS_NAME) in message and "does not match" in message
    assert "heads.sentiment.1.weight" in message and "heads.intent.1.weight" in message
    assert "heads.topic.1.weight has shape (4, 32) but the config needs (3, 32)" in message


def test_corrupt_or_missing_files_are_checkpoint_errors(saved: Path) -> None:
    weights = saved / WEIGHTS_NAME
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(weights)) + ".*not a readable safetensors file"):
        MultiTaskModel.load(saved)
    weights.unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(weights)) + " is missing"):
        MultiTaskModel.load(saved)
    weights.write_bytes(good)

    config = saved / CONFIG_NAME
    text = config.read_text()
    config.write_text(text[:-20])
    with pytest.raises(CheckpointError, match=re.escape(str(config)) + " is not valid JSON"):
        MultiTaskModel.load(saved)
    config.write_text(text.replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(CheckpointError, match="format_version 99"):
        MultiTaskModel.load(saved)
    config.unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(config)) + " is missing"):
        MultiTaskModel.load(saved)
    with pytest.raises(CheckpointError, match="is not a folder"):
        MultiTaskModel.load(saved / "nowhere")


def test_extra_tensors_in_the_weights_file_are_a_checkpoint_error(saved: Path) -> None:
    weights = saved / WEIGHTS_NAME
    state = load_file(str(weights))
    state["heads.extra.weight"] = torch.zeros(2, 2)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"unexpected \['heads.extra.weight'\]"):
        MultiTaskModel.load(saved)


def test_build_model_seeds_fresh_heads_or_loads_a_trained_folder(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from sentence_mtl.model.multitask import build_model

    first = build_model(TASKS, tiny_bert_dir, head="mlp", device="cpu", seed=7)
    second = build_model(TASKS, tiny_bert_dir, head="mlp", device="cpu", seed=7)
    for key, value in first.heads.state_dict().items():
        assert torch.equal(value, second.heads.state_dict()[key])
    first.save(tmp_path / "saved")
    other_tasks = [TaskSpec("unused", ["x", "y"])]  # a trained folder brings its own tasks and heads
    loaded = build_model(other_tasks, init_from=tmp_path / "saved", device="cpu")
    assert loaded.tasks == first.tasks and loaded.head_type == "mlp"
    for key, value in first.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_loading_a_training_run_folder_points_at_its_best_model(saved: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    saved.rename(run / "best")
    with pytest.raises(CheckpointError, match=re.escape(f"did you mean {run / 'best'}?")):
        MultiTaskModel.load(run)
    (run / "last").mkdir()
    (run / "best").rename(run / "last" / "model")
    with pytest.raises(CheckpointError, match=re.escape(f"did you mean {run / 'last' / 'model'}?")):
        MultiTaskModel.load(run / "last")  # a last/ checkpoint keeps its model one level down
