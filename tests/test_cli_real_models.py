"""The command line on models with host regions: ``--bind`` and ``--shape`` on compile and
inspect, warnings as ``warning:`` lines, the partition in inspect, and one clean error
line for bad option values."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from host_models import VadLike, vad_feeds, vad_like, wrong_output_shape
from models import assert_close_f32, run_onnxruntime
from tensorgate.cli import main

CASE = VadLike(branch_on_sr=True, computed_weights=True)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def vad_file(tmp_path):
    path = tmp_path / "vad.onnx"
    onnx.save(vad_like(CASE), path)
    return path


def test_compile_with_a_bound_input_runs_like_onnxruntime(capsys, tmp_path, vad_file):
    out = tmp_path / "artifact"
    code, _, err = run_cli(capsys, "compile", str(vad_file), "--bind", "sr=16000", "--shape", "input=1x28",
                           "-o", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["name"] for i in manifest["inputs"]] == ["input", "state"]
    assert [r["kind"] for r in manifest["partition"]["regions"]] == ["host", "tensorgate", "host"]
    feeds = vad_feeds(CASE)
    np.savez(tmp_path / "in.npz", **feeds)
    code, _, err = run_cli(capsys, "run", str(out), "--input", str(tmp_path / "in.npz"),
                           "--output", str(tmp_path / "y.npz"))
    assert code == 0, err
    expected = run_onnxruntime(vad_file, {**feeds, "sr": np.array(16000)})
    with np.load(tmp_path / "y.npz") as result:
        for name in expected:
            assert_close_f32(result[name], expected[name], name)


def test_inspect_shows_the_partition_and_the_mac_share(capsys, vad_file):
    code, out, _ = run_cli(capsys, "inspect", str(vad_file), "--bind", "sr=16000")
    assert code == 0
    assert "partition (host regions run in onnxruntime)" in out
    assert "Conv x2" in out and "in tensorgate regions (" in out and "% " in out.replace("%,", "% ")


def test_inspect_of_an_artifact_shows_its_partition(capsys, tmp_path, vad_file):
    out = tmp_path / "artifact"
    assert run_cli(capsys, "compile", str(vad_file), "--bind", "sr=8000", "-o", str(out))[0] == 0
    code, text, _ = run_cli(capsys, "inspect", str(out), "--json")
    partition = json.loads(text)["partition"]
    assert code == 0 and partition["regions"][1]["ops"]["lstm"] == 1 and 0 < partition["tensorgate_share"] < 1


def test_warnings_are_one_line_each(capsys, tmp_path):
    path = tmp_path / "crnn.onnx"
    onnx.save(wrong_output_shape(), path)
    code, _, err = run_cli(capsys, "compile", str(path), "-o", str(tmp_path / "out"))
    assert code == 0
    assert err.count("warning: ") == 1 and "graph output 'probs' is declared f32[1,seqlen]" in err


@pytest.mark.parametrize("argv, fragment", [
    (["--bind", "sr"], "'sr' is not NAME=VALUE"),
    (["--bind", "sr=fast"], "'fast' is not a number"),
    (["--shape", "input=1x-3"], "positive integers joined by x"),
])
def test_malformed_import_options_are_usage_errors(capsys, tmp_path, vad_file, argv, fragment):
    with pytest.raises(SystemExit) as info:
        main(["compile", str(vad_file), *argv, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and fragment in err and "Traceback" not in err


@pytest.mark.parametrize("argv, fragments", [
    (["--bind", "rate=1"], ["no input 'rate'", "its inputs: input, state, sr"]),
    (["--bind", "sr=16000", "--shape", "state=2x1"], ["--shape state", "does not fit the declared [2,1,5]"]),
])
def test_import_options_that_do_not_fit_the_model_get_one_clean_line(capsys, tmp_path, vad_file, argv, fragments):
    status, _, err = run_cli(capsys, "compile", str(vad_file), *argv, "-o", str(tmp_path / "out"))
    assert status == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    for fragment in fragments:
        assert fragment in err


def test_bind_on_an_artifact_is_a_usage_error(capsys, tmp_path, vad_file):
    out = tmp_path / "artifact"
    assert run_cli(capsys, "compile", str(vad_file), "--bind", "sr=16000", "-o", str(out))[0] == 0
    code, _, err = run_cli(capsys, "inspect", str(out), "--bind", "sr=16000")
    assert code == 2 and err.startswith("error: --bind and --shape apply to ONNX models")
