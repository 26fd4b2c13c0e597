/* service.h — internals shared by service.c (context, virtual systems,
 * reference points, reconciliation) and export.c (exports). */
#ifndef RP_SERVICE_H
#define RP_SERVICE_H
#include "engine.h"
#include "store.h"
#include <string.h>

struct rp_ctx {
  char *dir;
  rp_store *st;
  rp_warn_fn warn;
  void *warn_user;
  rp_vm *vm; /* the running VM of the operation in progress, or NULL */
  bool export_group_set; /* exports and restores readable by this group */
  gid_t export_gid;
};

enum { RECON_STRICT = 1, RECON_REPAIR = 2, RECON_READ = 4 };

/* Takes the per-VS lock (flock on <state>/locks/<guid>.lock), shared or
 * exclusive, without waiting: IN_USE when another operation holds it.
 * Returns the fd to pass to rp_vs_unlock. */
int rp_vs_lock(rp_ctx *ctx, const char *vs_guid, bool exclusive, const char *op);
void rp_vs_unlock(int fd);

/* Attaches ctx to the running VM of vs (live.h) for the operation that
 * holds vs's lock; leaves ctx->vm NULL when vs is shut off. Detach before
 * unlocking (rp_vs_unlock_op does both). */
int rp_op_attach(rp_ctx *ctx, rp_vs_info *vs);
void rp_op_detach(rp_ctx *ctx);
void rp_vs_unlock_op(rp_ctx *ctx, int fd);

/* Compares the store with the disks of vs and records what drifted
 * (see service.c). states[i] receives the inspected image of disk i (NULL
 * when it could not be read and !STRICT); free with rp_states_free. */
int rp_reconcile(rp_ctx *ctx, const rp_vs_info *vs, int flags, rp_image_state ***states);
void rp_states_free(rp_image_state **s, size_t n);

/* Fills info.change_tracking_valid / tracking_reason from the epochs. */
int rp_fill_tracking(rp_ctx *ctx, rp_rp_rec *r);
void rp_warnf(rp_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *rp_snapshot_name(const char *rp_guid); /* refpoint-rp-<guid> */
/* Whether r keeps its data in fleecing views (live.h) rather than snapshots. */
static inline bool rp_is_fleece(const rp_rp_rec *r)
{
  return r->data_kind && !strcmp(r->data_kind, "fleecing");
}
/* Undoes what a create/import did to one disk (snapshot, new bitmap,
 * disabled previous epoch bitmap); idempotent. Any of the names may be NULL.
 * When the previous epoch's bitmap was found disabled with no new bitmap to
 * take over (writes since then were recorded by nothing), *lost receives
 * the reason (caller frees; mark the epoch with rp_epoch_mark_lost) and the
 * bitmap is not re-enabled; else *lost is NULL. */
int rp_undo_disk(rp_vm *vm, const char *path, const char *snap, const char *bitmap, const char *prev,
                 char **lost);
/* Marks the epoch of disk_guid whose bitmap is `bitmap` as no longer valid,
 * with the reason (inside the caller's store transaction); warns. */
int rp_epoch_mark_lost(rp_ctx *ctx, const char *disk_guid, const char *bitmap, const char *why);
/* The disk of vs with that GUID (its index in *idx), or NULL. */
const rp_disk_info *rp_vs_disk(const rp_vs_info *vs, const char *guid, size_t *idx);
/* The commit step of Create and Import: in one transaction, close each
 * disk's open epoch at r's sequence (marked invalid with the reason
 * `invalidate` unless NULL), open r's new epochs, mark r ready (in the store
 * and in r, whose tracking fields are filled). */
int rp_commit_new_point(rp_ctx *ctx, rp_rp_rec *r, const char *invalidate);
#endif
