/* pipeline.h — runs of a resolved config: build the experiment, allocate (or reopen) its
 * run directory, run the stages in order (train, sample, eval), and record the outcome
 * (run.json status, index.csv, latest). The CLI commands (runner.h) resolve configs and
 * call these; a sweep is a grid of such runs.
 *
 * Each function sets *config_error when the failure is the user's input (exit 2). */
#ifndef RX_PIPELINE_H
#define RX_PIPELINE_H

#include "runner/experiment.h"

/* What refuses a run before anything is written (exit 2): `backend: cuda` with no device, a
 * run predicted not to fit in memory. rx_run_config calls it; a sweep calls it for every
 * point before it creates its directory. */
rx_status rx_run_preflight(const rx_config *cfg, const rx_run_options *opt);
/* one run of cfg in a new run directory (its path in run_dir). metrics (may be NULL)
 * receives the eval metrics object (caller decrefs). */
rx_status rx_run_config(rx_config *cfg, const rx_run_options *opt, char *run_dir, size_t n, json_t **metrics,
                        int *config_error);
/* continues the unfinished run in run_dir, whose config.yaml resolved to cfg; out_dir gets
 * the run directory once it is open */
rx_status rx_run_resume(rx_config *cfg, const rx_run_options *opt, const char *run_dir, char *out_dir, size_t n,
                        int *config_error);
/* How a sweep's points run: launcher "local" (or NULL: here, in turn) or "slurm" (a job
 * array; slurm_options are extra sbatch options). job_id and n_tasks are set when submitted. */
typedef struct rx_sweep_launch {
    const char *launcher;
    const char *slurm_options;
    char job_id[64];
    int n_tasks;
} rx_sweep_launch;
/* a grid of runs over the sweep axes: the config's `sweep:` block plus the axes given on the
 * command line ("key=v1,v2,..."), in sweep-NNNN/, whose path goes to out_dir. Locally the
 * points run and the summary is written; with Slurm the job array is submitted and
 * rx_sweep_status summarises once its tasks are done. launch may be NULL (local). */
rx_status rx_run_sweep(rx_config *cfg, const char *const *cli_axes, int n_cli_axes, const rx_run_options *opt,
                       rx_sweep_launch *launch, char *out_dir, size_t n, int *config_error);
/* Point `point` of the sweep in dir (a Slurm array task): *plan (caller decrefs) is its
 * sweep.json, opt its run options (strings borrowed from plan), config_path its saved config. */
rx_status rx_sweep_point_open(const char *dir, int point, json_t **plan, rx_run_options *opt, char *config_path, size_t n);
/* runs the point's config (loaded from config_path) as an ordinary run, its outcome recorded
 * in dir/points/<point>.json; run_dir gets the run directory */
rx_status rx_sweep_point(const char *dir, int point, rx_config *cfg, const rx_run_options *opt, char *run_dir, size_t n,
                         int *config_error);
/* Each point's state (pending / running / done / failed, from points/<i>.json and, for a
 * Slurm sweep, squeue and sacct) as a table on out; when none is pending or running, writes
 * summary.csv/md and the plots as a local sweep does. A failed point: RX_ERR_NUMERIC. */
rx_status rx_sweep_status(const char *dir, FILE *out, int *config_error);

/* The stage cache: the newest run in exp_dir, other than not_dir, that finished the stage
 * (run.json's status is done, or it says <stage>_done: true, e.g. train_done for
 * hash_key train_hash), whose run.json records `hash` under hash_key and which still holds
 * need_file (a path inside the run directory). 1 and that run's directory in out, or 0.
 * Training looks it up under the train-once lock <exp_dir>/.train-<hash>.lock, so that
 * concurrent runs of one training config (a Slurm array's tasks) train once. */
int rx_stage_cache_find(const char *exp_dir, const char *hash_key, const char *hash, const char *need_file,
                        const char *not_dir, char *out, size_t n);

#endif
