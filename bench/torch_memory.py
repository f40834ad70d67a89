"""bench/torch_memory.py — the PyTorch + diffusers side of bench/memory (issue 14).

Peak memory of one training step of a diffusers UNet2DModel loaded from the files that
`build/bench/memory CONFIG --export DIR` (rx_model_export_diffusers, what `runexp export
--to diffusers` writes) leaves in DIR: the same network, the same weights. Per batch size a
fresh child process runs the step that runexp's train stage runs:

    zero grads (set_to_none, torch's default) -> forward on x_t, t, class labels ->
    weighted MSE against a target -> backward -> clip_grad_norm_(1.0) -> AdamW -> EMA update

once as a warm-up (Adam's state is created lazily there) and once more, measured. The EMA is
a second copy of the parameters updated in place (what runexp keeps when train.ema_decay > 0;
--no-ema drops it). Inputs are Gaussian of the model's shape, labels cycle over the class
embeddings, as in the C bench. Threads: torch.set_num_threads(--threads).

The parent reads each child's peak RSS from os.wait4 (ru_maxrss) and guards the machine as the
C bench does: it polls the child's VmRSS every 20 ms and kills it past --limit-gib (default
MemAvailable - 4 GiB) or when MemAvailable drops under 1 GiB. The child also reports its own
accounting: RSS after the imports, after loading the model, at the end of the forward and of
the backward; parameters, gradients, Adam moments and EMA in bytes; and what autograd keeps for
backward at the end of the forward (the `_saved_*` tensors of the graph, each storage counted
once, parameters excluded), by the grad_fn that saves it (--breakdown prints it).

    python3 bench/torch_memory.py DIR --batch 2,4,8 [--threads 2] [--breakdown] [--no-ema] [--device cuda]

--device cuda runs the step on the GPU and reports torch.cuda.max_memory_allocated over the
measured step (the counterpart of build/bench/memory --backend cuda); RSS is then host memory only.

Output: readable lines and one `RESULT key=value ...` line per point (bench/memory.sh reads them).
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time


def proc_kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def mem_available_gib():
    return proc_kib("/proc/meminfo", "MemAvailable") / 2**20


def rss_kib():
    return proc_kib("/proc/self/status", "VmRSS")


# ------------------------------------------------------------------------------------------
# the child: one batch size


def saved_by_grad_fn(loss, param_ptrs):
    """bytes autograd keeps for backward, by the grad_fn that saves them (each storage once)"""
    import torch
    seen_fn, seen_storage, by_fn = set(), set(), {}
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen_fn:
            continue
        seen_fn.add(fn)
        name = type(fn).__name__.replace("Backward0", "").replace("Backward1", "")
        for attr in dir(fn):
            if not attr.startswith("_saved_"):
                continue
            try:
                v = getattr(fn, attr)
            except Exception:
                continue
            for t in (v if isinstance(v, (tuple, list)) else (v,)):
                if not isinstance(t, torch.Tensor):
                    continue
                st = t.untyped_storage()
                ptr = st.data_ptr()
                if ptr == 0 or ptr in param_ptrs or ptr in seen_storage:
                    continue
                seen_storage.add(ptr)
                by_fn[name] = by_fn.get(name, 0) + st.nbytes()
        stack.extend(f for f, _ in fn.next_functions)
    return by_fn


def child(a):
    rss_start = rss_kib()
    import torch
    from diffusers import UNet2DModel
    torch.set_num_threads(a.threads)
    rss_imports = rss_kib()
    # from_config + copying tensor by tensor out of the safetensors file: from_pretrained without
    # `accelerate` holds a second full copy of the weights while loading (a peak of its own)
    from safetensors import safe_open
    m = UNet2DModel.from_config(UNet2DModel.load_config(a.dir)).train()
    state = m.state_dict()
    with safe_open(os.path.join(a.dir, "diffusion_pytorch_model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        if keys != set(state):
            sys.exit("%s: the weights' keys differ from the model's: %s" % (a.dir, sorted(keys ^ set(state))[:5]))
        with torch.no_grad():
            for k in keys:
                state[k].copy_(f.get_tensor(k))
    del state
    dev = torch.device(a.device)
    m.to(dev)
    params = [p for p in m.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    param_b = sum(p.numel() * p.element_size() for p in m.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    ema = [p.detach().clone() for p in params] if a.ema else []
    rss_model = rss_kib()

    B, C, S = a.batch, m.config.in_channels, m.config.sample_size
    if isinstance(S, (tuple, list)):
        S = S[0]
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(B, C, S, S, generator=g).to(dev)
    target = torch.randn(B, m.config.out_channels, S, S, generator=g).to(dev)
    t = torch.tensor([(i * 131) % 1000 for i in range(B)], device=dev)
    weight = torch.ones(B, device=dev)
    K = m.config.num_class_embeds
    labels = torch.tensor([i % K for i in range(B)], device=dev) if K else None
    param_ptrs = {p.untyped_storage().data_ptr() for p in m.parameters()}

    acct = {}
    for step in (1, 2):   # warm-up (Adam's state appears here), then the measured step
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = m(xt, t, class_labels=labels).sample
        loss = (((out - target) ** 2).mean(dim=(1, 2, 3)) * weight).mean()
        if step == 2:
            acct["rss_forward"] = rss_kib()
            acct["saved"] = saved_by_grad_fn(loss, param_ptrs)
        loss.backward()
        if step == 2:
            acct["rss_backward"] = rss_kib()
        del out
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if a.ema:
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.mul_(0.9999).add_(p, alpha=1 - 0.9999)
        if dev.type == "cuda":
            torch.cuda.synchronize()
            acct["peak_alloc"] = torch.cuda.max_memory_allocated()
        acct["step_s"] = time.perf_counter() - t0
    grad_b = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    adam_b = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                 if torch.is_tensor(v) and v.dim() > 0)
    ema_b = sum(e.numel() * e.element_size() for e in ema)
    saved = acct["saved"]
    saved_b = sum(saved.values())
    if a.breakdown:
        print("  autograd saved tensors at the end of the forward, batch %d (MiB, by grad_fn):" % B)
        for k, v in sorted(saved.items(), key=lambda kv: -kv[1]):
            if v >= 2**20 // 10:
                print("    %-40s %9.1f" % (k, v / 2**20))
        print("    %-40s %9.1f" % ("sum", saved_b / 2**20))
    print("RESULT engine=torch batch=%d status=ok params=%d peak_rss_kib=%d base_rss_kib=%d import_rss_kib=%d "
          "model_rss_kib=%d forward_rss_kib=%d backward_rss_kib=%d params_b=%d grads_b=%d adam_b=%d ema_b=%d "
          "saved_b=%d peak_alloc_b=%d step_s=%.2f threads=%d torch=%s" % (
              B, n_params, proc_kib("/proc/self/status", "VmHWM"), rss_start, rss_imports, rss_model,
              acct["rss_forward"], acct["rss_backward"], param_b, grad_b, adam_b, ema_b, saved_b, acct.get("peak_alloc", 0), acct["step_s"],
              torch.get_num_threads(), torch.__version__), flush=True)
    # no interpreter teardown: it touches ~120 MiB more (module cleanup), which wait4 would count
    os._exit(0)


# ------------------------------------------------------------------------------------------
# the parent: a fresh process per point, guarded


def measure(a, B, limit_gib):
    cmd = [sys.executable, os.path.abspath(__file__), a.dir, "--child", "--batch", str(B), "--threads", str(a.threads)]
    if a.breakdown:
        cmd.append("--breakdown")
    if not a.ema:
        cmd.append("--no-ema")
    cmd += ["--device", a.device]
    log = tempfile.TemporaryFile(mode="w+")   # not a pipe: nothing reads it until the child ends
    p = subprocess.Popen(cmd, stdout=log, text=True)
    status_path = "/proc/%d/status" % p.pid
    killed, worst = False, 0
    while True:   # wait4 with WNOHANG: the rusage of exactly this child
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        rss = proc_kib(status_path, "VmRSS")
        worst = max(worst, rss)
        if not killed and (rss > limit_gib * 2**20 or mem_available_gib() < 1.0):
            os.kill(p.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    log.seek(0)
    out = log.read()
    result = None
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result = line
        else:
            print(line)
    if killed:
        print("batch %d: killed by the guard at %.2f GiB RSS (limit %.2f GiB, or MemAvailable under 1 GiB)" % (
            B, worst / 2**20, limit_gib))
        print("RESULT engine=torch batch=%d status=failed" % B, flush=True)
        return
    if result is None or p.returncode != 0:
        print("batch %d: the child failed (exit %s)" % (B, p.returncode))
        print("RESULT engine=torch batch=%d status=failed" % B, flush=True)
        return
    kv = dict(f.split("=", 1) for f in result.split()[1:])
    gib = lambda k: int(kv[k]) / 2**30
    print("torch batch %d: peak RSS %.2f GiB (wait4 %.2f) | params %.2f, grads %.2f, Adam m+v %.2f, EMA %.2f GiB | "
          "saved for backward %.2f GiB | RSS after imports %.0f MiB, forward end %.2f GiB, backward end %.2f GiB | "
          "step %.1f s, %s threads" % (
              B, int(kv["peak_rss_kib"]) / 2**20, ru.ru_maxrss / 2**20, gib("params_b"), gib("grads_b"), gib("adam_b"),
              gib("ema_b"), gib("saved_b"), int(kv["import_rss_kib"]) / 1024, int(kv["forward_rss_kib"]) / 2**20,
              int(kv["backward_rss_kib"]) / 2**20, float(kv["step_s"]), kv["threads"]))
    if a.device != "cpu":
        print("  %s: peak allocated %.2f GiB over the measured step" % (a.device, gib("peak_alloc_b")))
    # the parent's wait4 is the measure (the child's own VmHWM, read just before it exits, agrees)
    print(result.replace("peak_rss_kib=%s" % kv["peak_rss_kib"], "peak_rss_kib=%d" % ru.ru_maxrss), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="diffusers model directory (build/bench/memory CONFIG --export DIR)")
    ap.add_argument("--batch", default="2", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--breakdown", action="store_true")
    ap.add_argument("--no-ema", dest="ema", action="store_false")
    ap.add_argument("--limit-gib", type=float, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: also report the peak allocated")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        a.batch = int(a.batch)
        child(a)
        return
    print("# bench/torch_memory: %s, %d threads; load average %.2f %.2f %.2f; MemAvailable %.1f GiB" % (
        a.dir, a.threads, *os.getloadavg(), mem_available_gib()), flush=True)
    for B in [int(b) for b in a.batch.split(",")]:
        avail = mem_available_gib()
        limit = a.limit_gib if a.limit_gib > 0 else avail - 4.0
        if limit < 1.0:
            print("batch %d: skipped, MemAvailable %.1f GiB leaves no room under the 4 GiB margin" % (B, avail))
            print("RESULT engine=torch batch=%d status=skipped" % B, flush=True)
            continue
        measure(a, B, limit)


if __name__ == "__main__":
    main()
