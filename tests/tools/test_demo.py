"""tools/demo.py on an image, a folder and a video; its errors; and the drawing helpers it uses."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.utils.visualize import class_colour, draw_detections, overlay_heatmap
from tests.conftest import load_script
from tests.inference.test_predictor import CLASS_NAMES, tiny_config, write_checkpoint

demo = load_script("tools/demo.py")

VIDEO_FRAMES = 3
VIDEO_SIZE = (48, 32)  # (width, height)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", tiny_config())


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def run_demo(checkpoint: Path, source: Path, out: Path, *extra: str) -> int:
    # Score threshold 0 keeps every one of the top-100 detections of the random-init model.
    return demo.main(["--checkpoint", str(checkpoint), "--input", str(source), "--output", str(out),
                      "--device", "cpu", "--no-progress", "--score-thr", "0", *extra])


def check_records(out: Path, file_names: set[str], *, video: bool = False) -> list[dict]:
    records = json.loads((out / "detections.json").read_text())
    assert {r["file_name"] for r in records} == file_names
    keys = {"file_name", "bbox", "score", "category_name", "category_id", "label"} | ({"frame"} if video else set())
    for record in records:
        assert set(record) == keys
        assert len(record["bbox"]) == 4 and all(np.isfinite(record["bbox"]))  # random init: sizes may be < 0
        assert record["category_name"] == CLASS_NAMES[record["label"]]
        assert record["category_id"] == record["label"] + 1
        assert 0 <= record["score"] <= 1
    return records


def test_single_image_with_heatmap(checkpoint: Path, tmp_path: Path) -> None:
    source = write_image(tmp_path / "photo.png", 40, 72)
    assert run_demo(checkpoint, source, tmp_path / "out", "--show-heatmap") == 0
    for name in ("photo.jpg", "photo_heatmap.jpg"):
        image = cv2.imread(str(tmp_path / "out" / name))
        assert image is not None and image.shape == (40, 72, 3)
    records = check_records(tmp_path / "out", {"photo.png"})
    assert len(records) == 100  # topk with threshold 0


def test_an_ltrb_checkpoint_with_flip(tmp_path: Path) -> None:
    ttf = tiny_config("model.head.box=ltrb", "target.box=gaussian_area", "target.heatmap=elliptical",
                      "loss.box.type=giou")
    checkpoint = write_checkpoint(tmp_path / "ttf.pth", ttf)
    source = write_image(tmp_path / "photo.png", 40, 72)
    assert run_demo(checkpoint, source, tmp_path / "out", "--flip", "--show-heatmap") == 0
    records = check_records(tmp_path / "out", {"photo.png"})
    assert len(records) == 100
    expected = demo.Detector.from_checkpoint(checkpoint, device="cpu", flip=True)(cv2.imread(str(source)))
    x1, y1, x2, y2 = expected.boxes[0].tolist()
    assert records[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
    assert all(r["bbox"][2] >= 0 and r["bbox"][3] >= 0 for r in records)  # ltrb distances are never negative


def test_score_threshold_filters(checkpoint: Path, tmp_path: Path) -> None:
    source = write_image(tmp_path / "photo.jpg", 40, 72)
    assert run_demo(checkpoint, source, tmp_path / "out", "--score-thr", "1.0") == 0
    assert json.loads((tmp_path / "out" / "detections.json").read_text()) == []


def test_multi_scale_keep_resolution(checkpoint: Path, tmp_path: Path) -> None:
    source = write_image(tmp_path / "photo.png", 40, 72)
    assert run_demo(checkpoint, source, tmp_path / "out", "--scales", "0.5", "1.0", "--resize", "pad", "--flip") == 0
    assert cv2.imread(str(tmp_path / "out" / "photo.jpg")).shape == (40, 72, 3)
    records = check_records(tmp_path / "out", {"photo.png"})
    assert 0 < len(records) <= 100  # merged passes, top-100 kept
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True)


def test_folder_of_two_images(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a.jpg", 30, 50, seed=1)
    write_image(folder / "b.png", 60, 20, seed=2)
    (folder / "notes.txt").write_text("not an image")
    assert run_demo(checkpoint, folder, tmp_path / "out") == 0
    assert cv2.imread(str(tmp_path / "out" / "a.jpg")).shape == (30, 50, 3)
    assert cv2.imread(str(tmp_path / "out" / "b.jpg")).shape == (60, 20, 3)
    check_records(tmp_path / "out", {"a.jpg", "b.png"})


def test_video(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, VIDEO_SIZE)
    for index in range(VIDEO_FRAMES):
        writer.write(np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), 60 * index, dtype=np.uint8))
    writer.release()
    assert run_demo(checkpoint, source, tmp_path / "out") == 0
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip_det.mp4"))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    assert len(frames) == VIDEO_FRAMES and frames[0].shape == (VIDEO_SIZE[1], VIDEO_SIZE[0], 3)
    records = check_records(tmp_path / "out", {"clip.avi"}, video=True)
    assert sorted({r["frame"] for r in records}) == list(range(VIDEO_FRAMES))


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("absent.jpg", None, "absent.jpg does not exist"),
        ("broken.jpg", "garbage", "cannot read image"),
        ("empty", "folder", "holds no images"),
        ("notes.txt", "text", "unknown extension '.txt'"),
        ("broken.mp4", "garbage", "cannot open video"),
    ],
)
def test_input_errors(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, make: str | None, message: str
) -> None:
    source = tmp_path / name
    if make == "folder":
        source.mkdir()
    elif make is not None:
        source.write_bytes(b"this is not an image or a video")
    assert run_demo(checkpoint, source, tmp_path / "out") == 1
    line = error_line(capsys)
    assert message in line and name in line


def test_checkpoint_without_config_needs_config_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_checkpoint(tmp_path / "bare.pth", tiny_config(), drop=("config",))
    source = write_image(tmp_path / "photo.jpg", 20, 20)
    assert run_demo(path, source, tmp_path / "out") == 1
    assert "bare.pth has no 'config'" in error_line(capsys)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "_base_: " + str(Path(__file__).resolve().parents[2] / "configs" / "shapes_resnet18.yaml") + "\n"
        "data: {input_size: [64, 64]}\nmodel: {neck: {channels: [16, 16, 16]}, head: {head_conv: 8}}\n"
        "runtime: {amp: off}\n"
    )
    assert run_demo(path, source, tmp_path / "out", "--config", str(config)) == 0


def test_output_must_not_be_the_input_folder(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    write_image(tmp_path / "a.jpg", 10, 10)
    assert run_demo(checkpoint, tmp_path, tmp_path) == 1
    assert "would overwrite" in error_line(capsys)


# ----------------------------------------------------------------------------- visualize


def test_draw_detections_hand_checked() -> None:
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 30, 50, 55], [0, 0, 5, 5]], dtype=np.float32)
    drawn = draw_detections(image, boxes, np.array([0.9, 0.1]), np.array([2, 0]), CLASS_NAMES, score_thr=0.5)
    assert image.max() == 0  # drawn on a copy
    colour = np.array(class_colour(2))
    np.testing.assert_array_equal(drawn[55, 30], colour)  # bottom edge of the kept box
    np.testing.assert_array_equal(drawn[45, 30], [0, 0, 0])  # its inside stays untouched
    assert drawn[:8, :8].max() == 0  # the 0.1 box is below the threshold: not drawn
    assert drawn[20:30, 10:50].any()  # the label patch sits above the box


def test_draw_detections_empty_and_errors() -> None:
    image = np.full((20, 20, 3), 7, dtype=np.uint8)
    np.testing.assert_array_equal(draw_detections(image, np.zeros((0, 4)), [], [], CLASS_NAMES), image)
    with pytest.raises(ValueError, match="detection 0 has label 9"):
        draw_detections(image, np.array([[1, 1, 5, 5]]), [0.9], [9], CLASS_NAMES)
    with pytest.raises(ValueError, match="differ in length"):
        draw_detections(image, np.array([[1, 1, 5, 5]]), [0.9, 0.8], [0], CLASS_NAMES)


def test_class_colours_differ() -> None:
    assert len({class_colour(label) for label in range(len(CLASS_NAMES))}) == len(CLASS_NAMES)


def test_overlay_heatmap_blend() -> None:
    image = np.full((6, 8, 3), 100, dtype=np.uint8)
    heat = np.zeros((2, 3, 4), dtype=np.float32)
    heat[1] = 1.0  # max over classes is 1 everywhere
    full = overlay_heatmap(image, heat, alpha=1.0)
    hot = cv2.applyColorMap(np.array([[255]], dtype=np.uint8), cv2.COLORMAP_JET)[0, 0]
    assert full.shape == (6, 8, 3) and np.all(full == hot)
    np.testing.assert_array_equal(overlay_heatmap(image, heat[0], alpha=0.0), image)
    np.testing.assert_array_equal(overlay_heatmap(image, heat), overlay_heatmap(image, heat[1]))
    with pytest.raises(ValueError, match="heatmap must be"):
        overlay_heatmap(image, np.zeros((0, 0)))


def test_folder_with_an_unreadable_image_goes_on_and_fails_at_the_end(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a.jpg", 30, 50, seed=1)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    write_image(folder / "c.png", 20, 20, seed=2)
    assert run_demo(checkpoint, folder, tmp_path / "out") == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "1 of 3 images could not be read and were skipped: broken.jpg" in errors[0]
    assert "WARNING" in err and "cannot read image" in err
    check_records(tmp_path / "out", {"a.jpg", "c.png"})
    assert not (tmp_path / "out" / "broken.jpg").exists()


def test_a_second_run_into_the_same_output_is_refused(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_image(tmp_path / "photo.png", 40, 72)
    assert run_demo(checkpoint, source, tmp_path / "out") == 0
    before = (tmp_path / "out" / "detections.json").stat().st_mtime_ns
    assert run_demo(checkpoint, source, tmp_path / "out", "--score-thr", "0.5") == 1
    assert "detections.json exists (an earlier run); pass another --output or --overwrite" in error_line(capsys)
    assert (tmp_path / "out" / "detections.json").stat().st_mtime_ns == before
    assert run_demo(checkpoint, source, tmp_path / "out", "--overwrite") == 0
