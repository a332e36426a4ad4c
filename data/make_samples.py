"""Make the sample house-number images in data/samples/ (drawn here, not taken from SVHN).

Run: python3 data/make_samples.py   (needs pillow and the DejaVu fonts, Debian's fonts-dejavu-core)
expected.tsv: NAME<TAB>DIGITS<TAB>BOXES (left:top:width:height per digit, as in SVHN's labels).
Each sample is a number in a DejaVu font (Bitstream Vera licence, free to redistribute) on a
plate over a wall-like gradient, slightly blurred and noised. Deterministic from the seed below.
"""
import os
import random

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = "/usr/share/fonts/truetype/dejavu/"
SAMPLES = [
    ("42", "DejaVuSans-Bold.ttf", (250, 250, 245), (20, 20, 20), (120, 90, 70)),
    ("1975", "DejaVuSerif-Bold.ttf", (30, 60, 120), (245, 245, 245), (150, 150, 140)),
    ("308", "DejaVuSansCondensed-Bold.ttf", (240, 230, 200), (90, 40, 20), (80, 80, 90)),
    ("7", "DejaVuSans-Bold.ttf", (20, 20, 20), (230, 200, 60), (170, 140, 110)),
    ("2651", "DejaVuSans.ttf", (255, 255, 255), (10, 60, 30), (100, 110, 120)),
    ("19", "DejaVuSerif.ttf", (200, 60, 40), (255, 255, 255), (200, 190, 170)),
]


def make(text, font_name, plate, ink, wall, rng):
    font = ImageFont.truetype(os.path.join(FONTS, font_name), 48)
    l, t, r, b = font.getbbox(text)
    tw, th = r - l, b - t
    pad_x, pad_y = 14, 10
    pw, ph = tw + 2 * pad_x, th + 2 * pad_y
    W, H = pw + 24, ph + 16
    img = Image.new("RGB", (W, H), wall)
    px = img.load()
    for y in range(H):
        for x in range(W):
            f = 0.85 + 0.3 * (x / W) * (y / H)
            n = rng.randint(-6, 6)
            px[x, y] = tuple(max(0, min(255, int(c * f) + n)) for c in wall)
    d = ImageDraw.Draw(img)
    x0, y0 = (W - pw) // 2, (H - ph) // 2
    d.rounded_rectangle([x0, y0, x0 + pw, y0 + ph], radius=6, fill=plate)
    ox, oy = x0 + pad_x - l, y0 + pad_y - t
    d.text((ox, oy), text, font=font, fill=ink)
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    boxes = []
    for i, ch in enumerate(text):
        cx = ox + font.getlength(text[:i])
        bl, bt, br, bb = font.getbbox(ch)
        boxes.append(f"{cx + bl:.0f}:{oy + bt:.0f}:{br - bl:.0f}:{bb - bt:.0f}")
    return img, ";".join(boxes)


def main():
    rng = random.Random(2026)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
    os.makedirs(out, exist_ok=True)
    lines = []
    for i, (text, font, plate, ink, wall) in enumerate(SAMPLES, 1):
        name = f"sample-{i}.png"
        img, boxes = make(text, font, plate, ink, wall, rng)
        img.save(os.path.join(out, name))
        lines.append(f"{name}\t{text}\t{boxes}\n")
    with open(os.path.join(out, "expected.tsv"), "w") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
