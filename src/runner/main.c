/* main.c — the runexp command line. The only place that prints errors and exits.
 *
 *   runexp FILE [--set k=v]... [--sweep k=v1,v2,...]... [--backend cpu|cuda|auto] [--force] [--smoke]
 *   runexp check FILE [--set k=v]...
 *   runexp list [KIND] [--markdown]
 *   runexp --resume RUN_DIR
 *   runexp export CHECKPOINT --to diffusers DIR [--config RUN_DIR/config.yaml]
 *   runexp data fetch NAME|--all [--dest DIR]
 *   runexp report results/EXP | SWEEP_DIR | RUN_DIR
 *   runexp FILE --sweep ... --launcher slurm [--slurm "sbatch options"]   submit the sweep as a job array
 *   runexp sweep status SWEEP_DIR      each point's state; the summary once all are done
 *   runexp sweep point SWEEP_DIR I     (what the job array's task I runs)
 *
 * Exit status: 0 success; 2 bad config, arguments or input files (nothing run, nothing
 * written); 1 a run that failed (run.json says why); 130 interrupted by SIGINT/SIGTERM.
 * The last line a run prints on stdout is its run (or sweep) directory; report prints its HTML file.
 *
 * Data-parallel: `mpirun -np N runexp FILE`, `srun runexp FILE` or a torchrun-style launcher
 * start N processes (dist/dist.h). Rank 0 prints and owns the run; another rank prints only its
 * own errors. A failure every rank agreed on ends each one normally; any other failure aborts
 * the job (MPI_Abort), so no rank waits forever on one that is gone. */
#include "runner/runner.h"
#include "registry/registry.h"
#include "dist/dist.h"
#include "kernels/cpu/cpu.h"   /* cpu_conv2d_impl, for --version */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#define RUNEXP_VERSION "0.1.0"

static void usage(FILE *f) {
    fprintf(f,
        "runexp " RUNEXP_VERSION " — config-driven diffusion-model experiments\n\n"
        "usage:\n"
        "  runexp FILE [--set k=v]... [--sweep k=v1,v2,...]... [--backend cpu|cuda|auto] [--force] [--smoke]\n"
        "                                  run an experiment (train -> sample -> eval)\n"
        "  runexp check FILE [--set k=v]...   validate; print the resolved config and parameter counts\n"
        "  runexp list [KIND] [--markdown]    registered components (kinds: datasets, models, samplers, ...)\n"
        "  runexp --resume RUN_DIR            continue an interrupted run exactly\n"
        "  runexp export CHECKPOINT --to diffusers DIR   write diffusers weights + config.json\n"
        "  runexp data fetch NAME|--all       copy ($RUNEXP_DATA_SRC) or download a data set into data/\n"
        "  runexp report DIR                  DIR/report.html: runs, curves, samples of results/EXP, a sweep or a run\n"
        "  runexp FILE --sweep k=v1,v2 --launcher slurm [--slurm \"--partition=gpu --gres=gpu:1 ...\"]\n"
        "                                  submit the sweep as a Slurm job array (one task per point)\n"
        "  runexp sweep status SWEEP_DIR      each point's state; summary.csv/md and plots once all are done\n"
        "  runexp sweep point SWEEP_DIR I     run point I of a sweep (what a job array task runs)\n"
        "  runexp --help | --version\n\n"
        "exit status: 0 ok, 1 run failed, 2 bad config/arguments/input, 130 interrupted\n");
}

static void on_signal(int sig) {
    rx_dist_on_signal(sig);                    /* multi-rank: says why at once, arms the grace timer */
    if (rx_interrupt_requested) _exit(130);   /* second Ctrl-C: stop now */
    rx_interrupt_requested = sig;
}

static int exit_code(rx_status s) {
    switch (s) {
    case RX_OK: return 0;
    case RX_ERR_INTERRUPTED: return 130;
    default: return 1;
    }
}

int main(int argc, char **argv) {
    /* OpenMP threads that spin at barriers starve each other (and OpenBLAS's threads) as soon
     * as the cores are shared: measured 20x slower training on a loaded 2-core machine. The
     * policy is read when libgomp loads, before main, so set it and start again once. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);   /* on failure, carry on with the default policy */
    }
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) {
        char mpi[256], nccl[256];
        rx_dist_describe(mpi, sizeof mpi, nccl, sizeof nccl);
        printf("runexp %s\ncpu conv2d: %s\n%s\n%s\n", RUNEXP_VERSION, cpu_conv2d_impl(), mpi, nccl);
        return 0;
    }
    if (cpu_conv2d_check_choice() != RX_OK) {   /* $RUNEXP_CPU_CONV: refused before anything is written */
        fprintf(stderr, "runexp: %s\n", rx_last_error());
        return 2;
    }

    if (!strcmp(argv[1], "list")) {
        int kind = -1, markdown = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--markdown")) markdown = 1;
            else if ((kind = rx_kind_from_name(argv[i])) < 0) {
                fprintf(stderr, "runexp list: unknown kind '%s'\n", argv[i]);
                return 2;
            }
        }
        rx_status s = markdown && kind < 0 ? rx_reference_markdown(rx_registry_components, stdout)
                                           : rx_registry_list(stdout, kind, markdown);
        return s == RX_OK ? 0 : 1;
    }

    rx_cli cli = {0};
    rx_status s = rx_cli_parse(argc, argv, &cli);
    if (s) {
        fprintf(stderr, "runexp: %s\n(see runexp --help)\n", rx_last_error());
        rx_cli_free(&cli);
        return 2;
    }

    /* ranks for a run; `--launcher slurm` only writes and submits a job array */
    const int submits = cli.launcher && !strcmp(cli.launcher, "slurm");
    if ((cli.command == RX_CMD_RUN && !submits) || cli.command == RX_CMD_RESUME) {
        s = rx_dist_init();   /* a sweep under several ranks is refused by rx_cmd_run */
        if (s) {
            fprintf(stderr, "runexp: %s\n", rx_last_error());
            rx_cli_free(&cli);
            if (rx_dist_world()->world > 1) rx_dist_abort(2);
            return 2;
        }
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char out_dir[1200] = {0};
    int config_error = 0;
    switch (cli.command) {
    case RX_CMD_CHECK: s = rx_cmd_check(&cli, &config_error); break;
    case RX_CMD_RUN: s = rx_cmd_run(&cli, out_dir, sizeof out_dir, &config_error); break;
    case RX_CMD_RESUME: s = rx_cmd_resume(&cli, out_dir, sizeof out_dir, &config_error); break;
    case RX_CMD_EXPORT: s = rx_cmd_export(&cli, &config_error); break;
    case RX_CMD_DATA_FETCH: s = rx_cmd_data_fetch(&cli, &config_error); break;
    case RX_CMD_REPORT: s = rx_cmd_report(&cli, out_dir, sizeof out_dir, &config_error); break;
    case RX_CMD_SWEEP_STATUS: s = rx_cmd_sweep_status(&cli, out_dir, sizeof out_dir, &config_error); break;
    case RX_CMD_SWEEP_POINT: s = rx_cmd_sweep_point(&cli, out_dir, sizeof out_dir, &config_error); break;
    }
    rx_cli_free(&cli);
    const rx_dist *dw = rx_dist_world();
    const int code = s ? (config_error ? 2 : exit_code(s)) : 0;
    if (s && *rx_last_error()) {
        if (dw->world > 1) fprintf(stderr, "runexp rank %d of %d: %s\n", dw->rank, dw->world, rx_last_error());
        else fprintf(stderr, "runexp: %s\n", rx_last_error());
    }
    if (out_dir[0] && dw->rank == 0) printf("%s\n", out_dir);
    fflush(stdout);
    if (s && dw->world > 1 && !rx_dist_failure_agreed()) rx_dist_abort(code);   /* rank 0 has recorded it */
    rx_dist_finalize();
    return code;
}
