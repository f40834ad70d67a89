/* runner.h — the commands behind the CLI (main.c parses, these do the work). */
#ifndef RX_RUNNER_H
#define RX_RUNNER_H

#include "runner/experiment.h"

typedef enum { RX_CMD_RUN, RX_CMD_CHECK, RX_CMD_RESUME, RX_CMD_EXPORT, RX_CMD_DATA_FETCH } rx_cmd;

typedef struct rx_cli {
    rx_cmd command;
    const char *file;            /* RUN, CHECK: the experiment; EXPORT: the checkpoint; RESUME: run dir; DATA: name */
    const char **sets; int n_sets;
    const char **sweeps; int n_sweeps;
    const char *backend;
    const char *export_to, *export_dir, *export_config;
    const char *results_root;
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

#endif
