"""alexnet_tf.data.imagenet: the ImageNet layouts, label files and their errors."""

import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

from alexnet_tf.data import imagenet

TRAIN_WNIDS = ("n01440764", "n01443537", "n01484850")


def _jpeg(path, seed=0, size=(40, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")


def _train(root, per_class=2):
    # Created in reverse order, so sorted order is not creation order.
    for c, wnid in enumerate(reversed(TRAIN_WNIDS)):
        for i in reversed(range(per_class)):
            _jpeg(os.path.join(root, "train", wnid, f"{wnid}_{i}.JPEG"), seed=10 * c + i)
    return root


def _flat_val(root, n):
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, n + 1)]
    for i, name in reversed(list(enumerate(names))):
        _jpeg(os.path.join(root, "val", name), seed=100 + i)
    return names


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _write_meta(path, pairs):
    """A devkit-like meta.mat: struct array `synsets` with ILSVRC2012_ID and WNID fields."""
    scipy_io = pytest.importorskip("scipy.io")
    synsets = np.zeros((len(pairs), 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])
    for i, (ilsvrc_id, wnid) in enumerate(pairs):
        synsets[i, 0] = (np.array([[ilsvrc_id]], np.uint16), np.array([wnid]), np.array([f"words {wnid}"]))
    scipy_io.savemat(str(path), {"synsets": synsets})
    return str(path)


# ---------------------------------------------------------------- class folders


def test_class_folders_sorted_classes_and_files_any_image_extension(tmp_path):
    root = str(tmp_path)
    _train(root)
    extra = os.path.join(root, "train", "n01443537")
    Image.new("RGB", (8, 8)).save(os.path.join(extra, "a_upper.PNG"), "PNG")
    Image.new("RGB", (8, 8)).save(os.path.join(extra, "b_lower.jpg"), "JPEG")
    _write(os.path.join(extra, "README.txt"), "not an image")  # ignored
    _write(os.path.join(extra, ".hidden.JPEG"), "")  # hidden: ignored
    os.makedirs(os.path.join(root, "train", ".cache"))  # hidden folder: not a class

    paths, labels, wnids = imagenet.list_split(root, "train")

    assert wnids == TRAIN_WNIDS
    names = [os.path.relpath(p, os.path.join(root, "train")) for p in paths]
    assert names == [
        "n01440764/n01440764_0.JPEG", "n01440764/n01440764_1.JPEG",
        "n01443537/a_upper.PNG", "n01443537/b_lower.jpg",
        "n01443537/n01443537_0.JPEG", "n01443537/n01443537_1.JPEG",
        "n01484850/n01484850_0.JPEG", "n01484850/n01484850_1.JPEG"]
    assert labels == [0, 0, 1, 1, 1, 1, 2, 2]
    assert all(os.path.isfile(p) for p in paths)


def test_val_class_folders_take_the_training_class_order(tmp_path):
    root = str(tmp_path)
    _train(root)
    _jpeg(os.path.join(root, "val", "n01484850", "v.JPEG"))  # only the last class

    paths, labels, wnids = imagenet.list_split(root, "val")

    assert wnids == TRAIN_WNIDS and labels == [2] and len(paths) == 1


def test_val_class_folder_unknown_to_train_is_an_error(tmp_path):
    root = str(tmp_path)
    _train(root)
    _jpeg(os.path.join(root, "val", "n09999999", "v.JPEG"))
    with pytest.raises(ValueError, match="n09999999"):
        imagenet.list_split(root, "val")


# ---------------------------------------------------------------- flat validation


def test_flat_val_with_one_wnid_per_line(tmp_path):
    root = str(tmp_path)
    _train(root)
    names = _flat_val(root, 4)
    labels_file = _write(tmp_path / "imagenet_2012_validation_synset_labels.txt",
                         "n01484850\nn01440764\nn01484850\nn01443537\n\n")

    paths, labels, wnids = imagenet.list_split(root, "val", val_labels_file=labels_file)

    assert wnids == TRAIN_WNIDS
    assert [os.path.basename(p) for p in paths] == names
    assert labels == [2, 0, 2, 1]


def test_flat_val_with_devkit_ids_maps_through_meta_mat(tmp_path):
    root = str(tmp_path)
    _train(root)
    _flat_val(root, 4)
    # ILSVRC2012_IDs in an order that is not the sorted wnids (as in the real devkit),
    # plus an ancestor synset (id > 1000 in the real file) that no image uses.
    meta = _write_meta(tmp_path / "meta.mat", [(1, "n01484850"), (2, "n01440764"),
                                               (3, "n01443537"), (4, "n01000000")])
    ground_truth = _write(tmp_path / "ILSVRC2012_validation_ground_truth.txt", "1\n3\n2\n1\n")

    _, labels, wnids = imagenet.list_split(root, "val", val_labels_file=ground_truth, val_meta_file=meta)

    assert wnids == TRAIN_WNIDS
    # id 1 -> n01484850 (index 2), 3 -> n01443537 (1), 2 -> n01440764 (0). Reading the IDs
    # as sorted-wnid positions would give [0, 2, 1, 0] instead.
    assert labels == [2, 1, 0, 2]


def test_read_meta_mat(tmp_path):
    meta = _write_meta(tmp_path / "meta.mat", [(7, "n01443537"), (2, "n01440764")])
    assert imagenet.read_meta_mat(meta) == {7: "n01443537", 2: "n01440764"}


def test_meta_mat_without_synsets_is_an_error(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    path = str(tmp_path / "other.mat")
    scipy_io.savemat(path, {"x": np.ones(3)})
    with pytest.raises(ValueError, match="synsets"):
        imagenet.read_meta_mat(path)


def test_devkit_ids_without_meta_mat_is_an_error(tmp_path):
    root = str(tmp_path)
    _train(root)
    _flat_val(root, 2)
    ground_truth = _write(tmp_path / "gt.txt", "1\n2\n")
    with pytest.raises(ValueError, match="meta.mat"):
        imagenet.list_split(root, "val", val_labels_file=ground_truth)


def test_devkit_id_missing_from_meta_mat_is_an_error(tmp_path):
    root = str(tmp_path)
    _train(root)
    _flat_val(root, 2)
    meta = _write_meta(tmp_path / "meta.mat", [(1, "n01484850")])
    ground_truth = _write(tmp_path / "gt.txt", "1\n5\n")
    with pytest.raises(ValueError, match="ILSVRC2012_ID 5"):
        imagenet.list_split(root, "val", val_labels_file=ground_truth, val_meta_file=meta)


def test_meta_mat_without_scipy_names_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)  # makes `import scipy.io` fail
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        imagenet.read_meta_mat(str(tmp_path / "meta.mat"))


def test_flat_val_with_class_names_and_no_train_folder(tmp_path):
    root = str(tmp_path)
    _flat_val(root, 2)
    labels_file = _write(tmp_path / "labels.txt", "b\na\n")
    _, labels, wnids = imagenet.list_split(root, "val", val_labels_file=labels_file,
                                           class_names=["a", "b"])
    assert wnids == ("a", "b") and labels == [1, 0]


# ---------------------------------------------------------------- errors


def test_missing_root_and_split_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        imagenet.list_split(str(tmp_path / "nowhere"), "train")
    with pytest.raises(FileNotFoundError, match=r"train.*<wnid>"):
        imagenet.list_split(str(tmp_path), "train")


def test_split_without_images_is_an_error(tmp_path):
    os.makedirs(tmp_path / "train")
    _write(tmp_path / "train" / "notes.txt", "no images")
    with pytest.raises(ValueError, match="holds no images"):
        imagenet.list_split(str(tmp_path), "train")


def test_empty_class_folder_is_an_error(tmp_path):
    root = str(tmp_path)
    _train(root)
    os.makedirs(os.path.join(root, "train", "n01496331"))
    with pytest.raises(ValueError, match=r"n01496331.*holds no images"):
        imagenet.list_split(root, "train")


def test_labels_count_mismatch_is_an_error(tmp_path):
    root = str(tmp_path)
    _train(root)
    _flat_val(root, 3)
    labels_file = _write(tmp_path / "labels.txt", "n01440764\nn01443537\n")
    with pytest.raises(ValueError, match=r"2 labels but .* holds 3 images"):
        imagenet.list_split(root, "val", val_labels_file=labels_file)


def test_flat_val_without_labels_file_is_an_error(tmp_path):
    root = str(tmp_path)
    _train(root)
    _flat_val(root, 2)
    with pytest.raises(ValueError, match="val_labels_file"):
        imagenet.list_split(root, "val")


def test_flat_val_label_not_among_training_classes_names_it(tmp_path):
    root = str(tmp_path)
    _train(root)
    _flat_val(root, 2)
    labels_file = _write(tmp_path / "labels.txt", "n01440764\nn09999999\n")
    with pytest.raises(ValueError, match="n09999999"):
        imagenet.list_split(root, "val", val_labels_file=labels_file)


def test_flat_val_without_train_or_class_names_is_an_error(tmp_path):
    root = str(tmp_path)
    _flat_val(root, 1)
    labels_file = _write(tmp_path / "labels.txt", "n01440764\n")
    with pytest.raises(ValueError, match="training split"):
        imagenet.list_split(root, "val", val_labels_file=labels_file)


def test_mixed_layout_and_mixed_label_formats_are_errors(tmp_path):
    root = str(tmp_path)
    _train(root)
    _jpeg(os.path.join(root, "train", "loose.JPEG"))
    with pytest.raises(ValueError, match="both class folders"):
        imagenet.list_split(root, "train")
    mixed = _write(tmp_path / "mixed.txt", "n01440764\n3\n")
    with pytest.raises(ValueError, match="mixes"):
        imagenet.read_val_labels(mixed)


# ---------------------------------------------------------------- synset names


def test_read_synset_names_space_and_tab_formats(tmp_path):
    kaggle = _write(tmp_path / "LOC_synset_mapping.txt",
                    "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    inception = _write(tmp_path / "imagenet_metadata.txt",
                       "n00004475\torganism, being\nn01440764\ttench, Tinca tinca\nn09999999\n")
    assert imagenet.read_synset_names(kaggle) == {
        "n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus"}
    assert imagenet.read_synset_names(inception) == {
        "n00004475": "organism, being", "n01440764": "tench, Tinca tinca", "n09999999": ""}
    with pytest.raises(FileNotFoundError):
        imagenet.read_synset_names(str(tmp_path / "missing.txt"))


def test_symlink_loops_and_dangling_links_are_named_and_skipped(tmp_path, caplog):
    # A `*.jpg` symlink loop used to stop the listing (and so training, statistics and
    # build_tfrecords) with OSError: Too many levels of symbolic links.
    root = _train(str(tmp_path))
    class_dir = os.path.join(root, "train", TRAIN_WNIDS[0])
    os.symlink("loop.jpg", os.path.join(class_dir, "loop.jpg"))
    os.symlink("missing.jpg", os.path.join(class_dir, "dangling.jpg"))
    os.symlink("self_dir", os.path.join(root, "train", "self_dir"))
    with caplog.at_level("WARNING", logger="alexnet_tf.data.imagenet"):
        paths, labels, order = imagenet.list_split(root, "train")
    assert order == TRAIN_WNIDS
    assert len(paths) == 6 and labels == [0, 0, 1, 1, 2, 2]
    assert not any(os.path.basename(p) in ("loop.jpg", "dangling.jpg") for p in paths)
    text = caplog.text
    assert f"{os.path.join(class_dir, 'loop.jpg')} - Too many levels of symbolic links" in text
    assert f"{os.path.join(class_dir, 'dangling.jpg')} - a symbolic link to nothing" in text
    assert f"{os.path.join(root, 'train', 'self_dir')} - Too many levels" in text


def test_a_dangling_class_folder_link_is_named(tmp_path, caplog):
    root = _train(str(tmp_path))
    os.symlink(str(tmp_path / "nowhere"), os.path.join(root, "train", "n09999999"))
    with caplog.at_level("WARNING", logger="alexnet_tf.data.imagenet"):
        _, _, order = imagenet.list_split(root, "train")
    assert order == TRAIN_WNIDS
    assert f"{os.path.join(root, 'train', 'n09999999')} - a symbolic link to nothing" in caplog.text


def test_a_class_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
    # (chmod 000 does not stop root, so the refusal of the listing is simulated.)
    root = _train(str(tmp_path))
    blocked = os.path.join(root, "train", TRAIN_WNIDS[1])
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == blocked:
            raise PermissionError(13, "Permission denied", blocked)
        return real_scandir(path)

    monkeypatch.setattr(imagenet.os, "scandir", scandir)
    with pytest.raises(ValueError, match=re.escape(f"Folder {blocked!r} cannot be listed "
                                                   "(Permission denied)")):
        imagenet.list_split(root, "train")
