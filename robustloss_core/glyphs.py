"""Printed Chinese characters rendered from Debian's CJK typefaces: a real many-class image task, K a free knob.

The classes are K characters of GB2312 level 1 (3 755, the class set of the CASIA-HWDB1.1 benchmark), a
seeded subset fixed by (K, ``subset_seed``) and nested: the first K of one permutation, so the 100 classes of
K = 100 are among those of K = 1000. Training images are the training faces' renderings with jitter
(size ×U(0.85, 1), rotation U(−8°, 8°), shift U(−2, 2) px per axis), ``renders`` of them per face and class;
test images are whole held-out typeface families, unjittered. A family groups every face of one design and
its derivatives (Noto's weights; Arphic's Ming fonts and BabelStone Han, which is built on them), so a test
face is never another weight or an offspring of a training face.

Everything is a function of the arguments and the font files: the same arguments give the same bytes. A set
is rendered once and kept in the cache folder (``$ROBUSTLOSS_CACHE``, else ``~/.cache/robustloss``) under a
key of the arguments, the font files' SHA-256 and the FreeType version, so later trials load it from disk.
A glyph a face lacks (blank, or drawn as the face's .notdef box) is left out and counted in ``info``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FONT_ROOT = Path("/usr/share/fonts")
PACKAGES = ("fonts-noto-cjk", "fonts-noto-cjk-extra", "fonts-arphic-ukai", "fonts-arphic-uming",
            "fonts-arphic-gbsn00lp", "fonts-arphic-gkai00mp", "fonts-wqy-zenhei", "fonts-wqy-microhei",
            "fonts-babelstone-han", "fonts-smiley-sans", "fonts-lxgw-wenkai")
INSTALL = "apt-get install " + " ".join(PACKAGES)
MAX_CLASSES = 3755
JITTER = {"scale": (0.85, 1.0), "degrees": 8.0, "shift_px": 2.0}
FORMAT = 1   # bump when the rendering changes: it is part of the cache key


@dataclass(frozen=True)
class Face:
    name: str
    family: str      # a design and its derivatives: the unit of the train/test split
    path: str        # under the font root
    index: int = 0   # face of a .ttc collection (Noto: 2 = SC)


def _noto(kind: str, weights: tuple[str, ...]) -> tuple[Face, ...]:
    return tuple(Face(f"noto-{kind}-sc-{w.lower()}", f"noto-{kind}", f"opentype/noto/Noto{kind.title()}CJK-{w}.ttc",
                      2) for w in weights)


# Simplified-Chinese faces only (Noto's JP/KR/TC/HK members, WenKai Mono and the Mono/Sharp members of WQY
# repeat a design). Lineage: AR PL UMing is built on AR PL SungtiL GB / Mingti2L, BabelStone Han on the
# Arphic Ming fonts, AR PL UKai on AR PL KaitiM GB.
FACES: tuple[Face, ...] = (
    *_noto("sans", ("Thin", "Light", "DemiLight", "Regular", "Medium", "Bold", "Black")),
    *_noto("serif", ("ExtraLight", "Light", "Regular", "Medium", "SemiBold", "Bold", "Black")),
    *(Face(f"lxgw-wenkai-{w.lower()}", "lxgw-wenkai", f"truetype/lxgw-wenkai/LXGWWenKai-{w}.ttf")
      for w in ("Light", "Regular", "Bold")),
    Face("arphic-ukai-cn", "arphic-kai", "truetype/arphic/ukai.ttc"),
    Face("arphic-kaitim-gb", "arphic-kai", "truetype/arphic-gkai00mp/gkai00mp.ttf"),
    Face("smiley-sans", "smiley-sans", "truetype/smiley-sans/SmileySans-Oblique.ttf"),
    Face("arphic-uming-cn", "arphic-ming", "truetype/arphic/uming.ttc"),
    Face("arphic-sungtil-gb", "arphic-ming", "truetype/arphic-gbsn00lp/gbsn00lp.ttf"),
    Face("babelstone-han", "arphic-ming", "truetype/babelstone/BabelStoneHan.ttf"),
    Face("wqy-zenhei", "wqy", "truetype/wqy/wqy-zenhei.ttc"),
    Face("wqy-microhei", "wqy", "truetype/wqy/wqy-microhei.ttc"),
)
FAMILIES = tuple(dict.fromkeys(f.family for f in FACES))
TEST_FAMILIES = ("arphic-ming", "wqy")   # 5 faces held out; 20 train (with every package installed)
DEFAULTS = dict(classes=100, renders=2, image_size=32, test_families="+".join(TEST_FAMILIES), subset_seed=0)


def gb2312_level1() -> list[str]:
    """The 3 755 characters of GB2312 level 1 in code order (rows 16–55; row 55 has 89)."""
    out = []
    for row in range(16, 56):
        for col in range(1, 95 if row < 55 else 90):
            out.append(bytes([0xA0 + row, 0xA0 + col]).decode("gb2312"))
    return out


def class_chars(classes: int, subset_seed: int = 0) -> list[str]:
    """The K classes: the first K of a permutation of GB2312 level 1 by ``subset_seed`` (nested in K)."""
    chars = gb2312_level1()
    return [chars[i] for i in np.random.default_rng([subset_seed, 3755]).permutation(len(chars))[:classes]]


def parse_families(value) -> tuple[str, ...]:
    """``test_families`` as given: 'a+b' (a command line's --dataset-args) or a list; each a name in FAMILIES."""
    names = value.split("+") if isinstance(value, str) else list(value)
    bad = [n for n in names if n not in FAMILIES]
    if bad or not names or len(set(names)) == len(FAMILIES):
        raise ValueError(f"test_families={value!r}: need one or more (not all) of {', '.join(FAMILIES)}, joined by '+'")
    return tuple(names)


def installed_faces(root: Path = FONT_ROOT) -> list[Face]:
    return [f for f in FACES if (Path(root) / f.path).is_file()]


def files_present(root: Path = FONT_ROOT) -> bool:
    """Whether ``root`` holds at least one training and one test face (the default split), without rendering."""
    fams = {f.family for f in installed_faces(root)}
    return bool(fams & set(TEST_FAMILIES)) and bool(fams - set(TEST_FAMILIES))


def cache_dir() -> Path:
    return Path(os.environ.get("ROBUSTLOSS_CACHE") or Path.home() / ".cache" / "robustloss").expanduser()


def _file_sha(path: Path, memo: dict) -> str:
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    if key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        memo[key] = h.hexdigest()
    return memo[key]


def _font_hashes(faces: list[Face], root: Path) -> dict[str, str]:
    """SHA-256 of each face's file, memoised in the cache folder by (path, size, mtime)."""
    memo_path = cache_dir() / "font-sha256.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    out = {f.name: _file_sha(Path(root) / f.path, memo) for f in faces}
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo))
    os.replace(tmp, memo_path)
    return out


class _Renderer:
    """One face at twice the output size; a glyph is drawn centred, moved by an affine map, then 2×2-averaged."""

    def __init__(self, path: Path, index: int, size: int):
        from PIL import ImageFont

        self.size, self.big = size, 2 * size
        self.font = ImageFont.truetype(str(path), round(0.85 * self.big), index=index,
                                       layout_engine=ImageFont.Layout.BASIC)
        self.notdef = self.render("\U0010FFFD")

    def render(self, ch: str, scale: float = 1.0, degrees: float = 0.0, dx: float = 0.0, dy: float = 0.0):
        from PIL import Image, ImageDraw

        img = Image.new("L", (self.big, self.big), 0)
        left, top, right, bottom = self.font.getbbox(ch)
        ImageDraw.Draw(img).text(((self.big - (right - left)) / 2 - left, (self.big - (bottom - top)) / 2 - top),
                                 ch, fill=255, font=self.font)
        if (scale, degrees, dx, dy) != (1.0, 0.0, 0.0, 0.0):
            # output pixel p maps to input c + R(-θ)(p - c - shift)/scale (c: the centre; shift in output px × 2)
            t = np.deg2rad(degrees)
            cos, sin, c = np.cos(t) / scale, np.sin(t) / scale, self.big / 2
            ox, oy = c + 2 * dx, c + 2 * dy
            img = img.transform(img.size, Image.Transform.AFFINE,
                                (cos, sin, c - cos * ox - sin * oy, -sin, cos, c + sin * ox - cos * oy),
                                resample=Image.Resampling.BICUBIC)
        return np.asarray(img.reduce(2), dtype=np.uint8)

    def has(self, ch: str, plain: np.ndarray | None = None) -> bool:
        """Whether the face draws ``ch`` (``plain``: its unjittered rendering, if already made)."""
        g = self.render(ch) if plain is None else plain
        return bool(g.max() > 0) and not np.array_equal(g, self.notdef)


def _jitter(subset_seed: int, face_no: int, char: str, r: int) -> tuple[float, float, float, float]:
    u = np.random.default_rng([subset_seed, face_no, ord(char), r]).random(4)
    lo, hi = JITTER["scale"]
    return (lo + (hi - lo) * u[0], (2 * u[1] - 1) * JITTER["degrees"], (2 * u[2] - 1) * JITTER["shift_px"],
            (2 * u[3] - 1) * JITTER["shift_px"])


def render_arrays(classes: int, renders: int, image_size: int, test_families: tuple[str, ...], subset_seed: int,
                  root: Path = FONT_ROOT) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """(train_x uint8 [N, 1, S, S], train_y, test_x, test_y, info): train faces × ``renders`` jittered images
    per class, test faces once each unjittered; classes in ``class_chars`` order, faces in FACES order."""
    chars = class_chars(classes, subset_seed)
    faces = installed_faces(root)
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    missing, used = {}, {"train": [], "test": []}
    for face in faces:
        split = "test" if face.family in test_families else "train"
        rend = _Renderer(Path(root) / face.path, face.index, image_size)
        face_no = FACES.index(face)
        used[split].append(face.name)
        gone = 0
        for y, ch in enumerate(chars):
            plain = rend.render(ch)
            if not rend.has(ch, plain):
                gone += 1
                continue
            images = [rend.render(ch, *_jitter(subset_seed, face_no, ch, r)) for r in range(renders)] \
                if split == "train" else [plain]
            xs[split].extend(images)
            ys[split].extend([y] * len(images))
        if gone:
            missing[face.name] = gone
    for split in ("train", "test"):
        if not used[split]:
            raise FileNotFoundError(f"no {split} face of glyphs under {root} (test families: "
                                    f"{'+'.join(test_families)}); install the fonts: {INSTALL}")
    arr = {s: np.stack(xs[s])[:, None] for s in xs}
    info = {"characters": "".join(chars), "train_faces": used["train"], "test_faces": used["test"],
            "missing_glyphs": missing, "train_images": len(ys["train"]), "test_images": len(ys["test"])}
    return arr["train"], np.array(ys["train"], np.int64), arr["test"], np.array(ys["test"], np.int64), info


def load(classes: int, renders: int, image_size: int, test_families: tuple[str, ...], subset_seed: int,
         root: Path = FONT_ROOT) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """``render_arrays`` through the disk cache: the first caller renders (others wait on a lock), then loads."""
    from PIL import features

    faces = installed_faces(root)
    args = dict(classes=classes, renders=renders, image_size=image_size, test_families=list(test_families),
                subset_seed=subset_seed, format=FORMAT, freetype=features.version("freetype2"),
                fonts=_font_hashes(faces, root), jitter=JITTER)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:20]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"glyphs-{key}.npz"
    with open(folder / f"glyphs-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            trx, try_, tex, tey, info = render_arrays(classes, renders, image_size, test_families, subset_seed, root)
            tmp = folder / f"glyphs-{key}.{os.getpid()}.tmp.npz"
            np.savez(tmp, train_x=trx, train_y=try_, test_x=tex, test_y=tey,
                     info=np.array(json.dumps({**info, "key": key, "args": args})))
            os.replace(tmp, path)
    with np.load(path) as z:
        return z["train_x"], z["train_y"], z["test_x"], z["test_y"], {**json.loads(str(z["info"])), "cache": str(path)}
