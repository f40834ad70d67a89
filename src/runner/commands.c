/* commands.c — check, run, resume, export, data fetch. */
#include "runner/memory_plan.h"
#include "runner/runner.h"
#include "dist/dist.h"
#include "runner/pipeline.h"
#include "runner/checkpoint.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include "data/fetch.h"
#include <string.h>

/* resolve + hooks; prints every config error (the CLI's job, but errors are a list) */
static rx_status load_config(const char *file, const char *const *sets, int n_sets, rx_config **cfg, int *config_error) {
    rx_config_errors errs = {0};
    rx_status s = rx_config_resolve(file, sets, n_sets, NULL, cfg, &errs);   /* runs the validate hooks too */
    if (s) {
        rx_config_errors_sort(&errs);
        rx_config_errors_print(&errs, stderr);
        if (errs.n) rx_clear_error();   /* printed already */
        *config_error = 1;
        if (*cfg) { rx_config_free(*cfg); *cfg = NULL; }
    }
    rx_config_errors_clear(&errs);
    free(errs.items);
    return s;
}

rx_status rx_cmd_check(const rx_cli *cli, int *config_error) {
    rx_config *cfg = NULL;
    RX_TRY(load_config(cli->file, cli->sets, cli->n_sets, &cfg, config_error));
    rx_status s = rx_config_emit(cfg->root, stdout);
    /* parameters and memory from a plan: the model is built on the planning backend, which
     * allocates nothing, so any size is answered at once */
    const rx_component *mc = NULL;
    rx_memory_plan plan;
    if (!s) s = rx_config_section_params(cfg, "model", &mc, NULL);
    if (!s) s = rx_memory_plan_config(cfg, &plan);
    if (!s) {
        printf("parameters: %s %lld\n", mc->name, (long long)plan.parameters);
        rx_memory_plan_print(&plan, stdout);
    }
    if (s == RX_ERR_CONFIG) *config_error = 1;
    rx_config_free(cfg);
    return s;
}

static void options_from_cli(const rx_cli *cli, rx_run_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->results_root = cli->results_root;
    opt->backend = cli->backend;
    opt->force = cli->force;
    opt->smoke = cli->smoke;
    opt->quiet = cli->quiet;
}

rx_status rx_cmd_run(const rx_cli *cli, char *out_dir, size_t n, int *config_error) {
    rx_config *cfg = NULL;
    RX_TRY(load_config(cli->file, cli->sets, cli->n_sets, &cfg, config_error));
    rx_run_options opt;
    options_from_cli(cli, &opt);
    /* the config.yaml of a run directory: a reproduction, so every stage runs again (the
     * stage cache would otherwise hand back the original's results) */
    char rec[1200];
    const char *slash = strrchr(cli->file, '/');
    snprintf(rec, sizeof rec, "%.*s/run.json", slash ? (int)(slash - cli->file) : 1, slash ? cli->file : ".");
    if (!strcmp(slash ? slash + 1 : cli->file, "config.yaml") && rx_fs_exists(rec)) {
        opt.force = 1;
        if (!opt.quiet) fprintf(stderr, "runexp: reproducing the run in %.*s as a new run\n", slash ? (int)(slash - cli->file) : 1,
                                slash ? cli->file : ".");
    }
    rx_cfg_node *sweep = rx_cfg_map_get(cfg->root, "sweep");
    rx_status s;
    rx_sweep_launch launch = {cli->launcher, cli->slurm_options, "", 0};
    const int is_sweep = cli->n_sweeps > 0 || (sweep && !rx_cfg_is_null(sweep) && sweep->n > 0);
    if (is_sweep && rx_dist_world()->world > 1) {   /* main started ranks: not for --launcher slurm */
        *config_error = 1;
        s = rx_fail(RX_ERR_CONFIG, "%s: a sweep runs its points one after another in one process; under a multi-rank "
                    "launcher run one point per job (or --launcher slurm)", cli->file);
    } else if (is_sweep) {
        s = rx_run_sweep(cfg, cli->sweeps, cli->n_sweeps, &opt, &launch, out_dir, n, config_error);
        if (!s && launch.job_id[0])   /* stdout: the job, then (main) the sweep directory */
            printf("submitted Slurm job %s: an array of %d tasks; follow it with: runexp sweep status %s\n", launch.job_id,
                   launch.n_tasks, out_dir);
    } else if (cli->launcher && !strcmp(cli->launcher, "slurm")) {
        *config_error = 1;
        s = rx_fail(RX_ERR_ARG, "--launcher slurm submits a sweep: give --sweep key=v1,v2,... or a sweep: block "
                                "(one training run goes under Slurm as `srun runexp FILE` in your own sbatch script)");
    } else
        s = rx_run_config(cfg, &opt, out_dir, n, NULL, config_error);
    rx_config_free(cfg);
    return s;
}

rx_status rx_cmd_sweep_status(const rx_cli *cli, char *out_dir, size_t n, int *config_error) {
    rx_status s = rx_sweep_status(cli->file, stdout, config_error);
    snprintf(out_dir, n, "%s", cli->file);
    return s;
}

rx_status rx_cmd_sweep_point(const rx_cli *cli, char *out_dir, size_t n, int *config_error) {
    json_t *plan = NULL;
    rx_run_options opt;
    char path[1400];
    rx_status s = rx_sweep_point_open(cli->file, cli->point, &plan, &opt, path, sizeof path);
    if (s) { *config_error = 1; return s; }
    opt.quiet = cli->quiet;
    rx_config *cfg = NULL;
    s = load_config(path, NULL, 0, &cfg, config_error);
    if (!s) s = rx_sweep_point(cli->file, cli->point, cfg, &opt, out_dir, n, config_error);
    rx_config_free(cfg);
    json_decref(plan);
    return s;
}

rx_status rx_cmd_resume(const rx_cli *cli, char *out_dir, size_t n, int *config_error) {
    char path[1200];
    snprintf(path, sizeof path, "%s/config.yaml", cli->file);
    if (!rx_fs_exists(path)) {
        *config_error = 1;
        return rx_fail(RX_ERR_IO, "--resume %s: no config.yaml there (not a run directory)", cli->file);
    }
    rx_config *cfg = NULL;
    RX_TRY(load_config(path, NULL, 0, &cfg, config_error));
    rx_run_options opt;
    options_from_cli(cli, &opt);
    rx_status s = rx_run_resume(cfg, &opt, cli->file, out_dir, n, config_error);
    rx_config_free(cfg);
    return s;
}

/* The model's parameters as one bare safetensors file (parameter names as keys, no optimizer
 * state): what `model.weights`, `init` and the classifier feature extractor load. The training
 * config rides along in the metadata, for provenance. */
static rx_status export_weights(const rx_model *m, const char *yaml, const char *source, const char *path) {
    rx_st_writer *w = NULL;
    RX_TRY(rx_st_writer_create(&w));
    rx_status s = RX_OK;
    for (int i = 0; i < m->params.n && !s; i++) {   // CPU context: the data are host memory
        const rx_tensor *t = m->params.t[i];
        s = rx_st_writer_add_f32(w, t->name, t->ndim, t->shape, t->data);
    }
    if (!s) s = rx_st_writer_set_metadata(w, "config", yaml);
    if (!s) s = rx_st_writer_set_metadata(w, "exported_from", source);
    if (!s) s = rx_st_writer_write(w, path);
    rx_st_writer_free(w);
    return s;
}

/* export: rebuild the model from the config stored in the checkpoint, load its (EMA)
 * weights, write diffusers' diffusion_pytorch_model.safetensors + config.json (--to diffusers)
 * or the bare weights file (--to weights) */
rx_status rx_cmd_export(const rx_cli *cli, int *config_error) {
    rx_st_file *f = NULL;
    rx_status s = rx_st_open(cli->file, &f);
    if (s) { *config_error = 1; return s; }
    const char *meta_yaml = rx_st_metadata(f, "config");
    if (!meta_yaml) {
        rx_st_close(f);
        *config_error = 1;
        return rx_fail(RX_ERR_FORMAT, "%s: no config in the checkpoint's metadata (not written by runexp train?)", cli->file);
    }
    char *yaml = strdup(meta_yaml);   // outlives the file
    if (!yaml) { rx_st_close(f); return rx_fail(RX_ERR_OOM, "export: out of memory"); }
    rx_config_errors errs = {0};
    rx_cfg_node *tree = NULL;
    rx_config *cfg = NULL;
    s = rx_yaml_parse_string(yaml, strlen(yaml), cli->file, &tree, &errs);
    rx_st_close(f);
    if (!s) s = rx_config_validate(tree, NULL, NULL, &cfg, &errs);
    if (s) {
        rx_config_errors_print(&errs, stderr);
        rx_config_errors_clear(&errs);
        free(errs.items);
        free(yaml);
        *config_error = 1;
        return s;
    }
    free(errs.items);
    const rx_component *mc;
    const rx_params *mp;
    rx_ctx *c = NULL;
    rx_model *m = NULL;
    s = rx_config_section_params(cfg, "model", &mc, &mp);
    if (!s) s = rx_ctx_create(rx_backend_cpu(), NULL, 1 << 20, &c);
    if (!s) s = rx_model_create(c, mc, mp, 0, &m);
    if (!s) s = rx_model_load_weights(c, m, cli->file, 1);
    if (!s) s = !strcmp(cli->export_to, "weights") ? export_weights(m, yaml, cli->file, cli->export_dir)
                                                    : rx_model_export_diffusers(c, m, cli->export_dir);
    if (!s) printf("%s\n", cli->export_dir);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_config_free(cfg);
    free(yaml);
    return s;
}

rx_status rx_cmd_data_fetch(const rx_cli *cli, int *config_error) {
    return rx_data_fetch(cli->all ? "all" : cli->file, "data");
}
