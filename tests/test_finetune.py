"""The ``finetune`` pass and the torch twin of a module it trains."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from decomposed import classifier_module, lstm_module, random_feeds, random_map, recurrent_module
from models import assert_close_f32

from tensorgate.errors import PassError, PipelineError
from tensorgate.ir.linear_map import DenseMap
from tensorgate.ir.verifier import verify_module
from tensorgate.passes import PassManager
from tensorgate.passes.finetune import Finetune, classification_loss, finetune
from tensorgate.passes.torch_model import TorchModel
from tensorgate.interpreter import run_module

torch = pytest.importorskip("torch")

H, I, T, CLASSES = 8, 8, 6, 4


def maps(fmt, rng, count=1, out_factors=(4, 8), in_factors=(2, 4), **kwargs):
    return [random_map(fmt, rng, out_factors, in_factors, **kwargs) for _ in range(count)]


# --- the torch twin ---------------------------------------------------------------------------


def twin_cases():
    rng = np.random.default_rng(0)
    small = dict(hidden=4, input_size=6)
    yield "tt input, dense recurrent", lstm_module(maps("tt", rng, 1, (4, 4), (2, 3)),
                                                   maps("dense", rng, 1, (16,), (4,)), **small)
    yield "every format and option", lstm_module(
        [random_map("tt", rng, (3, 6), (2, 4), out_pad=2, in_pad=2), random_map("ht", rng, (4, 4), (3, 2))],
        [random_map("bt", rng, (4, 4), (2, 2)), random_map("tt", rng, (4, 4), (2, 2))],
        direction="bidirectional", peepholes=True, sequence_lens=True, initial_h=True, initial_c=True, clip=0.7,
        **small)
    yield "per gate, reverse, input_forget", lstm_module(
        maps("dense", rng, 4, (4,), (6,)), maps("tt", rng, 4, (2, 2), (2, 2)), direction="reverse",
        sequence_lens=True, input_forget=1, **small)
    yield "activations", lstm_module(
        maps("dense", rng, 1, (16,), (6,)), maps("tt", rng, 1, (4, 4), (2, 2)), peepholes=True, clip=1.0,
        activations=["HardSigmoid", "ScaledTanh", "Affine", ], activation_alpha=[0.3, 0.7, 1.3],
        activation_beta=[0.2, 0.9, 0.1], **small)
    yield "batch major", lstm_module(maps("tt", rng, 1, (4, 4), (2, 3)), maps("ht", rng, 1, (4, 4), (2, 2)),
                                     layout=1, initial_h=True, sequence_lens=True, **small)
    yield "gru, tt input, lbr=1", recurrent_module(
        "gru", maps("tt", rng, 1, (3, 4), (2, 3)), maps("dense", rng, 1, (12,), (4,)), linear_before_reset=1, **small)
    yield "gru, stacked decomposed R, lbr=0, bidirectional", recurrent_module(
        "gru", maps("dense", rng, 2, (12,), (6,)), maps("ht", rng, 2, (3, 4), (2, 2)), direction="bidirectional",
        sequence_lens=True, initial_h=True, clip=0.8, **small)
    yield "gru, per gate, batch major, activations", recurrent_module(
        "gru", maps("bt", rng, 3, (2, 2), (2, 3)), maps("tt", rng, 3, (2, 2), (2, 2)), layout=1,
        activations=["HardSigmoid", "Softsign"], activation_alpha=[0.3], activation_beta=[0.4], **small)
    yield "rnn relu, bidirectional", recurrent_module(
        "rnn", maps("tt", rng, 2, (2, 2), (2, 3)), maps("dense", rng, 2, (4,), (4,)), direction="bidirectional",
        activations=["Relu", "Relu"], sequence_lens=True, **small)
    yield "classifier, tt head", classifier_module(
        maps("ht", rng, 1, (4, 4), (2, 3)), maps("dense", rng, 1, (16,), (4,)), classes=5,
        head=random_map("tt", rng, (2, 3), (2, 2), out_pad=1), **small)


@pytest.mark.parametrize("case", list(twin_cases()), ids=lambda case: case[0])
def test_torch_model_computes_what_the_runtime_does(case):
    _, module = case
    feeds = random_feeds(module, np.random.default_rng(1))
    expected = run_module(module, feeds)
    actual = TorchModel(module)(feeds)
    for name, value in expected.items():
        assert_close_f32(actual[name].detach().numpy(), value, name)


def test_parameters_are_the_cores_and_write_back_keeps_formats():
    rng = np.random.default_rng(2)
    module = classifier_module(maps("tt", rng), maps("bt", rng, in_factors=(2, 4)), H, I, CLASSES)
    module = PassManager.parse("order-contractions").run(module)
    lstm = module.ops[0]
    before = {key: lstm.attrs[key][0] for key in ("w", "r")}
    model = TorchModel(module)
    names = model.named_weights()
    assert {f"op0.w.0.g{k}" for k in range(2)} <= names.keys() and "op0.r.0.b0.core" in names
    assert "op0.bias" in names and any(name.endswith(".bias") and name != "op0.bias" for name in names)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.25)
    model.write_back()
    for key, old in before.items():
        new = lstm.attrs[key][0]
        assert type(new) is type(old) and new.meta() == old.meta() and new.schedule is not None
        for name, tensor in new.tensors().items():
            assert tensor.dtype == old.tensors()[name].dtype
            np.testing.assert_allclose(tensor, old.tensors()[name] + np.float32(0.25))
    verify_module(module)


def test_trainable_maps_keeps_the_other_weights():
    rng = np.random.default_rng(3)
    module = classifier_module(maps("tt", rng), maps("dense", rng, 1, (32,), (8,)), H, I, CLASSES)
    model = TorchModel(module, trainable="maps")
    assert all(".bias" not in name and "peepholes" not in name for name in model.named_weights())


# --- the loss ------------------------------------------------------------------------------


def reference_focal(logits: np.ndarray, labels: np.ndarray, gamma: float, alpha) -> float:
    """Lin et al. (2017), written out: mean of -α_t (1 - p_t)^γ log p_t."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    p_t = probs[np.arange(len(labels)), labels]
    alpha_t = 1.0 if alpha is None else np.asarray(alpha)[labels] if np.ndim(alpha) else alpha
    return float(np.mean(-alpha_t * (1 - p_t) ** gamma * np.log(p_t)))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [None, 0.25, [0.1, 0.5, 1.0, 2.0, 0.7]])
def test_focal_loss_is_the_formula(gamma, alpha):
    rng = np.random.default_rng(4)
    logits = (3 * rng.standard_normal((64, 5))).astype(np.float64)
    labels = rng.integers(0, 5, 64)
    alpha_tensor = None if alpha is None else torch.tensor(alpha, dtype=torch.float64)
    actual = classification_loss(torch.tensor(logits), torch.tensor(labels), "focal", gamma, alpha_tensor)
    assert float(actual) == pytest.approx(reference_focal(logits, labels, gamma, alpha), rel=1e-12)


def test_cross_entropy_is_focal_with_gamma_zero_and_torch_cross_entropy():
    rng = np.random.default_rng(5)
    logits, labels = torch.tensor(rng.standard_normal((32, 3))), torch.tensor(rng.integers(0, 3, 32))
    ce = classification_loss(logits, labels, "ce", None, None)
    assert float(ce) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-12)
    assert float(ce) == pytest.approx(float(classification_loss(logits, labels, "focal", 0.0, None)), rel=1e-12)


# --- training --------------------------------------------------------------------------------


def teacher_and_data(tmp_path, samples=256, seed=6):
    """A dense classifier, inputs, and its predictions as labels (a task it solves)."""
    rng = np.random.default_rng(seed)
    teacher = classifier_module(maps("dense", rng, 1, (32,), (8,)), maps("dense", rng, 1, (32,), (8,)), H, I,
                                CLASSES, seq=T, head=DenseMap((2 * rng.standard_normal((CLASSES, H))).astype(np.float32)))
    x = rng.standard_normal((T, samples, I)).astype(np.float32)
    labels = run_module(teacher, {"x": x})["probs"].argmax(-1)
    path = tmp_path / "data.npz"
    np.savez(path, x=x, labels=labels)
    return teacher, path, x, labels


def accuracy(module, x, labels) -> float:
    return float(np.mean(run_module(module, {"x": x})["probs"].argmax(-1) == labels))


@pytest.mark.parametrize("method", ["tt", "bt", "ht"])
def test_finetuning_a_decomposed_model_wins_back_accuracy(tmp_path, method):
    teacher, path, x, labels = teacher_and_data(tmp_path)
    rank = "tucker-rank=1" if method == "bt" else "max-rank=1"
    student = PassManager.parse(f"decompose{{method={method} weights=all d=2 {rank}}}").run(teacher.copy())
    formats = [m.format for key in ("w", "r") for m in student.ops[0].attrs[key]]
    assert formats == [method, method]
    assert all("rel_error" in m.meta() for key in ("w", "r") for m in student.ops[0].attrs[key])
    before = accuracy(student, x, labels)
    history = finetune(student, Finetune(data=path, epochs=6, lr=0.02, batch=32))
    assert history[-1].train.loss < 0.8 * history[0].train.loss
    assert accuracy(student, x, labels) > before + 0.1
    assert [m.format for key in ("w", "r") for m in student.ops[0].attrs[key]] == formats
    assert all("rel_error" not in m.meta() for key in ("w", "r") for m in student.ops[0].attrs[key])
    verify_module(student)


def test_pipeline_text_report_progress_and_validation(tmp_path, capsys):
    teacher, path, x, labels = teacher_and_data(tmp_path, samples=120)
    report = tmp_path / "history.json"
    student = PassManager.parse(f"decompose{{method=tt weights=all d=2 max-rank=1}}, finetune{{data={path} "
                                f"epochs=3 batch=16 loss=focal gamma=1.0 alpha=0.5 val-split=0.25 "
                                f"report={report}}}").run(teacher.copy())
    history = json.loads(report.read_text())
    assert [epoch["epoch"] for epoch in history] == [1, 2, 3]
    assert set(history[0]["validation"]) == {"loss", "accuracy", "macro_recall", "agreement"}
    assert history[0]["validation"]["agreement"] is None  # no teacher with labels unless asked
    assert all(0 <= e[split]["macro_recall"] <= 1 for e in history for split in ("train", "validation"))
    err = capsys.readouterr().err
    assert "epoch 3/3" in err and "validation: loss" in err
    verify_module(student)


def test_training_is_repeatable_with_a_seed(tmp_path):
    teacher, path, _, _ = teacher_and_data(tmp_path, samples=64)
    base = PassManager.parse("decompose{method=ht weights=input d=2 max-rank=1}").run(teacher)

    def trained(seed):
        module = base.copy()
        history = finetune(module, Finetune(data=path, epochs=2, batch=16, lr=0.01, val_split=0.25, seed=seed))
        return module.ops[0].attrs["w"][0].tensors(), history

    (first, history_a), (second, history_b), (other, _) = trained(1), trained(1), trained(2)
    assert history_a == history_b
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert not all(np.array_equal(first[name], other[name]) for name in first)


# --- errors -------------------------------------------------------------------------------------


def test_without_torch_the_pass_says_how_to_install_it(tmp_path, monkeypatch):
    _, path, _, _ = teacher_and_data(tmp_path, samples=8)
    monkeypatch.setitem(sys.modules, "torch", None)
    module = classifier_module(maps("tt", np.random.default_rng(0)), maps("dense", np.random.default_rng(0), 1,
                                                                          (32,), (8,)), H, I, CLASSES)
    with pytest.raises(PassError, match=r"PyTorch, which is not installed: pip install .tensorgate\[train\]. \(torch==2.13.0\)"):
        Finetune(data=path).run(module)


def test_passes_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; from tensorgate.passes import PASSES, PassManager; "
            "PassManager.parse('finetune{data=x.npz}'); print(sorted(PASSES)[0])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def classifier():
    rng = np.random.default_rng(7)
    return classifier_module(maps("tt", rng), maps("dense", rng, 1, (32,), (8,)), H, I, CLASSES, seq=T)


def bad_data(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays,message", [
    (dict(labels=np.zeros(4, np.int64)), r"lacks x .*inputs x and, optionally, 'labels'"),
    (dict(x=np.zeros((T, 4, I), np.float32), labels=np.zeros(4), extra=np.zeros(1)), "unknown arrays extra"),
    (dict(x=np.zeros((T, 4, I), np.float32), labels=np.zeros(4)), "'labels' must be a non-empty 1-d integer"),
    (dict(x=np.zeros((T, 4), np.float32), labels=np.zeros(4, np.int64)), r"input 'x' has shape \[6, 4\], expected rank 3"),
    (dict(x=np.zeros((T, 5, I), np.float32), labels=np.zeros(4, np.int64)), "has 5 samples along its batch axis 1, but there are 4"),
    (dict(x=np.zeros((T, 4, I + 1), np.float32), labels=np.zeros(4, np.int64)), r"expected f32\[6,batch,8\]"),
    (dict(x=np.full((T, 4, I), np.nan, np.float32), labels=np.zeros(4, np.int64)), "must hold finite numbers"),
    (dict(x=np.zeros((T, 4, I), np.float32), labels=np.array([0, 1, 2, 4])), r"class indices in \[0, 4\), got values from 0 to 4"),
])
def test_bad_data_is_named(tmp_path, classifier, arrays, message):
    with pytest.raises(PassError, match=message):
        Finetune(data=bad_data(tmp_path, **arrays)).run(classifier)


def test_bad_files_and_options(tmp_path, classifier):
    with pytest.raises(PassError, match="data file '.*missing.npz' does not exist"):
        Finetune(data=tmp_path / "missing.npz").run(classifier)
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(PassError, match="is not a readable .npz"):
        Finetune(data=tmp_path / "text.npz").run(classifier)
    with pytest.raises(PipelineError, match="option 'data' is required"):
        PassManager.parse("finetune{epochs=2}")
    with pytest.raises(PipelineError, match="'gamma' applies to loss=focal only"):
        PassManager.parse("finetune{data=x.npz gamma=2}")
    with pytest.raises(PipelineError, match="'lr' must be > 0"):
        PassManager.parse("finetune{data=x.npz lr=0}")
    data = bad_data(tmp_path, x=np.zeros((T, 4, I), np.float32), labels=np.zeros(4, np.int64))
    with pytest.raises(PassError, match="alpha has 3 values, the model has 4 classes"):
        Finetune(data=data, alpha=(1.0, 2.0, 3.0)).run(classifier)
    with pytest.raises(PassError, match="no output 'nope'"):
        Finetune(data=data, output="nope").run(classifier)


def test_models_that_are_not_plain_classifiers(tmp_path):
    rng = np.random.default_rng(8)
    sequence = lstm_module(maps("tt", rng), maps("dense", rng, 1, (32,), (8,)), H, I, seq=4, batch=4)
    data = bad_data(tmp_path, x=np.zeros((4, 4, I), np.float32), labels=np.zeros(4, np.int64))
    with pytest.raises(PassError, match="has outputs Y, Y_h, Y_c; say which to train with output=NAME"):
        Finetune(data=data).run(sequence)
    with pytest.raises(PassError, match=r"output 'Y_h' is f32\[1,4,8\]; a classifier's \[batch, classes\]"):
        Finetune(data=data, output="Y_h").run(sequence)
    static = classifier_module(maps("tt", rng), maps("dense", rng, 1, (32,), (8,)), H, I, CLASSES, seq=4, batch=4)
    with pytest.raises(PassError, match=r"axes \[0, 1\] all of shape \[4, 4, 8\] match the 4 labels; name the batch dim"):
        Finetune(data=data).run(static)
