"""bench/decode_pil.py — PIL's side of bench/decode.c: images per second on one thread.

    python3 bench/decode_pil.py DIR [repeats]          # time Image.open(f).convert("RGB")
    python3 bench/decode_pil.py --make DIR N [SIZE]    # write N SIZE x SIZE JPEGs (default 256)

Timing: every .jpg/.jpeg/.png in DIR, sorted, read and decoded as torchvision's ImageFolder
loader does (open the file, Image.open, convert("RGB"), which forces the decode), one warm-up
pass, then the fastest of `repeats` passes by wall clock and by this thread's CPU time.
--make writes smooth random images (a few low-frequency waves per channel, upsampled, plus
Gaussian noise of sigma 6; the waves seeded by the file number), quality 90, PIL's default 4:2:0 subsampling: the content of a
typical photo data set, not noise, which JPEG compresses poorly and decodes slowly.
"""
import math
import os
import random
import sys
import time

from PIL import Image, ImageChops, features


def make(dir_, n, size):
    os.makedirs(dir_, exist_ok=True)
    base = 32   # waves drawn at base x base in Python, upsampled bicubic: fast, and smooth
    for i in range(n):
        rnd = random.Random(i)
        waves = [[(rnd.uniform(0.5, 4), rnd.uniform(0.5, 4), rnd.uniform(0, 6.3)) for _ in range(3)] for _ in range(3)]
        data = bytes(max(0, min(255, int(128 + 40 * sum(math.sin(2 * math.pi * (fx * x + fy * y) / base + ph)
                                                             for fx, fy, ph in waves[c]))))
                     for y in range(base) for x in range(base) for c in range(3))
        im = Image.frombytes("RGB", (base, base), data).resize((size, size), Image.BICUBIC)
        noise = Image.effect_noise((size, size), 6).convert("RGB")   # film-grain-like texture, sigma 6
        im = ImageChops.add(im, noise, scale=1.0, offset=-128)
        im.save(os.path.join(dir_, "img%05d.jpg" % i), quality=90)


def one_pass(paths):
    w0, c0 = time.perf_counter(), time.thread_time()
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            im = Image.open(f).convert("RGB")
        total += im.width * im.height * 3
    return time.perf_counter() - w0, time.thread_time() - c0, total


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "--make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 256)
        return
    dir_ = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    paths = sorted(os.path.join(dir_, f) for f in os.listdir(dir_)
                   if not f.startswith(".") and f.lower().endswith((".jpg", ".jpeg", ".png")))
    one_pass(paths)
    runs = [one_pass(paths) for _ in range(repeats)]
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    print("PIL %s (libjpeg-turbo %s): %d files, %.1f MB decoded per pass; fastest of %d: %.1f images/s wall, "
          "%.1f images/s thread CPU" % (Image.__version__, features.version("libjpeg_turbo"), len(paths),
                                        runs[0][2] / 1e6, repeats, len(paths) / wall, len(paths) / cpu))


if __name__ == "__main__":
    main()
