/* internal.h — helpers shared by the modules of librefpoint (not installed).
 * Error helpers, memory, strings, paths, child processes. */
#ifndef RP_INTERNAL_H
#define RP_INTERNAL_H

#define _GNU_SOURCE 1
#include "refpoint.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#define RP_PREFIX "refpoint-"     /* every bitmap/snapshot we make starts so */
#define RP_GRANULARITY 65536u     /* bitmap granularity = export cluster size */
#define RP_EXPORT_FORMAT 1        /* manifest format version */

#define CLEANUP_FREE __attribute__((cleanup(rp_cleanup_free)))
void rp_cleanup_free(void *ptr);

/* errors.c: set the thread's error record; both return -1. */
int rp_err_set(rp_errcode code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the current message with "pre: " (keeps code and errno). */
int rp_err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rp_err_clear(void);
rp_errcode rp_err_from_errno(int e);

/* util.c */
void *rp_xmalloc(size_t n);          /* aborts on OOM: allocation failure of small */
void *rp_xcalloc(size_t n, size_t m); /* bookkeeping objects is not recoverable */
void *rp_xrealloc(void *p, size_t n);
char *rp_xstrdup(const char *s);      /* NULL -> NULL */
char *rp_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rp_uuid(char out[37]);           /* random v4 UUID, lower case */
int rp_is_uuid(const char *s);
int64_t rp_now(void);                 /* unix seconds */
double rp_monotonic(void);            /* seconds */
/* Absolute, normalised (no symlink resolution) path; caller frees. */
char *rp_abspath(const char *p);
int rp_mkdir_p(const char *dir, mode_t mode); /* sets error */
int rp_fsync_path(const char *path);          /* file or directory */
int rp_rm_rf(const char *path);               /* best effort; 0 ok; never follows links */
int rp_rm_tree_at(int dirfd, const char *name, int depth); /* the same, relative to dirfd */
char *rp_read_file(const char *path, size_t max, size_t *len); /* sets error */
/* The same from an open descriptor (taken: closed on every path); path names it in errors. */
char *rp_read_fd(int fd, const char *path, size_t max, size_t *len);

/* Child processes. argv[0] is looked up in PATH. Captures stdout and stderr
 * (each capped at 1 MiB). Returns the exit status (0..255), or -1 with the
 * error set when the program could not be run or died from a signal. */
int rp_run(const char *const argv[], char **out, char **err);
/* Last line of a tool's stderr, trimmed; static buffer per thread. */
const char *rp_tool_msg(const char *err);

/* jobs.c: progress and cancellation seen from inside an operation. */
struct rp_job {
  rp_progress_fn fn;
  void *user;
  volatile int cancel; /* set from another thread; read with __atomic */
  int percent;
  uint64_t done, total;
};
void rp_job_set_total(rp_job *job, uint64_t total); /* NULL ok */
void rp_job_add(rp_job *job, uint64_t bytes);       /* NULL ok */
int rp_job_check(rp_job *job); /* -1 with CANCELLED set when cancelled */

/* With $REFPOINT_TRACE set, prints "[refpoint +S.mmm] message" to stderr:
 * where the time of an operation goes (tools run, phases). */
void rp_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Fault injection for tests (named as such): when $REFPOINT_FAULT_INJECT
 * equals point, the process kills itself with SIGKILL right there, as a
 * crash or kill -9 would; when it equals "stop:" point, the process stops
 * itself (SIGSTOP) there until a SIGCONT. */
void rp_fault_point(const char *point);

/* Identifiers in the shapes Hyper-V uses. Caller frees. */
char *rp_disk_instance_id(const char *vs_guid, const char *disk_guid); /* Microsoft:VS\DISK\0\0\L */
char *rp_point_instance_id(const char *rp_guid);                       /* Microsoft:RP */
/* Extracts the GUID from an RP InstanceID / disk InstanceID / bare GUID
 * into out; returns 0, or -1 (no error set) when s has no such shape. */
int rp_parse_rp_id(const char *s, char out[37]);
int rp_parse_disk_id(const char *s, char out[37]);
#endif
