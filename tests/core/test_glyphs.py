"""The glyphs dataset: the class set, the face split, determinism, the disk cache and the missing-font message."""
import numpy as np
import pytest
import torch

from robustloss_core import datasets as ds
from robustloss_core import engine, glyphs

needs_fonts = pytest.mark.skipif(not glyphs.files_present(glyphs.FONT_ROOT),
                                 reason=f"CJK fonts not installed ({glyphs.INSTALL})")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLOSS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gb2312_level1_is_the_3755_hanzi_in_code_order():
    chars = glyphs.gb2312_level1()
    assert len(chars) == len(set(chars)) == 3755 == glyphs.MAX_CLASSES
    assert all("\u4e00" <= c <= "\u9fff" for c in chars)   # CJK Unified Ideographs
    codes = [c.encode("gb2312") for c in chars]
    assert codes == sorted(codes) and codes[0] == b"\xb0\xa1" and codes[-1] == b"\xd7\xf9"
    assert chars[0] == "啊"


def test_classes_are_a_seeded_nested_subset():
    big, small = glyphs.class_chars(1000, 0), glyphs.class_chars(100, 0)
    assert small == big[:100] and len(set(big)) == 1000 and set(big) <= set(glyphs.gb2312_level1())
    assert glyphs.class_chars(100, 1) != small and glyphs.class_chars(100, 0) == small


def test_families_split_designs_not_faces():
    assert set(glyphs.TEST_FAMILIES) < set(glyphs.FAMILIES)
    for fam in glyphs.FAMILIES:   # every face of a family is on one side
        assert len({f.family in glyphs.TEST_FAMILIES for f in glyphs.FACES if f.family == fam}) == 1
    assert glyphs.parse_families("wqy+arphic-kai") == ("wqy", "arphic-kai")
    for bad in ("", "comic-sans", "+".join(glyphs.FAMILIES)):
        with pytest.raises(ValueError, match="test_families"):
            glyphs.parse_families(bad)


def test_no_fonts_one_line_naming_the_install_command(tmp_path, cache):
    assert not ds.data_available("glyphs", tmp_path)
    with pytest.raises(ds.DataRootError) as e:
        ds.build_dataset("glyphs", tmp_path, classes=10)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg and "apt-get install fonts-noto-cjk" in msg
    assert not cache.exists()   # nothing rendered, nothing cached
    with pytest.raises(ValueError, match="classes=3756"):
        ds.dataset_num_classes("glyphs", classes=3756)


@needs_fonts
def test_same_arguments_same_bytes_and_the_second_load_renders_nothing(cache, monkeypatch, tmp_path):
    a = ds.build_dataset("glyphs", classes=12, renders=2)
    monkeypatch.setenv("ROBUSTLOSS_CACHE", str(tmp_path / "other"))   # an independent render
    b = ds.build_dataset("glyphs", classes=12, renders=2)
    for x, y in ((a.tensors.train_x, b.tensors.train_x), (a.tensors.test_x, b.tensors.test_x)):
        assert x.dtype == torch.uint8 and torch.equal(x, y)
    assert a.info["key"] == b.info["key"] and list(cache.glob("glyphs-*.npz"))

    def no_render(*_, **__):
        raise AssertionError("rendered again")

    monkeypatch.setattr(glyphs, "render_arrays", no_render)
    c = ds.build_dataset("glyphs", classes=12, renders=2, seed=7)   # the trial's seed does not change the set
    assert torch.equal(c.tensors.train_x, b.tensors.train_x)
    with pytest.raises(AssertionError, match="rendered again"):   # other arguments are another set
        ds.build_dataset("glyphs", classes=12, renders=2, subset_seed=1)


@needs_fonts
def test_counts_split_and_jitter(cache):
    b = ds.build_dataset("glyphs", classes=8, renders=3)
    info, t = b.info, b.tensors
    test_faces = [f.name for f in glyphs.installed_faces() if f.family in glyphs.TEST_FAMILIES]
    assert info["test_faces"] == test_faces and not set(info["train_faces"]) & set(test_faces)
    assert info["missing_glyphs"] == {}
    assert np.bincount(t.train_y.numpy()).tolist() == [3 * len(info["train_faces"])] * 8
    assert np.bincount(t.test_y.numpy()).tolist() == [len(test_faces)] * 8
    assert b.input_shape == (1, 32, 32) and b.num_classes == 8 and t.augment is None
    assert ds.dataset_examples("glyphs", classes=8, renders=3) == (len(t.train_y), len(t.test_y))
    first = t.train_x[:3]   # class 0, first training face, three jittered renderings: all different
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    face = glyphs.installed_faces()[0]
    plain = glyphs._Renderer(glyphs.FONT_ROOT / face.path, face.index, 32).render(info["characters"][0])
    assert not np.array_equal(first[0, 0].numpy(), plain)
    # test images are the unjittered renderings
    tface = next(f for f in glyphs.installed_faces() if f.name == test_faces[0])
    r = glyphs._Renderer(glyphs.FONT_ROOT / tface.path, tface.index, 32)
    assert np.array_equal(t.test_x[0, 0].numpy(), r.render(info["characters"][0]))


@needs_fonts
def test_a_missing_glyph_is_detected_left_out_and_counted(cache, monkeypatch):
    face = glyphs.installed_faces()[0]
    r = glyphs._Renderer(glyphs.FONT_ROOT / face.path, face.index, 32)
    assert r.has("啊") and not r.has("\U0001F600") and not r.has("\U0010FFFD")   # an emoji: not in a CJK face
    chars = glyphs.class_chars(5)
    real_has = glyphs._Renderer.has
    monkeypatch.setattr(glyphs._Renderer, "has", lambda self, ch, plain=None: real_has(self, ch, plain) and not (
        ch == chars[2] and self.font.getname()[0].startswith("Noto Sans")))
    b = ds.build_dataset("glyphs", classes=5, renders=1)
    noto_sans = [f.name for f in glyphs.installed_faces() if f.family == "noto-sans"]
    assert b.info["missing_glyphs"] == {n: 1 for n in noto_sans}
    counts = np.bincount(b.tensors.train_y.numpy())
    assert counts[2] == counts[0] - len(noto_sans)


@needs_fonts
def test_learnable_far_above_chance(cache):
    torch.set_num_threads(1)
    hist = []
    engine.train({"dataset": "glyphs", "dataset_args": {"classes": 20}, "model": "mlp1024", "loss": "ce", "lr": 0.03,
                  "epochs": 4, "device": "cpu", "val_fraction": 0.0}, on_epoch=lambda m, _: hist.append(m))
    assert hist[-1]["test_top1"] > 40.0   # chance: 5 %
