/* runner.h — the commands behind the CLI (main.c parses, these do the work). */
#ifndef RX_RUNNER_H
#define RX_RUNNER_H

#include "runner/experiment.h"

typedef enum {
    RX_CMD_RUN, RX_CMD_CHECK, RX_CMD_RESUME, RX_CMD_EXPORT, RX_CMD_DATA_FETCH, RX_CMD_REPORT,
    RX_CMD_SWEEP_STATUS, RX_CMD_SWEEP_POINT
} rx_cmd;

typedef struct rx_cli {
    rx_cmd command;
    const char *file;            /* RUN, CHECK: the experiment; EXPORT: the checkpoint; RESUME: run dir; DATA: name;
                                    REPORT: an experiment, sweep or run directory; SWEEP_*: a sweep directory */
    int point;                   /* SWEEP_POINT: the point's index (a Slurm array task id) */
    const char **sets; int n_sets;
    const char **sweeps; int n_sweeps;
    const char *backend;
    const char *export_to, *export_dir, *export_config;
    const char *results_root;
    const char *launcher;        /* --launcher local|slurm (sweeps) */
    const char *slurm_options;   /* --slurm "extra sbatch options" */
    int force, smoke, quiet, all;
} rx_cli;

rx_status rx_cli_parse(int argc, char **argv, rx_cli *cli);
void      rx_cli_free(rx_cli *cli);

/* each sets *config_error when the failure is the user's input (exit 2, nothing written) */
rx_status rx_cmd_check(const rx_cli *cli, int *config_error);
rx_status rx_cmd_run(const rx_cli *cli, char *out_dir, size_t n, int *config_error);
rx_status rx_cmd_resume(const rx_cli *cli, char *out_dir, size_t n, int *config_error);
rx_status rx_cmd_export(const rx_cli *cli, int *config_error);
rx_status rx_cmd_data_fetch(const rx_cli *cli, int *config_error);
/* runexp sweep status DIR: each point's state; the summary once all are done */
rx_status rx_cmd_sweep_status(const rx_cli *cli, char *out_dir, size_t n, int *config_error);
/* runexp sweep point DIR I: what a Slurm array task runs, point I of the sweep in DIR */
rx_status rx_cmd_sweep_point(const rx_cli *cli, char *out_dir, size_t n, int *config_error);
/* DIR/report.html (runner/report.c); out_path gets its path, printed last like a run directory */
rx_status rx_cmd_report(const rx_cli *cli, char *out_path, size_t n, int *config_error);

/* One self-contained HTML page of the runs in `dir` (an experiment directory with index.csv, a
 * sweep directory with summary.csv, or one run directory), written atomically to out_path.
 * *not_found is set when dir is none of these. */
rx_status rx_report_write(const char *dir, const char *out_path, int *not_found);

#endif
