"""`fastresnet predict` on images made here: odd sizes, grey, RGBA, JPEG, and three bad files."""

import csv
import importlib.util

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from conftest import calibrated
from fastresnet.bench import cli
from fastresnet.predict import predict, run
from fastresnet.predict.images import preprocessing, read_rgb

SIZE = dict(resize=72, crop=64)  # small images keep the test fast; the defaults are 256 / 224
GOOD = ["a.png", "b/grey.png", "b/rgba.png", "b/c/photo.jpg", "odd.JPEG"]
BAD = {"corrupt.jpg": "UnidentifiedImageError", "empty.png": "the file is empty", "truncated.jpg": "truncated"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "b" / "c").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (80, 75), dtype=np.uint8)).save(root / "b/grey.png")
    Image.fromarray(rng.integers(0, 256, (66, 70, 4), dtype=np.uint8), "RGBA").save(root / "b/rgba.png")
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(root / "b/c/photo.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (65, 300, 3), dtype=np.uint8)).save(root / "odd.JPEG", format="JPEG")
    (root / "corrupt.jpg").write_bytes(rng.integers(0, 256, 700, dtype=np.uint8).tobytes())
    (root / "empty.png").write_bytes(b"")
    jpeg = (root / "b/c/photo.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "notes.txt").write_text("not an image: not looked at")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A ResNet-18 of 10 classes with realistic BN statistics, saved as a state_dict."""
    model = calibrated(torchvision.models.resnet18(num_classes=10), image_size=64)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def eager_outputs(model, folder, names):
    x = torch.stack([preprocessing(**SIZE)(read_rgb(folder / n)) for n in names])
    with torch.no_grad():
        return model(x)


def test_each_readable_image_gets_eager_torchvisions_top1_and_the_bad_ones_are_named(folder, weights, tmp_path, capsys):
    model, path = weights
    out = tmp_path / "labels.csv"
    argv = ["predict", str(folder), "--model", "resnet18", "--weights", str(path), "--out", str(out),
            "--batch-size", "2", "--top-k", "3", "--resize", "72", "--crop", "64", "--workers", "1"]  # fmt: skip
    assert cli.main(argv) == 1  # some images were skipped
    err = capsys.readouterr().err
    for name, reason in BAD.items():
        assert f"skipped {folder / name}: " in err and reason in err.split(f"skipped {folder / name}: ")[1].splitlines()[0]
    rows = read_rows(out)
    assert [r["path"] for r in rows] == [str(folder / n) for n in sorted(GOOD)]
    logits = eager_outputs(model, folder, sorted(GOOD))
    probabilities = logits.double().softmax(1)
    for row, expected, p in zip(rows, logits.argmax(1), probabilities):
        assert int(row["class"]) == int(expected) == int(row["top1_class"])
        assert float(row["score"]) == pytest.approx(float(p.max()), rel=1e-4)
        top = p.topk(3).indices.tolist()
        assert [int(row[f"top{j}_class"]) for j in (1, 2, 3)] == top
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file was renamed onto the target


def test_a_glob_and_a_list_file_give_the_same_rows_as_the_folder(folder, weights, tmp_path):
    _, path = weights
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(folder / n) for n in sorted(GOOD)) + "\n")
    results = []
    for source in (folder, str(folder / "b" / "**" / "*.png"), listing):
        out = tmp_path / f"out{len(results)}.csv"
        summary = predict(source, "resnet18", out, weights=path, workers=0, **SIZE)
        assert len(summary.failed) == (len(BAD) if source is folder else 0)
        assert summary.written == summary.images - len(summary.failed)
        results.append({r["path"]: r["class"] for r in read_rows(out)})
    folder_rows, png_rows, listed_rows = results
    assert listed_rows == folder_rows
    assert png_rows == {k: v for k, v in folder_rows.items() if k.endswith(".png") and "/b/" in k}


def test_embed_writes_the_pooled_features(folder, weights, tmp_path):
    model, path = weights
    out = tmp_path / "features.csv"
    predict(folder / "a.png", "resnet18", out, weights=path, embed=True, workers=0, **SIZE)
    (row,) = read_rows(out)
    features = torch.tensor([float(row[f"f{j}"]) for j in range(512)])
    pooled = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        expected = pooled(preprocessing(**SIZE)(read_rgb(folder / "a.png"))[None]).flatten()
    assert torch.allclose(features, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert isinstance(model.fc, torch.nn.Linear)  # the user's model is not changed


def test_labels_name_the_classes(folder, weights, tmp_path):
    _, path = weights
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"digit {i}" for i in range(10)))
    out = tmp_path / "named.csv"
    predict(folder / "a.png", "resnet18", out, weights=path, labels=names, workers=0, **SIZE)
    (row,) = read_rows(out)
    assert row["label"] == f"digit {row['class']}"


def test_weights_that_do_not_fit_are_a_clear_error_at_start(weights, folder, tmp_path, capsys):
    _, path = weights
    out = tmp_path / "never.csv"
    assert cli.main(["predict", str(folder), "--model", "resnet34", "--weights", str(path), "--out", str(out)]) == 2
    assert "does not fit the model: it has no 'layer1.2.conv1.weight'" in capsys.readouterr().err
    wide = {k: v for k, v in torch.load(path, weights_only=True).items()}
    wide["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(wide, tmp_path / "wide.pth")
    with pytest.raises(ValueError, match=r"'conv1.weight' is \(64, 3, 3, 3\) in the file, \(64, 3, 7, 7\) in the model"):
        predict(folder, "resnet18", out, weights=tmp_path / "wide.pth")
    assert not out.exists()


@pytest.mark.parametrize(
    "source,out,message",
    [
        ("nowhere/", "x.csv", "is not a folder, an image, a list file or a glob pattern that exists"),
        ("{folder}/*.gif", "x.csv", "no images in pattern"),
        ("{folder}", "x.json", "expected a .csv or .parquet file name"),
    ],
)
def test_bad_sources_and_targets_are_refused_before_any_work(source, out, message, folder, tmp_path):
    with pytest.raises(ValueError, match=message):
        predict(source.format(folder=folder), "resnet18", tmp_path / out)


def test_parquet_output(folder, weights, tmp_path):
    _, path = weights
    out = tmp_path / "labels.parquet"
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(ValueError, match="writing .parquet needs pyarrow"):
            predict(folder, "resnet18", out, weights=path)
        return
    import pyarrow.parquet

    summary = predict(folder, "resnet18", out, weights=path, workers=0, **SIZE)
    table = pyarrow.parquet.read_table(out).to_pylist()
    assert [r["path"] for r in table] == [str(folder / n) for n in sorted(GOOD)] and len(summary.failed) == 3


@pytest.mark.parametrize("cpus,threads,workers", [(2, 2, 0), (16, 8, 8), (32, 8, 8), (4, 1, 3), (1, 2, 0)])
def test_decoders_take_only_the_cpus_the_model_leaves_free(cpus, threads, workers, monkeypatch):
    monkeypatch.setattr(run.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(run.torch, "get_num_threads", lambda: threads)
    assert run.default_workers() == workers


def test_the_ray_engine_gives_the_same_rows_on_a_local_two_cpu_cluster(folder, weights, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'fastresnet[ray]')")
    from fastresnet.predict.ray_engine import predict_with_ray

    _, path = weights
    local = predict(folder, "resnet18", tmp_path / "local.csv", weights=path, top_k=3, batch_size=2, workers=0, **SIZE)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # One actor of both CPUs (the default on one machine), then two of one CPU each.
        for actors, cpus in ((None, None), (2, 1)):
            out = tmp_path / f"ray{actors}.csv"
            summary = predict_with_ray(
                folder, "resnet18", out, weights=path, top_k=3, batch_size=2, actors=actors, cpus_per_actor=cpus, **SIZE
            )  # fmt: skip
            assert read_rows(out) == read_rows(tmp_path / "local.csv")
            assert sorted(summary.failed) == sorted(local.failed) and summary.written == local.written
    finally:
        ray.shutdown()


def test_predict_dataset_gives_the_rows_to_rays_writers(folder, weights, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'fastresnet[ray]')")
    parquet = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (the predict extra)")
    from fastresnet.predict.ray_engine import predict_dataset

    _, path = weights
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"digit {i}" for i in range(10)))
    options = dict(weights=path, batch_size=2, **SIZE)
    # top_k beyond the model's 10 classes: every row, readable or not, has top1..top10.
    predict(folder, "resnet18", tmp_path / "local.csv", top_k=12, labels=names, workers=0, **options)
    predict(folder, "resnet18", tmp_path / "features.csv", embed=True, workers=0, **options)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        predict_dataset(folder, "resnet18", top_k=12, labels=names, **options).write_parquet(str(tmp_path / "rows"))
        embedded = predict_dataset(folder, "resnet18", embed=True, **options).take_all()
    finally:
        ray.shutdown()
    rows = sorted(parquet.read_table(tmp_path / "rows").to_pylist(), key=lambda row: row["path"])
    readable = [{k: str(v) for k, v in row.items() if k != "error"} for row in rows if not row["error"]]
    assert readable == read_rows(tmp_path / "local.csv")  # the same values as the CSV's text
    unreadable = {row["path"]: row for row in rows if row["error"]}
    assert sorted(unreadable) == sorted(str(folder / name) for name in BAD)
    for name, reason in BAD.items():
        row = unreadable[str(folder / name)]
        assert reason in row["error"] and row["class"] == row["top10_class"] == -1 and row["label"] == ""
        assert "top11_class" not in row
    features = {row["path"]: row["features"] for row in embedded}
    for row in read_rows(tmp_path / "features.csv"):
        expected = [float(row[f"f{j}"]) for j in range(512)]
        assert features.pop(row["path"]).tolist() == pytest.approx(expected, rel=1e-6)
    assert sorted(features) == sorted(unreadable) and all(len(v) == 0 for v in features.values())


def test_the_command_passes_the_ray_options_through(folder, weights, tmp_path, monkeypatch):
    from fastresnet.predict import ray_engine

    calls = []

    def fake(source, model, out, **options):
        calls.append((source, model, out, options))
        return run.PredictSummary(images=8, written=5, failed=[("x.jpg", "broken")], seconds=1.0, out=out)

    monkeypatch.setattr(ray_engine, "predict_with_ray", fake)
    argv = ["predict", str(folder), "--model", "resnet18", "--out", str(tmp_path / "o.csv"), "--engine", "ray",
            "--actors", "2", "--cpus-per-actor", "1", "--address", "ray://head:10001", "--top-k", "2"]  # fmt: skip
    assert cli.main(argv) == 1  # one image skipped
    ((source, model, out, options),) = calls
    assert (source, model, out) == (str(folder), "resnet18", tmp_path / "o.csv")
    assert options["actors"] == 2 and options["cpus_per_actor"] == 1 and options["address"] == "ray://head:10001"
    assert options["top_k"] == 2 and "workers" not in options


def test_the_preprocessing_of_named_torchvision_weights(folder, weights, tmp_path):
    model, path = weights
    out = tmp_path / "named.csv"
    predict(folder / "b/c/photo.jpg", "resnet18", out, weights=path, transforms="ResNet18_Weights.IMAGENET1K_V1", workers=0)
    transform = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    with torch.no_grad():
        expected = model(transform(read_rgb(folder / "b/c/photo.jpg"))[None]).argmax(1)
    assert [int(r["class"]) for r in read_rows(out)] == expected.tolist()
    with pytest.raises(ValueError, match="not a torchvision weights name such as"):
        predict(folder, "resnet18", tmp_path / "never.csv", transforms="ResNet18_Weights.BEST")
