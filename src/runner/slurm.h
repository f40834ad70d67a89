/* slurm.h — sweeps as Slurm job arrays (issue 17 §5): the sbatch script, its submission and
 * the queue's view of the array's tasks. Slurm's own commands (sbatch, squeue, sacct) do the
 * work; nothing here talks to slurmctld directly.
 *
 * The script (<sweep dir>/job.sbatch) is one array task per sweep point; task i runs
 * `runexp sweep point <sweep dir> i`, which runs the point's saved config
 * (<sweep dir>/points/<i>.yaml) and records the outcome in <sweep dir>/points/<i>.json. */
#ifndef RX_SLURM_H
#define RX_SLURM_H

#include <stddef.h>
#include "core/status.h"

/* The full path of `name` found on $PATH; RX_ERR_ARG naming the program when absent. */
rx_status rx_slurm_find_program(const char *name, char *out, size_t n);

/* --slurm "...": extra sbatch options, split at whitespace; every option starts with '-'
 * (a word that does not is the previous option's value: "--time 10"). Quotes and '#' are
 * refused (each option becomes one #SBATCH line, which sbatch does not unquote). */
rx_status rx_slurm_check_options(const char *options);

typedef struct rx_slurm_job {
    const char *name;        /* --job-name */
    int n_tasks;             /* --array=0-(n_tasks-1) */
    const char *sweep_dir;   /* absolute: the tasks' output files and their argument */
    const char *workdir;     /* absolute: --chdir, where relative paths in the configs resolve */
    const char *runexp;      /* absolute path of the runexp binary the tasks run */
    const char *options;     /* rx_slurm_check_options'd extra options, or NULL */
} rx_slurm_job;

/* Writes the array script to `path` (atomically, mode 0755). */
rx_status rx_slurm_write_script(const char *path, const rx_slurm_job *job);

/* `sbatch --parsable script`: the job id (digits) in job_id. sbatch's own error messages go
 * to stderr; a failure to submit is RX_ERR_IO with sbatch's exit status. */
rx_status rx_slurm_submit(const char *sbatch, const char *script, char *job_id, size_t n);

/* The queue's state of each task of job array job_id ("PENDING", "RUNNING", "COMPLETED",
 * "FAILED", "TIMEOUT", ...; "" when Slurm does not say): squeue for the tasks still queued,
 * then sacct (when accounting is on) for those that left the queue. *queue_known is 0 when
 * squeue could not be asked (not on PATH, no controller): then nothing is known. */
void rx_slurm_task_states(const char *job_id, int n_tasks, char (*states)[32], int *queue_known);

#endif
