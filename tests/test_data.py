"""Class folders with unreadable files: such an image is dropped from its batch, never replaced by another one."""

from collections import Counter
from pathlib import Path

import torch
from classification_data import make_image_folders
from PIL import Image
from timm.data import create_transform

from emo.training.data import SkippedImages, SkippingImageFolder, readable_loader


def test_unreadable_images_are_dropped_not_substituted(tmp_path):
    val = make_image_folders(tmp_path, train_per_class=1, val_per_class=5, size=40)['val']
    (val / 'green_blob' / 'a.jpg').write_text('a text file named .jpg')
    (val / 'green_blob' / 'b.jpg').write_bytes(b'')
    (val / 'red_blob' / 'c.png').write_bytes((val / 'red_blob' / '000.png').read_bytes()[:120])  # truncated
    dataset = SkippingImageFolder(val, create_transform(input_size=(3, 32, 32)))
    assert len(dataset) == 23  # the listing has every file; the batches have the readable ones only
    skipped, labels, images = SkippedImages(), Counter(), 0
    for batch in readable_loader(dataset, batch_size=4, shuffle=False):
        skipped.add(batch.skipped)
        if batch.images is not None:
            assert batch.images.shape[1:] == (3, 32, 32) and len(batch.images) == len(batch.targets)
            labels.update(batch.targets.tolist())
            images += len(batch.images)
    assert images == 20 and sorted(labels.values()) == [5, 5, 5, 5]  # no class gains another's images
    assert sorted(p.rsplit('/', 1)[1] for p in skipped.errors) == ['a.jpg', 'b.jpg', 'c.png']

    record = tmp_path / 'skipped.txt'
    skipped.write(record)
    assert len(record.read_text().splitlines()) == 3
    SkippedImages().write(record)  # a run that skipped nothing leaves no earlier run's list behind
    assert not record.exists()


def test_a_batch_with_no_readable_image_is_empty_not_filled(tmp_path):
    folder = tmp_path / 'val'
    for name in ('cat', 'dog'):
        (folder / name).mkdir(parents=True)
        (folder / name / 'x.jpg').write_bytes(b'\x00' * 10)
    batches = list(readable_loader(SkippingImageFolder(folder, torch.nn.Identity()), batch_size=2))
    assert len(batches) == 1 and batches[0].images is None and len(batches[0].skipped) == 2


def test_every_counted_image_is_in_the_dataset_with_its_class(tmp_path):
    from emo.training.data import check_image_folders

    val = make_image_folders(tmp_path, train_per_class=1, val_per_class=3, size=40)['val']
    # timm's folder reader knows png/jpg/jpeg only and labels by the innermost folder: a class of .webp images
    # vanished and renumbered the classes after it, and CLASS/sub/x.png was dropped
    for png in (val / 'h_stripes').iterdir():
        Image.open(png).save(png.with_suffix('.webp'))
        png.unlink()
    (val / 'red_blob' / 'sub').mkdir()
    (val / 'red_blob' / '000.png').rename(val / 'red_blob' / 'sub' / '000.png')
    # links back up the tree looped forever or brought in other classes' images; hidden folders are no classes
    (val / 'green_blob' / 'again').symlink_to(val / 'green_blob', target_is_directory=True)
    (val / 'green_blob' / 'up').symlink_to(val, target_is_directory=True)
    (val / '.ipynb_checkpoints').mkdir()
    (val / '.ipynb_checkpoints' / 'x.png').write_bytes((val / 'v_stripes' / '000.png').read_bytes())
    names = check_image_folders(None, val)
    assert names == ['green_blob', 'h_stripes', 'red_blob', 'v_stripes']
    dataset = SkippingImageFolder(val, class_map={c: i for i, c in enumerate(names)})
    assert len(dataset) == 12 and len(SkippingImageFolder(val)) == 12
    counts = Counter(names[target] for _, target in dataset.samples)
    assert counts == {'green_blob': 3, 'h_stripes': 3, 'red_blob': 3, 'v_stripes': 3}
    assert all(names[t] == Path(p).relative_to(val).parts[0] for p, t in dataset.samples)
