/* cli.c — argument parsing into an rx_cli (one table of options). */
#include "runner/runner.h"
#include <string.h>

typedef enum { OPT_FLAG, OPT_VALUE, OPT_LIST } opt_form;
typedef struct { const char *name; opt_form form; size_t offset, count_offset; } opt_spec;

#define FLAG(n, f) {n, OPT_FLAG, offsetof(rx_cli, f), 0}
#define VALUE(n, f) {n, OPT_VALUE, offsetof(rx_cli, f), 0}
#define LIST(n, f, c) {n, OPT_LIST, offsetof(rx_cli, f), offsetof(rx_cli, c)}

static const opt_spec options[] = {
    LIST("--set", sets, n_sets),
    LIST("--sweep", sweeps, n_sweeps),
    VALUE("--backend", backend),
    VALUE("--to", export_to),
    VALUE("--config", export_config),
    VALUE("--results", results_root),
    VALUE("--launcher", launcher),
    VALUE("--slurm", slurm_options),
    FLAG("--force", force),
    FLAG("--smoke", smoke),
    FLAG("--quiet", quiet),
    FLAG("--all", all),
};

rx_status rx_cli_parse(int argc, char **argv, rx_cli *cli) {
    memset(cli, 0, sizeof *cli);
    cli->results_root = "results";
    cli->sets = calloc(argc, sizeof *cli->sets);
    cli->sweeps = calloc(argc, sizeof *cli->sweeps);
    if (!cli->sets || !cli->sweeps) return rx_fail(RX_ERR_OOM, "out of memory");
    const char *positional[4] = {0};
    int npos = 0, resume = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume")) { resume = 1; continue; }
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t len = eq && strncmp(a, "--set", 5) && strncmp(a, "--sweep", 7) ? (size_t)(eq - a) : strlen(a);
            const opt_spec *o = NULL;
            for (size_t k = 0; k < sizeof options / sizeof options[0]; k++)
                if (strlen(options[k].name) == len && !strncmp(options[k].name, a, len)) o = &options[k];
            if (!o) return rx_fail(RX_ERR_ARG, "unknown option '%s'", a);
            char *base = (char *)cli;
            if (o->form == OPT_FLAG) { *(int *)(base + o->offset) = 1; continue; }
            const char *v = eq && a[len] == '=' ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return rx_fail(RX_ERR_ARG, "option %s needs a value", o->name);
            if (o->form == OPT_VALUE) *(const char **)(base + o->offset) = v;
            else {
                const char **list = *(const char ***)(base + o->offset);
                int *cnt = (int *)(base + o->count_offset);
                list[(*cnt)++] = v;
            }
            continue;
        }
        if (npos == 4) return rx_fail(RX_ERR_ARG, "too many arguments ('%s')", a);
        positional[npos++] = a;
    }
    if (cli->backend && strcmp(cli->backend, "cpu") && strcmp(cli->backend, "cuda") && strcmp(cli->backend, "auto"))
        return rx_fail(RX_ERR_ARG, "--backend must be cpu, cuda or auto, not '%s'", cli->backend);
    if (cli->launcher && strcmp(cli->launcher, "local") && strcmp(cli->launcher, "slurm"))
        return rx_fail(RX_ERR_ARG, "--launcher must be local or slurm, not '%s'", cli->launcher);
    const int slurm = cli->launcher && !strcmp(cli->launcher, "slurm");
    if (cli->slurm_options && !slurm) return rx_fail(RX_ERR_ARG, "--slurm gives sbatch options: it needs --launcher slurm");
    if (resume) {
        if (npos != 1) return rx_fail(RX_ERR_ARG, "--resume takes one run directory");
        cli->command = RX_CMD_RESUME;
        cli->file = positional[0];
        return RX_OK;
    }
    if (npos == 0) return rx_fail(RX_ERR_ARG, "no experiment file given");
    if (!strcmp(positional[0], "check")) {
        if (npos != 2) return rx_fail(RX_ERR_ARG, "usage: runexp check FILE [--set k=v]...");
        cli->command = RX_CMD_CHECK;
        cli->file = positional[1];
    } else if (!strcmp(positional[0], "export")) {
        if (npos != 3 || !cli->export_to)
            return rx_fail(RX_ERR_ARG, "usage: runexp export CHECKPOINT --to diffusers DIR | --to weights FILE.safetensors");
        if (strcmp(cli->export_to, "diffusers") && strcmp(cli->export_to, "weights"))
            return rx_fail(RX_ERR_ARG, "export: --to %s: the formats are diffusers (a folder) and weights (one file)",
                           cli->export_to);
        cli->command = RX_CMD_EXPORT;
        cli->file = positional[1];
        cli->export_dir = positional[2];
    } else if (!strcmp(positional[0], "data")) {
        if (npos < 2 || strcmp(positional[1], "fetch") || (npos != 3 && !cli->all))
            return rx_fail(RX_ERR_ARG, "usage: runexp data fetch NAME|--all");
        cli->command = RX_CMD_DATA_FETCH;
        cli->file = npos == 3 ? positional[2] : NULL;
    } else if (!strcmp(positional[0], "report")) {
        if (npos != 2) return rx_fail(RX_ERR_ARG, "usage: runexp report results/EXPERIMENT | SWEEP_DIR | RUN_DIR");
        cli->command = RX_CMD_REPORT;
        cli->file = positional[1];
    } else if (!strcmp(positional[0], "sweep") && npos >= 2 && !strcmp(positional[1], "status")) {
        if (npos != 3) return rx_fail(RX_ERR_ARG, "usage: runexp sweep status SWEEP_DIR");
        cli->command = RX_CMD_SWEEP_STATUS;
        cli->file = positional[2];
    } else if (!strcmp(positional[0], "sweep") && npos >= 2 && !strcmp(positional[1], "point")) {
        char *end;
        long point = npos == 4 ? strtol(positional[3], &end, 10) : -1;
        if (npos != 4 || !*positional[3] || *end || point < 0 || point > 1000000)
            return rx_fail(RX_ERR_ARG, "usage: runexp sweep point SWEEP_DIR INDEX (what a Slurm array task runs)");
        cli->command = RX_CMD_SWEEP_POINT;
        cli->file = positional[2];
        cli->point = (int)point;
    } else {
        if (npos != 1) return rx_fail(RX_ERR_ARG, "unexpected argument '%s'", positional[1]);
        cli->command = RX_CMD_RUN;
        cli->file = positional[0];
    }
    if (cli->launcher && cli->command != RX_CMD_RUN) return rx_fail(RX_ERR_ARG, "--launcher applies to running a sweep");
    return RX_OK;
}

void rx_cli_free(rx_cli *cli) {
    free(cli->sets);
    free(cli->sweeps);
}
