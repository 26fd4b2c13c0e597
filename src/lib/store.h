/* store.h — the state store (SQLite). The only module that touches sqlite3.
 *
 * Tables: vs (virtual systems), disk, rp (reference points), rp_disk (the
 * RP's RCT ID per disk), epoch (change-tracking epochs: one qcow2 bitmap per
 * disk per epoch, covering [start_seq, end_seq) of the VS's RP sequence).
 * All calls set the error record on failure (SQLITE_BUSY -> IN_USE). */
#ifndef RP_STORE_H
#define RP_STORE_H
#include "internal.h"
#include <stdbool.h>

#define RP_SCHEMA_VERSION 6

typedef struct rp_store rp_store;

int rp_store_open(const char *db_path, rp_store **out);
void rp_store_close(rp_store *st);
int rp_store_begin(rp_store *st); /* BEGIN IMMEDIATE */
int rp_store_commit(rp_store *st);
void rp_store_rollback(rp_store *st);

/* Virtual systems. Records use the public structs; disks carry guid. */
int rp_store_vs_insert(rp_store *st, const rp_vs_info *vs);
int rp_store_vs_get(rp_store *st, const char *guid_or_name, rp_vs_info **out); /* NOT_FOUND */
int rp_store_vs_list(rp_store *st, rp_vs_info ***out, size_t *n);
int rp_store_vs_delete(rp_store *st, const char *guid);
/* 1 when a reference point of the VS keeps data in a fleecing view, 0 not. */
int rp_store_vs_has_fleece(rp_store *st, const char *guid);
/* Sets (NULL: clears) the QMP and guest agent sockets of a VS. */
/* A disk's new file (libvirt moved it); forgets its checked signature. */
int rp_store_disk_set_path(rp_store *st, const char *disk_guid, const char *path);
int rp_store_vs_set_live(rp_store *st, const char *guid, const char *qmp, const char *agent,
                         const char *capture);
/* The signature (inode, size, mtime, ctime) a disk file had when it was last
 * reconciled without findings; NULL when none. Caller frees *sig. */
int rp_store_disk_sig(rp_store *st, const char *disk_guid, char **sig);
int rp_store_disk_set_sig(rp_store *st, const char *disk_guid, const char *sig);
/* Returns the next RP sequence number of the VS and advances it; -1 on error. */
int64_t rp_store_vs_take_seq(rp_store *st, const char *guid);

/* Reference points. state: "creating" or "ready". */
typedef struct rp_rp_rec {
  rp_point_info info;
  char *state;
  char **disk_guids;   /* index-aligned with info.virtual_disk_identifiers */
  char **origin_disks; /* disk InstanceID in the exported RP (imports), else same */
  char *data_kind;     /* NULL: internal snapshots; "fleecing": views inside QEMU */
} rp_rp_rec;
int rp_store_rp_insert(rp_store *st, const rp_rp_rec *r);
int rp_store_rp_get(rp_store *st, const char *guid, rp_rp_rec **out); /* NOT_FOUND */
/* All RPs of a VS (any state), oldest first. */
int rp_store_rp_list(rp_store *st, const char *vs_guid, rp_rp_rec ***out, size_t *n);
int rp_store_rp_set_state(rp_store *st, const char *guid, const char *state);
int rp_store_rp_set_data(rp_store *st, const char *guid, bool has_data, const char *reason);
int rp_store_rp_delete(rp_store *st, const char *guid);
void rp_rp_rec_free(rp_rp_rec *r);
/* Moves the public part out (caller frees with rp_point_info_free) and
 * frees the rest of r. */
rp_point_info *rp_rp_rec_take_info(rp_rp_rec *r);
void rp_rp_list_free(rp_rp_rec **l, size_t n);

/* Change-tracking epochs of one disk. end_seq -1 = open (recording). */
typedef struct rp_epoch {
  char *bitmap;
  char *disk;
  int64_t start_seq, end_seq;
  bool valid;
  char *reason;
} rp_epoch;
int rp_store_epochs(rp_store *st, const char *disk_guid, rp_epoch **out, size_t *n); /* by start */
int rp_store_epoch_insert(rp_store *st, const rp_epoch *e);
int rp_store_epoch_update(rp_store *st, const rp_epoch *e); /* by bitmap */
int rp_store_epoch_delete(rp_store *st, const char *bitmap);
void rp_epochs_free(rp_epoch *e, size_t n);

/* Job records (the public rp_jobrec_* calls). */
int rp_store_job_put(rp_store *st, const rp_job_record *r);
int rp_store_job_list(rp_store *st, rp_job_record **out, size_t *n);
int rp_store_job_delete(rp_store *st, const char *id);
#endif
