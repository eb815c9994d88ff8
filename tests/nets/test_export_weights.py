"""The graphs of one model share one weights file (ONNX external data), and run exactly as inline ones do."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, external_data_helper, numpy_helper

import app.nets.export as export
import app.nets.weights_file as weights_file
from app.manifest import export_files, exported_kinds
from app.nets.resnet import build
from app.paths import GRAPH_FILES, SERVING_GRAPHS, WEIGHTS_FILE_GLOB
from app.specs import CAM_METHODS
from tests.nets.test_models import _randomize_bn

NAME = "resnet20"


def _export_all(models_dir: Path, kinds: tuple[str, ...] = SERVING_GRAPHS) -> dict:
    return export.export_model(NAME, "init", models_dir, kinds=kinds, log=False)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet20@init, every serving graph, big tensors in the shared weights file."""
    models = tmp_path_factory.mktemp("shared")
    _export_all(models)
    return models / NAME / "init"


@pytest.fixture(scope="module")
def inline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same graphs with every tensor inline (no weights file)."""
    models = tmp_path_factory.mktemp("inline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(weights_file, "EXTERNAL_MIN_BYTES", 1 << 62)
        _export_all(models)
    return models / NAME / "init"


def _external_spans(graph: Path) -> list[tuple[str, int, int]]:
    proto = onnx.load(str(graph), load_external_data=False)
    spans = []
    for t in proto.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            info = external_data_helper.ExternalDataInfo(t)
            spans.append((info.location, info.offset, info.length))
    return spans


def _big_tensor_hashes(graph: Path) -> set[str]:
    """sha256 of every tensor of at least EXTERNAL_MIN_BYTES in an inline graph (initializers and Constants)."""
    proto = onnx.load(str(graph))
    tensors = list(proto.graph.initializer)
    tensors += [a.t for n in proto.graph.node if n.op_type == "Constant" for a in n.attribute if a.HasField("t")]
    return {hashlib.sha256(weights_file.tensor_bytes(t)).hexdigest() for t in tensors if weights_file.shareable(t)}


def _feeds(sess: ort.InferenceSession, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "image":
            feeds[i.name] = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
        elif i.name == "gates":
            feeds[i.name] = np.array([(1.0, 0.0, 0.5)[k % 3] for k in range(i.shape[0])], np.float32)
        elif i.name == "branch":
            feeds[i.name] = rng.uniform(0, 1, (2, 9)).astype(np.float32)
        elif i.name == "target":
            feeds[i.name] = np.array([3, 7], np.int64)
        elif i.name == "depth":  # the explain graph's levels: 0 runs every one
            feeds[i.name] = np.array(0, np.int64)
        elif i.name == "method":  # the explain graph's CAM method (see _run)
            feeds[i.name] = np.array(0, np.int64)
        else:
            raise AssertionError(f"unexpected input {i.name}")
    return feeds


def _run(graph: Path) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
    feeds = _feeds(sess)
    if "method" not in feeds:
        return sess.run(None, feeds)
    return [out for k in range(len(CAM_METHODS)) for out in sess.run(None, {**feeds, "method": np.array(k)})]


def test_integer_tensors_stay_inline_where_shape_inference_reads_them(tmp_path: Path) -> None:
    """Split sizes (int64) of 1 KB and more stay in the graph: ONNX Runtime reads them before external data."""
    from onnx import helper

    n = 130  # 130 int64 sizes: 1,040 bytes, past EXTERNAL_MIN_BYTES
    sizes = numpy_helper.from_array(np.ones(n, np.int64), "sizes")
    w = numpy_helper.from_array(np.arange(2 * n, dtype=np.float32).reshape(2, n), "w")  # 1,040 bytes of floats
    outs = [f"y{i}" for i in range(n)]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["s"]), helper.make_node("Split", ["s", "sizes"], outs, axis=1)],
        "split",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, n])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        [sizes, w],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    weights = weights_file.WeightsFile.fresh(tmp_path)
    assert weights.externalize(proto) > 0
    external = {t.name for t in proto.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    assert external == {"w"}  # the floats are shared, the sizes are not
    onnx.save(proto, str(tmp_path / "split.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "split.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": np.zeros((2, n), np.float32)})
    np.testing.assert_array_equal(np.concatenate(got, axis=1), np.arange(2 * n, dtype=np.float32).reshape(2, n))


def test_weights_file_holds_each_distinct_tensor_once(shared: Path, inline: Path) -> None:
    manifest = json.loads((shared / "manifest.json").read_text())
    weights = shared / manifest["weights_file"]["file"]
    assert [p.name for p in shared.glob(WEIGHTS_FILE_GLOB)] == [weights.name]
    assert manifest["weights_file"]["bytes"] == weights.stat().st_size
    spans = {s for kind in SERVING_GRAPHS for s in _external_spans(shared / GRAPH_FILES[kind])}
    assert {loc for loc, _, _ in spans} == {weights.name}
    ordered = sorted((off, length) for _, off, length in spans)
    assert all(off % weights_file.WEIGHTS_ALIGN == 0 for off, _ in ordered)
    assert all(a + la <= b for (a, la), (b, _) in zip(ordered, ordered[1:], strict=False)), "no overlaps"
    assert ordered[-1][0] + ordered[-1][1] == weights.stat().st_size, "nothing past the last tensor"
    data = weights.read_bytes()
    hashes = [hashlib.sha256(data[off : off + length]).hexdigest() for off, length in ordered]
    assert len(set(hashes)) == len(hashes) == len(manifest["weights_file"]["tensors"]), "each tensor once"
    assert {h: tuple(span) for h, span in manifest["weights_file"]["tensors"].items()} == dict(
        zip(hashes, ordered, strict=True)
    ), "the manifest's index is the file's"
    wanted = set().union(*(_big_tensor_hashes(inline / GRAPH_FILES[k]) for k in SERVING_GRAPHS))
    assert set(hashes) == wanted, "exactly the distinct big tensors of the inline graphs"


def test_graphs_together_weigh_one_set_of_weights_plus_structure(shared: Path, inline: Path) -> None:
    files = export_files(shared.parent.parent, NAME, "init")
    weights = next(p for p in files if p.suffix == ".bin")
    total = sum(p.stat().st_size for p in files)
    inline_total = sum((inline / GRAPH_FILES[k]).stat().st_size for k in SERVING_GRAPHS)
    params = sum(p.numel() for p in build(NAME).parameters()) * 4
    assert weights.stat().st_size < 1.5 * params, "about one set of weights (plus the backward's own tensors)"
    structure = sum((shared / GRAPH_FILES[k]).stat().st_size for k in SERVING_GRAPHS)
    assert structure < 0.1 * inline_total, "the graphs keep only their structure and small tensors"
    assert total < 0.4 * inline_total


@pytest.mark.parametrize("kind", SERVING_GRAPHS)
def test_every_graph_kind_runs_as_its_inline_export_does(shared: Path, inline: Path, kind: str) -> None:
    got, want = _run(shared / GRAPH_FILES[kind]), _run(inline / GRAPH_FILES[kind])
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g, w, equal_nan=True), f"{kind}: outputs differ from the inline export"


def test_reexport_of_one_graph_appends_nothing_it_has(shared: Path, tmp_path: Path) -> None:
    models = tmp_path / "m"
    shutil.copytree(shared, models / NAME / "init")
    d = models / NAME / "init"
    before = json.loads((d / "manifest.json").read_text())["weights_file"]
    want = _run(d / "grad-running.onnx")
    (d / "grad-running.onnx").unlink()
    assert exported_kinds(models, NAME, "init") == set(SERVING_GRAPHS) - {"grad-running"}
    manifest = export.export_model(NAME, "init", models, kinds=("running", "grad-running"), log=False)
    assert manifest["weights_file"] == before, "same file, same bytes, same tensors"
    assert [p.name for p in d.glob(WEIGHTS_FILE_GLOB)] == [before["file"]]
    assert set(manifest["graphs"]) == set(SERVING_GRAPHS)
    assert all(np.array_equal(a, b) for a, b in zip(_run(d / "grad-running.onnx"), want, strict=True))


def test_new_graph_appends_only_its_new_tensors(tmp_path: Path) -> None:
    first = _export_all(tmp_path, kinds=("running",))["weights_file"]
    second = _export_all(tmp_path, kinds=("batch", "grad-running"))["weights_file"]
    assert second["file"] == first["file"] and first["tensors"].items() < second["tensors"].items()
    d = tmp_path / NAME / "init"
    spans = [s for k in ("running", "batch", "grad-running") for s in _external_spans(d / GRAPH_FILES[k])]
    data = (d / second["file"]).read_bytes()
    hashes = {(off, length): hashlib.sha256(data[off : off + length]).hexdigest() for _, off, length in spans}
    assert len(set(hashes.values())) == len(hashes) == len(second["tensors"]), "no tensor stored twice"


def test_fresh_export_writes_a_fresh_weights_file(tmp_path: Path) -> None:
    from app.nets.weights import import_weights

    def weights(seed: int) -> None:
        model = build(NAME, seed=seed)
        _randomize_bn(model, seed=seed)
        torch.save(model.state_dict(), tmp_path / f"{seed}.pt")
        import_weights(tmp_path / f"{seed}.pt", NAME, tmp_path / "m", "mine")

    weights(1)
    old = export.export_model(NAME, "mine", tmp_path / "m", kinds=("running",), log=False)["weights_file"]
    weights(2)  # other weights under the same name: nothing of the old file may be carried over
    new = export.export_model(NAME, "mine", tmp_path / "m", kinds=("running",), log=False)["weights_file"]
    d = tmp_path / "m" / NAME / "mine"
    assert new["file"] != old["file"] and [p.name for p in d.glob(WEIGHTS_FILE_GLOB)] == [new["file"]]
    assert len(new["tensors"]) == len(old["tensors"]) and new["bytes"] == old["bytes"], "only the new weights' tensors"
    assert not set(new["tensors"]) & set(old["tensors"])


def test_a_missing_or_short_weights_file_means_not_exported(shared: Path, tmp_path: Path) -> None:
    models = tmp_path / "m"
    shutil.copytree(shared, models / NAME / "init")
    d = models / NAME / "init"
    weights = d / json.loads((d / "manifest.json").read_text())["weights_file"]["file"]
    assert exported_kinds(models, NAME, "init") == set(SERVING_GRAPHS)
    assert weights in export_files(models, NAME, "init")
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 1)
    assert exported_kinds(models, NAME, "init") == set() and export_files(models, NAME, "init") == []
    weights.unlink()
    assert exported_kinds(models, NAME, "init") == set()


def test_exports_of_one_directory_take_turns(tmp_path: Path) -> None:
    probe = (
        "import fcntl, sys\n"
        "f = open(sys.argv[1], 'a+')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n"
    )
    d = tmp_path / NAME / "init"

    def other_process_can_lock() -> bool:
        rc = subprocess.run([sys.executable, "-c", probe, str(d / ".export.lock")], check=False).returncode
        assert rc in (0, 3)
        return rc == 0

    with weights_file.directory_lock(d):
        assert not other_process_can_lock(), "another export of the directory waits"
    assert other_process_can_lock()
