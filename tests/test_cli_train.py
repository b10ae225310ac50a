"""The training commands end to end, as a student types them: demo, train (+ --resume), eval,
predict, inspect, import-masks, and one-line errors (exit 2) for the usual mistakes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minimrcnn.data import make_shapes


def run_cli(*args, cwd=None, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "minimrcnn", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo run shrunk to seconds: 10 images, 6 iterations, the data cached in XDG_CACHE_HOME."""
    root = tmp_path_factory.mktemp("demo")
    env = {"XDG_CACHE_HOME": str(root / "cache")}
    r = run_cli("demo", "--iters", "6", "--num-images", "10", cwd=root, env=env)
    return root, env, r


def test_demo_writes_everything_and_ends_with_the_ap_line(demo):
    root, env, r = demo
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("bbox AP=") and " segm AP=" in last, last
    out = root / "minimrcnn-demo"
    for name in ("val.json", "metrics.json", "metrics.jsonl", "predictions.png", "curves.png",
                 "model_final.npz", "checkpoint.npz", "results/bbox.json", "results/segm.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"bbox AP={metrics['bbox']['AP']:.3f} segm AP={metrics['segm']['AP']:.3f}" == last
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if "val" not in r] == [1, 2, 3, 4, 5, 6]
    assert records[-1] == {"iter": 6, "val": {"bbox": {"AP": metrics["bbox"]["AP"]},
                                              "segm": {"AP": metrics["segm"]["AP"]}}}
    # the data went to the cache, and a second run reuses it
    cached = os.listdir(root / "cache" / "minimrcnn")
    assert len([c for c in cached if c.startswith("shapes-10img")]) == 1


def test_predict_inspect_and_eval_read_the_demo_weights(demo, tmp_path):
    root, env, _ = demo
    weights = str(root / "minimrcnn-demo" / "model_final.npz")
    image = np.zeros((48, 64, 3), np.uint8)
    image[10:30, 20:40] = 200
    Image.fromarray(image).save(tmp_path / "img.png")

    r = run_cli("predict", "--weights", weights, "--image", str(tmp_path / "img.png"),
                "--out", str(tmp_path / "pred.png"), "--score-thresh", "0.0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(tmp_path / "pred.png").size[0] > 0

    r = run_cli("inspect", "--weights", weights, "--image", str(tmp_path / "img.png"),
                "--out", str(tmp_path / "stages"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert len([p for p in os.listdir(tmp_path / "stages") if p.endswith(".png")]) == 7

    r = run_cli("eval", "--weights", weights, "--data", "shapes", "--num-images", "10",
                "--out", str(tmp_path / "eval"), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    # the same weights on the same val split give the demo's AP
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["segm"] == \
        json.loads((root / "minimrcnn-demo" / "metrics.json").read_text())["segm"]


def test_train_on_a_coco_json_and_resume(tmp_path):
    paths = make_shapes(tmp_path / "data", 6, seed=1, image_size=64, num_val=2)
    common = ["--data", paths["train"], "--images", paths["image_dir"], "--val", paths["val"],
              "--out", str(tmp_path / "run"), "--set", "ims_per_batch=2", "min_size=64"]
    r = run_cli("train", *common, "--iters", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "bbox AP=" in r.stdout
    r = run_cli("train", *common, "--iters", "3", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if "val" not in r] == [1, 2, 3]
    assert [r["iter"] for r in records if "val" in r] == [2, 3]     # each run's final AP


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "missing.json", "--out", "o"], "not 'shapes', 'persons' or an existing COCO json"),
    (["train", "--data", "shapes", "--out", "o", "--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
    (["train", "--data", "shapes", "--out", "o", "--set", "base_lr"], "--set expects key=value"),
    (["train", "--data", "shapes", "--out", "o", "--iters", "0"], "--iters must be a positive integer"),
    (["eval", "--weights", "missing.npz", "--data", "shapes", "--out", "o"], "missing.npz"),
    (["predict", "--weights", "missing.npz", "--image", "x.png", "--out", "p.png"], "missing.npz"),
])
def test_user_mistakes_get_one_line_and_exit_2(args, message, tmp_path):
    r = run_cli(*args, cwd=tmp_path, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_train_on_a_coco_json_needs_its_images(tmp_path):
    paths = make_shapes(tmp_path / "data", 3, seed=1, image_size=64, num_val=1)
    r = run_cli("train", "--data", paths["train"], "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--images DIR" in r.stderr
    r = run_cli("train", "--data", paths["train"], "--images", paths["image_dir"], "--eval-every", "5",
                "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--eval-every 5 needs validation data: --val" in r.stderr


def test_import_masks_command_writes_a_coco_json(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    ids = np.zeros((20, 30), np.uint8)
    ids[2:8, 3:9], ids[10:18, 12:25] = 1, 2
    Image.fromarray(ids).save(tmp_path / "masks" / "a_mask.png")
    r = run_cli("import-masks", str(tmp_path / "images"), str(tmp_path / "masks"), "--out",
                str(tmp_path / "ann.json"), "--classes", "pedestrian")
    assert r.returncode == 0, r.stderr[-2000:]
    ann = json.loads((tmp_path / "ann.json").read_text())
    assert [c["name"] for c in ann["categories"]] == ["pedestrian"] and len(ann["annotations"]) == 2


def test_train_on_persons_turns_the_keypoint_head_on_and_scores_keypoints(tmp_path):
    r = run_cli("train", "--data", "persons", "--num-images", "6", "--iters", "2", "--out",
                str(tmp_path / "run"), "--set", "ims_per_batch=2", env={"XDG_CACHE_HOME": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics) >= {"bbox", "segm", "keypoints", "per_class"}
    assert "keypoints AP=" in r.stdout
    results = json.loads((tmp_path / "run" / "results" / "keypoints.json").read_text())
    assert results and len(results[0]["keypoints"]) == 17 * 3


def test_a_json_given_as_weights_and_a_missing_image_folder_are_named(tmp_path):
    (tmp_path / "w.json").write_text("{}")
    r = run_cli("predict", "--weights", str(tmp_path / "w.json"), "--image", "x.png", "--out", "p.png")
    assert r.returncode == 2 and "not a minimrcnn .npz checkpoint (not a NumPy .npz file)" in r.stderr
    assert "allow_pickle" not in r.stderr                 # never advise unpickling
    paths = make_shapes(tmp_path / "data", 2, seed=1, image_size=64, num_val=1)
    r = run_cli("train", "--data", paths["train"], "--images", str(tmp_path / "nowhere"), "--out",
                str(tmp_path / "o"))
    assert r.returncode == 2 and "the image folder" in r.stderr and "does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
