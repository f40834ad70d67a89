#!/usr/bin/env python3
"""tb_check.py — load a run directory's TensorBoard events with TensorBoard's own reader.

A check to run by hand (not a test dependency): that what runexp writes with
`log: {tensorboard: true}` is what TensorBoard reads. It loads RUN_DIR with
tensorboard.backend.event_processing.event_accumulator.EventAccumulator (which reads every
events.out.tfevents.* file of the directory in name order, verifies each record's CRCs,
applies SessionLog START purges and migrates simple_value / Summary.Image to the scalars and
images plugins), lists every tag with its number of events and steps, and exits 1 when an
expected tag is missing:

    train/<column>   every column of the run's metrics.jsonl rows (but step)
    eval/<metric>    every metric of eval.json, when the run has one
    samples/grid     when the run has samples/grid.png
    config           (text plugin)

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    /tmp/tb/bin/python bench/tools/tb_check.py results/_smoke/tensorboard/0001-xxxxxxxx
"""
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def expected_tags(run_dir):
    scalars, tensors, images = set(), {"config"}, set()
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            scalars |= {"train/" + k for k in json.loads(line) if k != "step"}
    path = os.path.join(run_dir, "eval.json")
    if os.path.exists(path):
        with open(path) as f:
            scalars |= {"eval/" + k for k in json.load(f).get("metrics", {})}
    if os.path.exists(os.path.join(run_dir, "samples", "grid.png")):
        images.add("samples/grid")
    return {"scalars": scalars, "tensors": tensors, "images": images}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run_dir = sys.argv[1]
    files = sorted(f for f in os.listdir(run_dir) if "tfevents" in f)
    print("%s: %d events file%s: %s" % (run_dir, len(files), "" if len(files) == 1 else "s", " ".join(files)))
    acc = ea.EventAccumulator(run_dir, size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
    acc.Reload()
    have = acc.Tags()
    for kind, get in (("scalars", acc.Scalars), ("images", acc.Images), ("tensors", acc.Tensors)):
        for tag in sorted(have.get(kind, [])):
            ev = get(tag)
            steps = [e.step for e in ev]
            extra = ""
            if kind == "scalars":
                extra = " last %.6g" % ev[-1].value
            elif kind == "images":
                extra = " %dx%d, %d PNG bytes" % (ev[-1].width, ev[-1].height, len(ev[-1].encoded_image_string))
            elif kind == "tensors":
                meta = acc.SummaryMetadata(tag)
                extra = " plugin %s, %d bytes" % (meta.plugin_data.plugin_name, len(ev[-1].tensor_proto.string_val[0]))
            print("  %-8s %-36s %4d events, steps %d..%d%s" % (kind, tag, len(ev), min(steps), max(steps), extra))
    missing = []
    for kind, tags in expected_tags(run_dir).items():
        missing += ["%s %s" % (kind, t) for t in sorted(tags - set(have.get(kind, [])))]
    if missing:
        print("missing: " + ", ".join(missing))
        return 1
    print("ok: every expected tag is there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
