/* refpoint.h — public C API of librefpoint.
 *
 * librefpoint implements the Hyper-V virtual system reference point service
 * (Msvm_VirtualSystemReferencePointService) for QEMU virtual machines on
 * qcow2 disks: reference points (RPs) of all disks of a virtual system (VS),
 * full and incremental exports of an RP to a directory, and the bookkeeping
 * (an SQLite state store) that keeps change tracking honest.
 *
 * Conventions (the same for every call):
 *  - Functions return 0 on success and -1 on failure, or a pointer / NULL.
 *    On failure the calling thread's error record (rp_last_error) says what
 *    went wrong: an rp_errcode, the errno if any, and a message that names
 *    the operation and the object.
 *  - Handles (rp_ctx, rp_job) are opaque. Records returned through an
 *    out-pointer (rp_vs_info, rp_point_info, rp_export_result) are plain
 *    data owned by the caller, released with the matching _free function;
 *    every _free accepts NULL.
 *  - String arguments are borrowed for the duration of the call only.
 *  - One rp_ctx may be used by one thread at a time. Several processes (or
 *    several rp_ctx) may use the same state directory at once: the store is
 *    SQLite in WAL mode, and operations that change a VS take a per-VS lock.
 */
#ifndef REFPOINT_H
#define REFPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REFPOINT_VERSION "0.1.0"

/* ---- errors ----------------------------------------------------------- */

/* One table (src/lib/errors.def) maps each code to the Hyper-V return code
 * (family B, used by Destroy/Export/Import/RemoveAssociatedData), the CIM
 * family A code (CreateReferencePoint), the CIM status code, the CLI exit
 * code and a sentence. */
typedef enum rp_errcode {
#define RP_ERR(name, hv, cimA, cimst, exitc, sentence) RP_E_##name,
#include "refpoint_errors.def"
#undef RP_ERR
  RP_E__COUNT
} rp_errcode;

typedef struct rp_error {
  rp_errcode code;
  int sys_errno;      /* errno that caused it, or 0 */
  char message[1024]; /* "operation: detail" */
} rp_error;

/* The calling thread's last error. Borrowed; valid until the next failing
 * call on this thread. */
const rp_error *rp_last_error(void);
/* Table lookups; never fail (an out-of-range code maps to FAILED). */
uint32_t rp_err_hyperv_code(rp_errcode c);  /* family B: 32768.. */
uint32_t rp_err_cim_code(rp_errcode c);     /* family A: 0..6, or vendor */
uint32_t rp_err_cim_status(rp_errcode c);   /* CIM_ERR_* */
int rp_err_exit_code(rp_errcode c);         /* refpoint(1) exit code */
const char *rp_err_sentence(rp_errcode c);  /* static string */
const char *rp_err_name(rp_errcode c);      /* "IN_USE", static */

/* ---- context ---------------------------------------------------------- */

typedef struct rp_ctx rp_ctx;

/* Opens (creating if needed) the state directory: state_dir, else
 * $REFPOINT_STATE_DIR, else /var/lib/refpoint. Runs schema migrations.
 * Returns NULL on error. Caller frees with rp_close. */
rp_ctx *rp_open(const char *state_dir);
void rp_close(rp_ctx *ctx);
/* Borrowed, valid until rp_close. */
const char *rp_state_dir(const rp_ctx *ctx);

/* Drift found by reconciliation is reported through this callback (one line
 * per finding, e.g. "disk X: bitmap Y in-use after an unclean shutdown;
 * RP Z can no longer be a base"). Optional; borrowed user pointer. */
typedef void (*rp_warn_fn)(void *user, const char *line);
void rp_set_warn(rp_ctx *ctx, rp_warn_fn fn, void *user);
/* Exports and restores are private by default (directories 0700, files
 * 0600: the data is a VM's disks). With a group (name or number), they are
 * made readable by it (0750 / 0640, that group). NULL: private again.
 * INVALID_PARAMETER for an unknown group. */
int rp_set_export_group(rp_ctx *ctx, const char *group);

/* ---- jobs: progress and cancellation of one long operation ------------ */

typedef struct rp_job rp_job;
/* Called from the thread running the operation: done/total bytes. */
typedef void (*rp_progress_fn)(void *user, uint64_t done, uint64_t total);
rp_job *rp_job_new(rp_progress_fn fn, void *user); /* caller frees */
void rp_job_free(rp_job *job);
/* Thread-safe; the operation stops at the next chunk and fails with
 * RP_E_CANCELLED, leaving nothing behind. */
void rp_job_cancel(rp_job *job);
/* 0..100; thread-safe. */
int rp_job_percent(const rp_job *job);

/* ---- virtual systems --------------------------------------------------- */

typedef struct rp_disk_info {
  char *instance_id;     /* "Microsoft:<VS GUID>\<disk GUID>\0\0\L" */
  char *guid;            /* the disk GUID alone */
  char *path;            /* absolute path of the qcow2 image */
  uint64_t virtual_size; /* bytes, as recorded when added */
  char *target;          /* libvirt target dev ("vda") of a libvirt VS, else NULL */
} rp_disk_info;

typedef struct rp_vs_info {
  char *name;         /* GUID: Msvm_ComputerSystem.Name */
  char *element_name; /* friendly name */
  /* Detected on every call that returns the record: "shut off" (no QMP
   * socket registered), "running" or "paused" (QEMU answered on the QMP
   * socket; other QEMU run states are reported by their QMP name, e.g.
   * "io-error"), "QEMU not running" (a QMP socket is registered but nothing
   * answers: the disks are handled as shut off), "unknown" (QMP busy). */
  char *runtime_state;
  char *qmp_socket;   /* QMP unix socket of the VM's QEMU, or NULL */
  char *agent_socket; /* qemu-guest-agent unix socket (host side), or NULL */
  char *capture;      /* how RPs of the running VM keep their data: NULL/"snapshot"
                       * (internal qcow2 snapshots, survive QEMU) or "fleecing" (a
                       * view inside QEMU: shorter pause, lost when QEMU exits) */
  /* A VS registered from libvirt: the connection URI (its GUID is the
   * domain UUID; state, disks and QMP come from libvirt), else NULL. */
  char *libvirt_uri;
  size_t n_disks;
  rp_disk_info *disks; /* in the order given to rp_vs_add */
} rp_vs_info;

/* Registers a VS with its qcow2 v3 disks. Paths are made absolute. Errors:
 * INVALID_PARAMETER (bad name, duplicate name or disk), DISK_CHANGED (file
 * missing, not qcow2 v3), IN_USE (image locked by a writer). */
typedef struct rp_vs_opts {
  const char *qmp_socket;   /* NULL: the VM is managed offline only */
  const char *agent_socket; /* NULL: no application consistency while running */
  const char *capture;      /* NULL or "snapshot" (default), or "fleecing" */
} rp_vs_opts;
int rp_vs_add(rp_ctx *ctx, const char *name, const char *const *disk_paths, size_t n_disks,
              const rp_vs_opts *opts, rp_vs_info **out);
/* Registers the libvirt domain `domain` (UUID or name) of uri (NULL:
 * qemu:///system): GUID = domain UUID, ElementName = domain name, disks =
 * the XML's qcow2 disks (device='disk') in XML order with their target dev.
 * *skipped (may be NULL) gets one line per disk not covered ("vdb
 * /path: a raw disk ..."; caller frees with rp_strv_free). Errors:
 * NOT_SUPPORTED (built without libvirt), NOT_AVAILABLE (libvirtd does not
 * answer), NOT_FOUND (no such domain), INVALID_PARAMETER (already
 * registered, no qcow2 disk), IN_USE/DISK_CHANGED as rp_vs_add. agent and
 * capture of opts apply (qmp_socket must be NULL). */
int rp_vs_add_libvirt(rp_ctx *ctx, const char *uri, const char *domain, const rp_vs_opts *opts,
                      rp_vs_info **out, char ***skipped, size_t *n_skipped);
/* Registers every domain of uri not registered yet (domains without a
 * qcow2 disk are skipped with a line in *skipped). *out gets the new VSs. */
int rp_vs_discover(rp_ctx *ctx, const char *uri, rp_vs_info ***out, size_t *n, char ***skipped,
                   size_t *n_skipped);
void rp_strv_free(char **v, size_t n);
/* Sets or clears (NULL fields) the sockets of a registered VS. When the QMP
 * socket answers, the disks must be open in that QEMU. */
int rp_vs_set_live(rp_ctx *ctx, const char *vs, const rp_vs_opts *opts);
/* vs: GUID or friendly name. NOT_FOUND when unknown. */
int rp_vs_get(rp_ctx *ctx, const char *vs, rp_vs_info **out);
int rp_vs_list(rp_ctx *ctx, rp_vs_info ***out, size_t *n); /* free with rp_vs_list_free */
/* Fails with INVALID_STATE while the VS has reference points. */
int rp_vs_remove(rp_ctx *ctx, const char *vs);
void rp_vs_info_free(rp_vs_info *vs);
void rp_vs_list_free(rp_vs_info **list, size_t n);

/* ---- reference points -------------------------------------------------- */

typedef struct rp_point_info {
  char *instance_id;              /* "Microsoft:<RP GUID>" */
  char *guid;                     /* the RP GUID alone (export folder name) */
  char *virtual_system_identifier; /* VS GUID */
  char *element_name;
  uint16_t reference_point_type; /* 2 = RCT based */
  uint16_t consistency_level;    /* 1 application, 2 crash */
  bool has_associated_data;
  char *data_reason; /* why HasAssociatedData is false, or NULL */
  bool change_tracking_valid; /* can serve as a base for a later RP */
  char *tracking_reason;      /* why not, or NULL */
  bool imported;              /* made by ImportReferencePointMetadata */
  int64_t created;            /* unix seconds */
  int64_t sequence;           /* position in the VS's history */
  size_t n_disks;
  char **virtual_disk_identifiers; /* disk InstanceIDs */
  char **rct_identifiers;          /* index-aligned */
} rp_point_info;

/* CreateReferencePoint. vs: GUID or name. type: 1 or 2 (both mean RCT);
 * consistency: 2 crash, 1 application (accepted for a shut-off VS, whose
 * disks are quiescent; for a running VS the guest's file systems are
 * frozen through qemu-guest-agent around the capture, and the call fails
 * with NOT_AVAILABLE when no agent answers). Atomic across all disks. For
 * a running VS: one QMP transaction for all disks. job may be NULL. */
int rp_point_create(rp_ctx *ctx, const char *vs, uint16_t type, uint16_t consistency,
                    rp_job *job, rp_point_info **out);
/* rp: InstanceID or GUID. */
int rp_point_get(rp_ctx *ctx, const char *rp, rp_point_info **out);
/* vs may be NULL for all. Oldest first. */
int rp_point_list(rp_ctx *ctx, const char *vs, rp_point_info ***out, size_t *n);
int rp_point_destroy(rp_ctx *ctx, const char *rp, rp_job *job);
int rp_point_remove_data(rp_ctx *ctx, const char *rp, rp_job *job);
/* ImportReferencePointMetadata: re-creates the RP described by an export's
 * config and runtime-state files on the VS, whose disks must hold exactly
 * that RP's content. Change tracking starts now. */
int rp_point_import(rp_ctx *ctx, const char *vs, const char *config_file,
                    const char *runtime_state_file, rp_job *job, rp_point_info **out);
void rp_point_info_free(rp_point_info *p);
void rp_point_list_free(rp_point_info **list, size_t n);

/* ---- exports ------------------------------------------------------------ */

typedef struct rp_export_opts {
  const char *base_rp;           /* NULL or "": full export */
  const char *const *disks;      /* disk InstanceIDs or GUIDs; NULL/0: all */
  size_t n_disks;
} rp_export_opts;

typedef struct rp_export_result {
  char *export_directory; /* as given (the backup root) */
  char *export_path;      /* export_directory/<RP GUID>: created by this export */
  char *rp_id;            /* InstanceID */
  char *base_rp_id;       /* InstanceID or NULL */
  char *vs_id;
  char *config_file;
  char *runtime_file;
  char *manifest_file;
  size_t n_disks;
  char **disk_ids;   /* disk InstanceIDs */
  char **disk_files; /* absolute paths of the per-disk qcow2 files */
  uint64_t bytes_data;  /* data bytes written */
  uint64_t bytes_zero;  /* bytes recorded as zero clusters */
  uint64_t bytes_virtual; /* sum of disk sizes */
  double seconds;
} rp_export_result;

/* ExportReferencePoint. export_directory must be absolute; the export lands
 * in export_directory/<RP GUID> atomically. */
int rp_export(rp_ctx *ctx, const char *rp, const char *export_directory,
              const rp_export_opts *opts, rp_job *job, rp_export_result **out);
void rp_export_result_free(rp_export_result *r);

/* Checks each export's checksums against its disk files. Returns 0 when all
 * match; VERIFY_FAILED otherwise (message names the first mismatch). */
int rp_verify(const char *const *export_paths, size_t n, rp_job *job);

typedef struct rp_restore_result {
  size_t n_disks;
  char **disk_ids;
  char **files; /* restored qcow2 images */
} rp_restore_result;
/* Restores a chain (a full export, then incrementals, oldest first) into
 * to_dir (created if missing), one qcow2 per disk. */
int rp_restore(const char *const *export_paths, size_t n, const char *to_dir, rp_job *job,
               rp_restore_result **out);
void rp_restore_result_free(rp_restore_result *r);

/* ---- job records (for refpointd: its jobs survive a restart) ------------ */

typedef struct rp_job_record {
  char id[37];
  int type;            /* CIM JobType */
  int state;           /* CIM JobState */
  int percent;
  uint32_t error_code;
  char *description;   /* ErrorDescription, or NULL */
  int64_t started, ended; /* unix seconds; ended 0 while running */
  char *detail;        /* the caller's own text (refpointd: JSON), or NULL */
} rp_job_record;

/* Inserts or replaces the record with r->id. */
int rp_jobrec_put(rp_ctx *ctx, const rp_job_record *r);
int rp_jobrec_list(rp_ctx *ctx, rp_job_record **out, size_t *n); /* oldest first */
int rp_jobrec_delete(rp_ctx *ctx, const char *id);
void rp_jobrec_list_free(rp_job_record *l, size_t n);

/* Removes what an interrupted export of rp left in export_directory (the
 * dot-named partial folders of processes that are gone). */
void rp_export_cleanup(const char *export_directory, const char *rp);

#ifdef __cplusplus
}
#endif
#endif
