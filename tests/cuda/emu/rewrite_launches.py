#!/usr/bin/env python3
"""Copies src/kernels/cuda/* into OUT_DIR/kernels/cuda/, rewriting every kernel launch
    name<<<grid, block, shmem, stream>>>(args);
into the emulator's
    rx_emu_launch_args(dim3(grid), dim3(block), shmem, stream, fibers, [](auto... a_) { name(a_...); }, args);
fibers = 1 when the kernel's body waits at barriers or shuffles, directly or through the
__device__ functions it calls (its threads must run as cooperative fibers), 0 when each
thread can run to completion in turn (much faster).
(tests/cuda/emu/README.md). Usage: rewrite_launches.py SRC_DIR OUT_DIR"""
import os
import re
import sys

BARRIER_CALLS = ("__syncthreads", "__shfl", "rx_block_sum", "rx_block_max", "rx_warp_sum", "rx_warp_max")


def matching(text, q, opening, closing, step=1):
    """index of the bracket that closes the one at text[q] (step -1: search backwards from a closing one)"""
    depth = 0
    while True:
        if text[q] == opening:
            depth += 1
        elif text[q] == closing:
            depth -= 1
            if depth == 0:
                return q
        q += step


def functions(text, qualifier):
    """(name, body) of every function defined with `qualifier` (__global__ or __device__)"""
    for m in re.finditer(qualifier + r"\b[^;{}()]*?(\w+)\s*\(", text):
        q = matching(text, m.end() - 1, "(", ")")   # the end of the parameter list
        b = q + 1
        while b < len(text) and text[b] not in "{;":
            b += 1
        if b >= len(text) or text[b] == ";":
            continue   # a declaration
        q = matching(text, b, "{", "}")
        yield m.group(1), text[b:q]


def barrier_kernels(texts):
    """names of __global__ functions whose body calls a barrier or a shuffle, directly or through
    __device__ functions that do (the block/warp reduction helpers, a kernel's own helpers)"""
    kernels, devices = {}, {}
    for text in texts:
        kernels.update(functions(text, "__global__"))
        devices.update(functions(text, "__device__"))
    waits = set(BARRIER_CALLS)
    while True:   # device functions that wait, until no more are found
        more = {name for name, body in devices.items()
                if name not in waits and any(re.search(r"\b%s\s*[<(]" % re.escape(w), body) for w in waits)}
        if not more:
            break
        waits |= more
    return {name for name, body in kernels.items()
            if any(re.search(r"\b%s\s*[<(]" % re.escape(w), body) for w in waits)}


def split_top(s):
    """split at commas outside (), [] and {} (launch configurations hold no template commas)"""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def rewrite(text, fiber_kernels):
    out, i = "", 0
    while True:
        j = text.find("<<<", i)
        if j < 0:
            return out + text[i:]
        # the callee: an identifier, optionally with template arguments <...>, before <<<
        k = j
        if text[k - 1] == ">":
            k = matching(text, k - 1, ">", "<", -1)
        while k > 0 and (text[k - 1].isalnum() or text[k - 1] == "_"):
            k -= 1
        callee = text[k:j]
        e = text.find(">>>", j)
        cfg = split_top(text[j + 3:e])
        while len(cfg) < 4:
            cfg.append("0")
        p = e + 3
        while text[p].isspace():
            p += 1
        assert text[p] == "(", "launch without arguments near: " + text[j - 40:j + 40]
        q = matching(text, p, "(", ")")
        args = text[p + 1:q]
        base = callee.split("<")[0].strip()
        # the arguments are evaluated at the launch and copied (rx_emu_launch_args), so a launch
        # recorded during stream capture replays with the values it was launched with
        out += text[i:k] + "rx_emu_launch_args(dim3(%s), dim3(%s), %s, %s, %d, [](auto... a_) { %s(a_...); }%s)" % (
            cfg[0], cfg[1], cfg[2], cfg[3], base in fiber_kernels, callee, (", " + args) if args.strip() else "")
        i = q + 1


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(dst, "kernels", "cuda"), exist_ok=True)
    texts = {}
    for name in sorted(os.listdir(src)):
        if name.endswith(".cu") or name.endswith(".h"):
            with open(os.path.join(src, name)) as f:
                texts[name] = f.read()
    fiber_kernels = barrier_kernels(texts.values())
    for name, text in texts.items():
        out_name = name[:-3] + ".cpp" if name.endswith(".cu") else name
        with open(os.path.join(dst, "kernels", "cuda", out_name), "w") as f:
            f.write(rewrite(text, fiber_kernels))


main()
