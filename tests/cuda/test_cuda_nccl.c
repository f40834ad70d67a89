/* test_cuda_nccl.c — the NCCL gradient path (dist/dist_nccl.c) on the one GPU of a device
 * machine: two ranks cannot share a GPU, so NCCL runs with one rank (RUNEXP_FORCE_NCCL=1):
 * communicator set up from ncclGetUniqueId, every gradient through ncclAllReduce(ncclAvg) on
 * the communication stream, in buckets: the default (one bucket for this small model, after
 * backward) and 1 KiB buckets (RUNEXP_BUCKET_MB=0.001), each started during backward once the
 * compute stream's event says its gradients are written. Reference: the same run without
 * NCCL; an average over one rank changes nothing, so the per-step losses and gradient norms
 * must agree (within 1e-6 relative, the bound). Skips without a CUDA device or without
 * NCCL in the build. */
#include "../runexp_harness.h"
#include "dist/dist.h"
#include "kernels/cuda_backend.h"

#include <math.h>

/* the harness's setup, for a binary one folder deeper: <build>/tests/cuda/x -> <build>/runexp */
static void cuda_setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rx_test_nccl_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    ssize_t n = readlink("/proc/self/exe", runexp_bin, sizeof runexp_bin - 16);
    cr_assert_gt(n, 0);
    runexp_bin[n] = 0;
    for (int k = 0; k < 3; k++) *strrchr(runexp_bin, '/') = 0;
    strcat(runexp_bin, "/runexp");
    setenv("OMP_WAIT_POLICY", "passive", 1);
}

TestSuite(cuda_nccl, .init = cuda_setup, .fini = teardown, .timeout = 600);

Test(cuda_nccl, nccl_on_one_rank_gives_the_losses_of_the_run_without_it) {
    if (rx_cuda_device_count() == 0) cr_skip_test("no CUDA device: NCCL's one-rank check runs on a GPU machine (make test-cuda)");
    if (!rx_dist_nccl_version()) cr_skip_test("NCCL is not compiled in (needs CUDA, MPI and nccl.h; README: Distributed training)");
    cr_assert_eq(access(runexp_bin, X_OK), 0, "%s is missing: build it first (make)", runexp_bin);
    const char *yaml = T("nccl.yaml");
    FILE *f = fopen(yaml, "w");
    cr_assert_not_null(f);
    fputs("experiment: nccl\nseed: 3\nbackend: cuda\ndeterministic: true\n"
          "dataset: {name: synthetic, num_images: 64, size: 16, channels: 3, num_classes: 4}\n"
          "transforms:\n  - {name: normalize}\n"
          "model: {name: unet, sample_size: 16, in_channels: 3, out_channels: 3, layers_per_block: 1,\n"
          "        block_out_channels: [16, 32], down_block_types: [DownBlock2D, AttnDownBlock2D],\n"
          "        up_block_types: [AttnUpBlock2D, UpBlock2D], attention_head_dim: 8, norm_num_groups: 8}\n"
          "schedule: {name: linear, num_train_timesteps: 100}\n"
          "objective: {name: ddpm, prediction_type: epsilon}\n"
          "optimizer: {name: adamw, lr: 1.0e-3}\n"
          "train: {steps: 8, batch_size: 8, log_every: 1, checkpoint_every: 4}\n"
          "sampler: {name: ddpm, steps: 2}\nsample: {num_images: 4, batch_size: 4}\n", f);
    cr_assert_eq(fclose(f), 0);
    result plain = RUNEXP("plain", yaml, "--results", T("plain"), "--quiet");
    RUN_OK(plain);
    setenv("RUNEXP_FORCE_NCCL", "1", 1);
    result nccl = RUNEXP("nccl", yaml, "--results", T("nccl"), "--quiet");
    setenv("RUNEXP_BUCKET_MB", "0.001", 1);
    result tiny = RUNEXP("tiny", yaml, "--results", T("tiny"), "--quiet");
    unsetenv("RUNEXP_BUCKET_MB");
    unsetenv("RUNEXP_FORCE_NCCL");
    RUN_OK(nccl);
    RUN_OK(tiny);
    const result *runs[] = {&nccl, &tiny};
    for (int r = 0; r < 2; r++) {
        const char *dir = own(strdup(runs[r]->last));
        cr_assert(strstr(read_text(P("%s/log.txt", dir)), "NCCL"), "the run did not use NCCL:\n%s",
                  read_text(P("%s/log.txt", dir)));
        json_t *j = load_json(P("%s/run.json", dir));
        json_t *g = json_object_get(j, "grad_buckets");
        cr_assert(json_is_object(g), "%s: run.json has no grad_buckets", dir);
        const int nb = (int)json_integer_value(json_object_get(g, "buckets")),
                  in_bwd = (int)json_integer_value(json_object_get(g, "started_in_backward"));
        json_decref(j);
        if (r == 1) cr_expect(nb > 10 && in_bwd == nb, "1 KiB buckets: %d buckets, %d started during backward", nb, in_bwd);
        static metrics_row a[64], b[64];
        int na = read_metrics(P("%s/metrics.jsonl", dir), a, 64), nb_rows = read_metrics(P("%s/metrics.jsonl", plain.last), b, 64);
        cr_assert_eq(na, 8);
        cr_assert_eq(na, nb_rows);
        for (int i = 0; i < na; i++) {
            cr_assert_eq(a[i].step, b[i].step);
            double dl = fabs(a[i].loss - b[i].loss) / fabs(b[i].loss), dg = fabs(a[i].grad_norm - b[i].grad_norm) / b[i].grad_norm;
            cr_expect(dl <= 1e-6 && dg <= 1e-6, "%s: step %lld: loss %.9g with NCCL, %.9g without; grad_norm %.9g, %.9g",
                      r ? "1 KiB buckets" : "one bucket", (long long)a[i].step, a[i].loss, b[i].loss, a[i].grad_norm,
                      b[i].grad_norm);
        }
    }
}
