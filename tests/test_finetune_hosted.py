"""``finetune`` on a model partitioned into host regions and a tensorgate core (a VAD-like
model: an STFT/Conv front end and a Conv/Sigmoid head that onnxruntime runs around an
LSTM), with samples stacked along an extra leading axis since the model has a static
batch of 1.  The torch twin trains the core only: the prefix runs once, the teacher is
the imported model's values where the core hands over to the head."""

from __future__ import annotations

import numpy as np
import pytest
from host_models import VadLike, vad_like

from tensorgate.errors import PassError
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module
from tensorgate.passes import PassManager
from tensorgate.passes.finetune import Finetune, Objective, dataset_of, finetune, synthetic_inputs
from tensorgate.passes.trained_region import trained_region

torch = pytest.importorskip("torch")
from tensorgate.passes.torch_model import TorchModel

CASE = VadLike(hidden=8, channels=6)
SAMPLES = 24


def hosted_module():
    return PassManager.parse("canonicalize, dce").run(import_onnx(vad_like(CASE)))


def stacked_inputs(seed: int = 0, samples: int = SAMPLES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((samples, 1, CASE.samples)).astype(np.float32),
            "state": (0.3 * rng.standard_normal((samples, 2, 1, CASE.hidden))).astype(np.float32)}


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(path, **stacked_inputs())
    return path


def test_the_trained_core_is_what_depends_on_weights():
    module = hosted_module()
    region = trained_region(module)
    hosts = module.ops_of("host")
    assert len(hosts) == 2
    assert hosts[0] in region.prefix.ops and not any(op.kind == "host" for op in region.core.ops)
    assert [op.kind for op in region.core.ops if op.kind == "lstm"] == ["lstm"]
    assert all(op in module.ops for op in region.core.ops)  # the same ops: training them trains the module
    assert [v.name for v in region.prefix.outputs] == [v.name for v in region.core.inputs]
    suffix_reads = {v.name for v in hosts[1].operands}
    assert {v.name for v in region.core.outputs} == suffix_reads | {"stateN"}


def test_a_model_without_host_regions_is_its_own_core():
    from decomposed import lstm_module

    from tensorgate.ir.linear_map import DenseMap

    rng = np.random.default_rng(0)
    module = lstm_module([DenseMap(rng.standard_normal((16, 3)).astype(np.float32))],
                         [DenseMap(rng.standard_normal((16, 4)).astype(np.float32))], 4, 3, seq=2, batch="batch")
    region = trained_region(module)
    assert region.core is module and region.prefix is None


def test_the_twin_of_the_core_on_the_prefix_outputs_gives_the_teachers_values(data):
    """Undecomposed, the student is the teacher: the core's torch twin, mapped over the
    stacked samples, computes from the prefix's outputs (onnxruntime, once) what the
    imported model computes on every sample, to float32 rounding."""
    objective = Objective(hosted_module(), Finetune(data=data))
    assert objective.data.stacked and len(objective.data) == SAMPLES
    with torch.no_grad():
        values = TorchModel(objective.region.core)(objective.data.inputs, objective.names, stacked=True)
    assert sorted(objective.data.targets) == sorted(objective.names)
    for name, target in objective.data.targets.items():
        assert values[name].shape == target.shape
        np.testing.assert_allclose(values[name].numpy(), target, rtol=1e-4, atol=1e-5)


def test_finetune_trains_the_core_and_leaves_the_host_regions(data):
    module = hosted_module()
    PassManager.parse("decompose{method=tt weights=all d=2 max-rank=1 dense-fallback=false}").run(module)
    hosts = [op.attrs["model"] for op in module.ops_of("host")]
    before = [m.tensors() for m in module.ops_of("lstm")[0].attrs["w"] + module.ops_of("lstm")[0].attrs["r"]]
    history = finetune(module, Finetune(data=data, epochs=3, lr=0.02, batch=8))
    assert history[-1].train.loss < history[0].train.loss
    assert [op.attrs["model"] for op in module.ops_of("host")] == hosts
    after = module.ops_of("lstm")[0].attrs["w"] + module.ops_of("lstm")[0].attrs["r"]
    assert all(m.format == "tt" for m in after)
    assert any(not np.array_equal(a, b) for old, new in zip(before, after)
               for a, b in zip(old.values(), new.tensors().values()))
    one_call = {name: array[0] for name, array in stacked_inputs().items()}
    assert np.isfinite(run_module(module, one_call)["output"]).all()


def test_what_stacked_samples_need_is_named(tmp_path):
    module = hosted_module()
    inputs = stacked_inputs()
    cases = {
        "mixed": ({"input": inputs["input"], "state": inputs["state"][0]},
                  "inputs input stack their samples along an extra leading axis and state do not"),
        "shape": ({**inputs, "input": np.zeros((SAMPLES, 1, CASE.samples + 1), np.float32)},
                  r"stacked samples of f32\[1,28\] need \[samples, 1, 28\]"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(PassError, match=message):
            PassManager.parse(f"finetune{{data={tmp_path / f'{name}.npz'}}}").run(module.copy())
    with pytest.raises(PassError, match="labels with stacked samples"):
        dataset_of(tmp_path / "x.npz", module, inputs, np.zeros(SAMPLES, np.int64))


def test_samples_along_the_axis_fixed_at_one_are_stacked_samples():
    """8 samples of an input ``[1, F]`` given as ``[8, F]`` (and of a state ``[2, 1, H]``
    as ``[2, 8, H]``) are the same data set as the stacked form (issue 15, item 8)."""
    module = hosted_module()
    stacked = stacked_inputs()
    along = {}
    for value in module.inputs:
        axis = list(value.type.shape).index(1)
        along[value.name] = np.concatenate(list(stacked[value.name]), axis=axis)
    data, reference = dataset_of(None, module, along, None), dataset_of(None, module, stacked, None)
    assert data.stacked and len(data) == len(reference) == SAMPLES
    for name, array in reference.inputs.items():
        np.testing.assert_array_equal(data.inputs[name], array)


# --- augmentation ------------------------------------------------------------------------------


def test_synthetic_inputs_are_mixups_and_noisy_copies_of_the_samples():
    data = dataset_of(None, hosted_module(), stacked_inputs(), None)
    made = synthetic_inputs(data, 3, 0.3, np.random.default_rng(5))
    again = synthetic_inputs(data, 3, 0.3, np.random.default_rng(5))
    assert len(made) == 3 * SAMPLES and made.labels is None
    for name, array in made.inputs.items():
        np.testing.assert_array_equal(array, again.inputs[name])
        mixups = array[:len(made) // 2]
        low, high = data.inputs[name].min(axis=0), data.inputs[name].max(axis=0)
        assert (mixups >= low - 1e-6).all() and (mixups <= high + 1e-6).all()  # convex combinations
        assert not np.isin(array, data.inputs[name]).all()


def test_augmented_inputs_are_labelled_by_the_teacher_through_the_front_end(data):
    """The synthetic inputs run through the prefix like the samples, and their targets are
    the imported model's: the undecomposed twin computes them from the prefix outputs."""
    objective = Objective(hosted_module(), Finetune(data=data, augment=2))
    train = objective.augmented(objective.data, np.random.default_rng(0))
    assert len(train) == 3 * SAMPLES and len(train.source) == 3 * SAMPLES
    with torch.no_grad():
        values = TorchModel(objective.region.core)(train.inputs, objective.names, stacked=True)
    for name, target in train.targets.items():
        np.testing.assert_allclose(values[name].numpy(), target, rtol=1e-4, atol=1e-5)


def test_augment_needs_the_teacher(tmp_path):
    from tensorgate.errors import PipelineError

    with pytest.raises(PipelineError, match="option 'augment' needs the teacher"):
        Finetune(data=tmp_path / "x.npz", augment=1, teacher="none")
