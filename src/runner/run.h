/* run.h — a run's result directory and its records.
 *
 *   results/<experiment>/<NNNN>-<hash8>/
 *     config.yaml  run.json  metrics.jsonl  eval.json  log.txt  samples/  checkpoints/
 *     events.out.tfevents.*  with log.tensorboard: one per process that ran the run (io/tfevents.h)
 *     .lock        flock held while a process runs or resumes the run (one at a time); it also
 *                  keeps RX_RUN_RESERVE_BYTES of disk for the final run.json (rx_run_set_final_status)
 *   results/<experiment>/index.csv   one row per run, updated in place (under a file lock)
 *   results/<experiment>/latest      symlink to the newest run
 *
 * run.json is rewritten atomically at every status change, so a crash leaves the last
 * status on disk ("running" then means killed; --resume continues it).
 *
 * Data-parallel runs (dist/dist.h): rank 0 creates or opens the run and broadcasts its
 * directory; every other rank holds a follower rx_run on the same directory, whose writes
 * (records, log, metrics, TensorBoard, index) do nothing: rank 0 owns the run's files. */
#ifndef RX_RUN_H
#define RX_RUN_H

#include <stdio.h>
#include <stdint.h>
#include <jansson.h>
#include "core/status.h"

struct rx_tfevents;

typedef struct rx_run {
    char dir[1024];          /* results/<exp>/<NNNN>-<hash8> */
    char exp_dir[1024];      /* results/<exp>                */
    char id[64];             /* NNNN-<hash8>                 */
    char experiment[128];
    char config_hash[17];
    json_t *record;          /* run.json content             */
    FILE *log;               /* log.txt                      */
    int quiet;               /* no progress on stderr        */
    double t_start;
    int locked, lock_fd;     /* the run's .lock, held until rx_run_close */
    int reserved;            /* .lock holds RX_RUN_RESERVE_BYTES of disk for the final records */
    struct rx_tfevents *tb;  /* TensorBoard events (log.tensorboard), or NULL */
    int64_t tb_step;         /* the last training step logged: eval scalars and images go there */
    int follower;            /* a data-parallel rank other than 0: writes nothing (see above) */
} rx_run;

double    rx_now(void);      /* wall clock seconds */
/* Allocate a new run directory under results_root/<experiment>/ and open its records. */
rx_status rx_run_create(rx_run *r, const char *results_root, const char *experiment, const char *config_hash);
/* Reopen an existing run directory (resume), taking its lock first: while another process
 * runs or resumes it, fails at once (RX_ERR_IO) naming the run. */
rx_status rx_run_open(rx_run *r, const char *dir);
/* Resume: remove the temp files a killed atomic write left in the run directory and its
 * checkpoints/ and samples/ (log.txt says which). */
rx_status rx_run_remove_stale_temps(rx_run *r);
/* Resume of training stage `stage` ("train", or a reflow stage whose rows carry "stage": ...)
 * from a checkpoint at `step`: metrics.jsonl keeps the other stages' rows and only this
 * stage's rows with step <= step (rewritten atomically), so the rows the resumed training
 * logs again are not doubled. For the train stage the
 * TensorBoard events get a SessionLog START at step + 1 in this process's new events file:
 * TensorBoard then drops the events of earlier files with a step past the checkpoint, the
 * same cut (event files are append-only and never rewritten). */
rx_status rx_run_metrics_cut(rx_run *r, const char *stage, int64_t step);
/* status: running | done | failed | interrupted; error may be NULL */
rx_status rx_run_set_status(rx_run *r, const char *status, const char *error);
rx_status rx_run_save_record(rx_run *r);
/* The run's last status: when run.json cannot take it (a full disk), the disk reserve kept in
 * .lock is given back and the write tried once more, so a finished run does not stay "running". */
#define RX_RUN_RESERVE_BYTES (64 * 1024)
rx_status rx_run_set_final_status(rx_run *r, const char *status, const char *error);
void      rx_run_set(rx_run *r, const char *key, json_t *value);            /* steals value */
void      rx_run_stage_time(rx_run *r, const char *stage, double seconds);
/* log line to log.txt (always) and stderr (unless quiet) */
void      rx_run_log(rx_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* one line of metrics.jsonl; steals row. With TensorBoard on, every other numeric column of
 * the row also goes there as train/<column> at the row's step. */
rx_status rx_run_metrics(rx_run *r, json_t *row);
/* TensorBoard (log.tensorboard): a new events file in the run directory (a resume gets its own),
 * with the resolved config as the text `config` at step 0 (in the run's first events file only) */
rx_status rx_run_tensorboard_open(rx_run *r, const char *config_yaml);
/* each number in the JSON object `values` as the scalar <prefix><key> at tb_step; a PNG file
 * as an image at `step`; both do nothing without TensorBoard */
rx_status rx_run_tb_scalars(const rx_run *r, const char *prefix, json_t *values);
rx_status rx_run_tb_image(const rx_run *r, const char *tag, const char *png_path, int64_t step);
/* index.csv row (the run's own row replaced, so a resumed run keeps one) + latest symlink */
rx_status rx_run_finish(rx_run *r, const char *primary_metrics_csv);
void      rx_run_close(rx_run *r);

/* git commit of the working directory and whether it is dirty ("unknown" outside git) */
void      rx_git_state(char *commit, size_t n, int *dirty);

#endif
