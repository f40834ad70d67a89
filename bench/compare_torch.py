"""bench/compare_torch.py — the PyTorch + diffusers side of bench/compare (issue 15).

Loads what build/bench/compare left in DIR: the model through diffusers' from_pretrained
(DIR/model, written by runexp's own export path), the inputs (DIR/inputs.safetensors) and the
settings (DIR/setup.json). At startup it runs the model once on runexp's parity inputs, in eval
mode, and prints the largest absolute difference from runexp's output on them. Then, like the C
side, it answers one line per command on stdin:

    step          zero grads, forward on step 1's batch (x_t, t, labels), weighted MSE as runexp's
                  loss, backward, clip_grad_norm_(grad_clip), AdamW with runexp's settings
    warm_sample   one guided network call at the sampling batch (2N rows)
    sample        N images: DDIMScheduler (runexp's betas, spacing, clipping) and the model with
                  the conditional and unconditional halves in one batch, as diffusers' pipelines
                  run classifier-free guidance
    quit

Each answer is `TIME NAME WALL_S CPU_S` (CPU_S: the process's CPU time over the command).

    python3 bench/compare_torch.py DIR [--threads 2] [--device cpu|cuda]
"""
import argparse
import json
import os
import sys
import time


def load(a):
    import torch
    from safetensors.torch import load_file
    setup = json.load(open(os.path.join(a.dir, "setup.json")))
    cfg = json.load(open(os.path.join(a.dir, "model", "config.json")))
    if cfg["_class_name"] == "DiTTransformer2DModel":
        from diffusers import DiTTransformer2DModel as cls
    else:
        from diffusers import UNet2DModel as cls
    model = cls.from_pretrained(os.path.join(a.dir, "model"), low_cpu_mem_usage=False).to(a.device)
    inputs = {k: v.to(a.device) for k, v in load_file(os.path.join(a.dir, "inputs.safetensors")).items()}
    return torch, model, inputs, setup


def forward(model, x, t, labels):
    """the network's output tensor; both diffusers classes take (sample, timestep, class_labels)"""
    return model(x, t, class_labels=labels).sample


def parity(torch, model, inp):
    """max |torch - runexp| of the output on the same input, and max |runexp| for scale"""
    model.eval()
    with torch.no_grad():
        out = forward(model, inp["parity_x"], inp["parity_t"].long(), inp["parity_labels"].long())
    ref = inp["parity_out"]
    return (out - ref).abs().max().item(), ref.abs().max().item()


class Bench:
    def __init__(self, torch, model, inp, setup, device):
        self.torch, self.model, self.inp, self.s, self.device = torch, model, inp, setup, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=setup["lr"], betas=(setup["beta1"], setup["beta2"]),
                                     eps=setup["eps"], weight_decay=setup["weight_decay"])
        self.C = inp["xt"].shape[1]
        self.scheduler = self.make_scheduler()

    def make_scheduler(self):
        from diffusers import DDIMScheduler
        s = self.s
        return DDIMScheduler(num_train_timesteps=self.inp["betas"].numel(),
                             trained_betas=self.inp["betas"].cpu().double().numpy(),
                             clip_sample=s["clip_sample"], clip_sample_range=s["clip_sample_range"],
                             set_alpha_to_one=s["set_alpha_to_one"], steps_offset=s["steps_offset"],
                             prediction_type=s["prediction_type"], timestep_spacing=s["timestep_spacing"])

    def autocast(self, key):
        """torch.autocast(bfloat16) when the setup's `key` precision is bf16 on a GPU (else a no-op)"""
        on = self.device != "cpu" and self.s.get(key, "tf32") == "bf16"
        return self.torch.autocast(device_type="cuda", dtype=self.torch.bfloat16, enabled=on)

    def sync(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def step(self):
        """runexp's rx_train_step without the EMA: the loss is mean_i w_i mean_j (out - target)^2"""
        torch, m, inp = self.torch, self.model, self.inp
        m.train()
        self.opt.zero_grad(set_to_none=True)
        with self.autocast("precision"):
            out = forward(m, inp["xt"], inp["t"].long(), inp["labels"].long())[:, :self.C]   # learn_sigma: eps half
        loss = (((out.float() - inp["target"]) ** 2).mean(dim=(1, 2, 3)) * inp["weight"]).mean()
        loss.backward()
        if self.s["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.s["grad_clip"])
        self.opt.step()
        self.sync()

    def guided(self, x, t, labels2):
        """CFG as runexp's guidance and diffusers' pipelines: [x; x] with [labels; null] in one call"""
        with self.autocast("sample_precision"):
            out = forward(self.model, self.torch.cat([x, x]), t.expand(2 * x.shape[0]), labels2)[:, :self.C]
        cond, uncond = out.float().chunk(2)
        return uncond + self.s["scale"] * (cond - uncond)

    def labels2(self, n):
        torch, K = self.torch, self.s["num_classes"]
        labels = torch.arange(n, device=self.device) % K
        return torch.cat([labels, torch.full((n,), K, device=self.device)])

    def warm_sample(self):
        torch, n = self.torch, self.s["images"]
        self.model.eval()
        with torch.inference_mode():
            x = torch.randn(n, *self.inp["xt"].shape[1:], device=self.device)
            t = torch.tensor([self.inp["betas"].numel() - 1], device=self.device)
            self.guided(x, t, self.labels2(n))
        self.sync()

    def sample(self):
        torch, n, sched = self.torch, self.s["images"], self.scheduler
        self.model.eval()
        g = torch.Generator(device=self.device).manual_seed(0)
        with torch.inference_mode():
            sched.set_timesteps(self.s["steps"], device=self.device)
            x = torch.randn(n, *self.inp["xt"].shape[1:], device=self.device, generator=g) * sched.init_noise_sigma
            labels2 = self.labels2(n)
            for t in sched.timesteps:
                eps = self.guided(sched.scale_model_input(x, t), t.reshape(1), labels2)
                x = sched.step(eps, t, x, eta=self.s["eta"],
                               use_clipped_model_output=self.s["use_clipped_model_output"]).prev_sample
        self.sync()


def serve(b):
    commands = {"step": b.step, "warm_sample": b.warm_sample, "sample": b.sample}
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd not in commands:
            print("ERROR unknown command %r" % cmd, flush=True)
            sys.exit(1)
        w0, c0 = time.perf_counter(), time.process_time()
        commands[cmd]()
        print("TIME %s %.6f %.6f" % (cmd, time.perf_counter() - w0, time.process_time() - c0), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)   # one op at a time, as runexp
    _, model, inp, setup = load(a)
    if a.device != "cpu":   # the math runexp's CUDA backend runs: the config's `precision` (default tf32);
        # bf16 is torch.autocast(bfloat16) around the network calls (Bench.autocast), fp32 elsewhere
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = setup.get("precision", "tf32") != "fp32"
        torch.backends.cudnn.benchmark = True
    diff, scale = parity(torch, model, inp)
    import diffusers
    print("READY threads=%d torch=%s diffusers=%s params=%d parity_max_abs=%.3e parity_ref_max=%.3e" % (
        torch.get_num_threads(), torch.__version__, diffusers.__version__, sum(p.numel() for p in model.parameters()),
        diff, scale), flush=True)
    serve(Bench(torch, model, inp, setup, a.device))


if __name__ == "__main__":
    main()
