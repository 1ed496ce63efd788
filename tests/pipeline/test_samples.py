"""pipeline/samples.py: the sample images `up` draws."""
from PIL import Image

from pipeline.samples import write_samples
from tests.dying_writes import assert_died_of_a_full_disk, run_until_disk_full


def test_sample_image_cut_short_by_a_full_disk_is_drawn_again(tmp_path):
    proc = run_until_disk_full("from pathlib import Path\nfrom pipeline.samples import write_samples",
                               f"write_samples(Path({str(tmp_path)!r}))", limit=4096)
    assert_died_of_a_full_disk(proc)
    for path in write_samples(tmp_path):
        with Image.open(path) as im:
            im.load()  # a truncated PNG raises here
