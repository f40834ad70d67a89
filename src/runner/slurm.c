/* slurm.c — the sbatch array script of a sweep, its submission, the queue's view of it. */
#include "runner/slurm.h"
#include "io/fsutil.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

rx_status rx_slurm_find_program(const char *name, char *out, size_t n) {
    const char *path = getenv("PATH");
    for (const char *p = path ? path : ""; *p;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && (size_t)snprintf(out, n, "%.*s/%s", (int)len, p, name) < n && access(out, X_OK) == 0) return RX_OK;
        p += len + (p[len] == ':');
    }
    return rx_fail(RX_ERR_ARG, "--launcher slurm: %s is not on PATH (run the sweep from a Slurm login node, or with "
                               "--launcher local)", name);
}

rx_status rx_slurm_check_options(const char *options) {
    if (!options) return RX_OK;
    size_t bad = strcspn(options, "'\"#\\`$");
    if (options[bad])
        return rx_fail(RX_ERR_ARG, "--slurm \"%s\": '%c' is not supported (each option becomes one #SBATCH line, "
                                   "which sbatch does not unquote)", options, options[bad]);
    const char *p = options + strspn(options, " \t\n");
    if (*p && *p != '-') return rx_fail(RX_ERR_ARG, "--slurm \"%s\": expected sbatch options (--partition=gpu ...)", options);
    return RX_OK;
}

/* each option of `options` on its own #SBATCH line, a following word that is not an option
 * with it ("--time 10") */
static void write_options(FILE *f, const char *options) {
    int open_line = 0;
    for (const char *p = options; p && *p;) {
        p += strspn(p, " \t\n");
        size_t len = strcspn(p, " \t\n");
        if (!len) break;
        if (*p == '-') fprintf(f, "%s#SBATCH %.*s", open_line ? "\n" : "", (int)len, p);
        else fprintf(f, " %.*s", (int)len, p);
        open_line = 1;
        p += len;
    }
    if (open_line) fputc('\n', f);
}

/* s in single quotes for the shell ('\'' for each quote inside) */
static void shell_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

rx_status rx_slurm_write_script(const char *path, const rx_slurm_job *job) {
    /* #SBATCH lines are split at whitespace by sbatch */
    const char *paths[] = {job->sweep_dir, job->workdir};
    for (int i = 0; i < 2; i++)
        if (paths[i][strcspn(paths[i], " \t\n")])
            return rx_fail(RX_ERR_ARG, "--launcher slurm: the path '%s' has white space, which an #SBATCH line cannot hold",
                           paths[i]);
    rx_atomic_file af;
    RX_TRY(rx_atomic_begin(path, &af));
    FILE *f = af.fp;
    fprintf(f, "#!/bin/bash\n"
               "# runexp sweep: one array task per sweep point (%d points), written by runexp.\n"
               "# Task i runs the point's saved config, %s/points/<i>.yaml, and records it in points/<i>.json;\n"
               "# `runexp sweep status %s` shows the points and writes the summary when all are done.\n"
               "# Submitted with: sbatch --parsable %s\n",
            job->n_tasks, job->sweep_dir, job->sweep_dir, path);
    fprintf(f, "#SBATCH --job-name=%s\n", job->name);
    fprintf(f, "#SBATCH --array=0-%d\n", job->n_tasks - 1);
    fprintf(f, "#SBATCH --output=%s/slurm-%%A_%%a.out\n", job->sweep_dir);
    fprintf(f, "#SBATCH --chdir=%s\n", job->workdir);
    fprintf(f, "#SBATCH --ntasks=1\n");
    write_options(f, job->options);   /* after ours: the user's --output or --ntasks wins */
    fprintf(f, "exec ");
    shell_quote(f, job->runexp);
    fprintf(f, " sweep point ");
    shell_quote(f, job->sweep_dir);
    fprintf(f, " \"$SLURM_ARRAY_TASK_ID\"\n");
    RX_TRY(rx_atomic_commit(&af));
    if (chmod(path, 0755) != 0) return rx_fail(RX_ERR_IO, "chmod %s: %s", path, strerror(errno));
    return RX_OK;
}

rx_status rx_slurm_submit(const char *sbatch, const char *script, char *job_id, size_t n) {
    int fd[2];
    if (pipe(fd) != 0) return rx_fail(RX_ERR_IO, "sbatch: pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    if (!rc) rc = posix_spawn_file_actions_addclose(&fa, fd[0]);
    pid_t pid = -1;
    char *argv[] = {(char *)sbatch, "--parsable", (char *)script, NULL};
    if (!rc) rc = posix_spawn(&pid, sbatch, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc) {
        close(fd[0]);
        return rx_fail(RX_ERR_IO, "cannot run %s: %s", sbatch, strerror(rc));
    }
    char out[512];
    size_t len = 0;
    for (ssize_t r; len < sizeof out - 1 && (r = read(fd[0], out + len, sizeof out - 1 - len)) != 0;) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        len += (size_t)r;
    }
    out[len] = 0;
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return rx_fail(RX_ERR_IO, "sbatch: waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return rx_fail(RX_ERR_IO, "sbatch refused %s (exit %d; its message is above); the script is kept", script,
                       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    /* --parsable: "<job id>[;<cluster>]" */
    size_t digits = strspn(out, "0123456789");
    if (digits == 0 || digits >= n || (out[digits] && !strchr(";\n", out[digits])))
        return rx_fail(RX_ERR_FORMAT, "sbatch --parsable printed '%.100s', not a job id", out);
    snprintf(job_id, n, "%.*s", (int)digits, out);
    return RX_OK;
}

/* "<job>_<task><sep><STATE>..." lines of squeue or sacct into states[task] */
static void parse_task_lines(FILE *p, const char *job_id, char sep, int n_tasks, char (*states)[32]) {
    char line[512];
    size_t jl = strlen(job_id);
    while (fgets(line, sizeof line, p)) {
        if (strncmp(line, job_id, jl) || line[jl] != '_' || !isdigit((unsigned char)line[jl + 1])) continue;
        char *end;
        long task = strtol(line + jl + 1, &end, 10);
        if (*end != sep || task < 0 || task >= n_tasks) continue;
        end++;
        snprintf(states[task], 32, "%.*s", (int)strcspn(end, " \n|"), end);
    }
}

void rx_slurm_task_states(const char *job_id, int n_tasks, char (*states)[32], int *queue_known) {
    for (int i = 0; i < n_tasks; i++) states[i][0] = 0;
    *queue_known = 0;
    char prog[1024], cmd[1400];
    if (!job_id[0] || job_id[strspn(job_id, "0123456789")]) return;   /* only digits go into the command line */
    /* sacct first (tasks that left the queue), when accounting is on; squeue then overrides
     * with the live state */
    if (rx_slurm_find_program("sacct", prog, sizeof prog) == RX_OK) {
        snprintf(cmd, sizeof cmd, "'%s' -n -P -X -j %s -o JobID,State 2>/dev/null", prog, job_id);
        FILE *p = popen(cmd, "r");
        if (p) {
            parse_task_lines(p, job_id, '|', n_tasks, states);
            pclose(p);   /* accounting off: it says nothing, exit 1; nothing was parsed */
        }
    } else rx_clear_error();
    if (rx_slurm_find_program("squeue", prog, sizeof prog) != RX_OK) { rx_clear_error(); return; }
    /* -r: one line per array task; a job that left the queue entirely is "Invalid job id" */
    snprintf(cmd, sizeof cmd, "'%s' -h -r -j %s -o '%%i %%T' 2>&1", prog, job_id);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    char out[64 * 1024];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    int st = pclose(p);
    int ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok && !strstr(out, "Invalid job id")) return;
    *queue_known = 1;
    FILE *m = fmemopen(out, len ? len : 1, "r");
    if (!m) return;
    parse_task_lines(m, job_id, ' ', n_tasks, states);
    fclose(m);
}
