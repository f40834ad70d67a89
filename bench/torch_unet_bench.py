"""bench/torch_unet_bench.py — the PyTorch + diffusers side of the GPU training-step benchmark.

Builds experiments/cfg_cifar32.yaml's U-Net (without the class embedding) as diffusers'
UNet2DModel and times the step build/bench/gpu_bench times for `cifar32`: zero grads, forward,
MSE against a target, backward, grad-norm clipping to 1.0, AdamW. fp32 weights, TF32 allowed for
matmul and convolution (runexp's `tf32: true` default), cuDNN autotuning on, eager mode.
Two warm-up steps, then N timed steps between CUDA synchronizations.

    python3 bench/torch_unet_bench.py [--batch 128] [--steps 20]
"""
import argparse
import time

import torch
from diffusers import UNet2DModel

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--steps", type=int, default=20)
a = ap.parse_args()
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")
m = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                block_out_channels=(128, 256, 256, 256),
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                attention_head_dim=256, norm_num_groups=32, dropout=0.1).to(dev).train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
g = torch.Generator(device=dev).manual_seed(0)
B = a.batch
x = torch.randn(B, 3, 32, 32, device=dev, generator=g)
y = torch.randn(B, 3, 32, 32, device=dev, generator=g)
t = torch.tensor([(i * 131) % 1000 for i in range(B)], device=dev)


def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(m(x, t).sample, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


for _ in range(2):
    step()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
torch.cuda.synchronize()
dt = (time.perf_counter() - t0) / a.steps
n = sum(p.numel() for p in m.parameters())
print("torch   %5d %9.2f %9.1f %8.1fM  peak allocated %.1f MiB  %s, torch %s (tf32, eager)" % (
    B, dt * 1e3, B / dt, n / 1e6, torch.cuda.max_memory_allocated() / 2**20, torch.cuda.get_device_name(), torch.__version__))
