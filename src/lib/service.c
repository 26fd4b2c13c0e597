/* service.c — the reference point service for shut-off virtual systems:
 * context, virtual systems, CreateReferencePoint, DestroyReferencePoint,
 * RemoveAssociatedData, ImportReferencePointMetadata, and reconciliation.
 *
 * Model (DESIGN.md sections 2 and 3). A reference point (RP) with sequence
 * number s owns, on every disk, an internal snapshot refpoint-rp-<guid>
 * (its associated data). Change tracking is a series of epochs per disk,
 * each a persistent qcow2 bitmap covering [start_seq, end_seq) of the RP
 * sequence; the epoch that starts at an RP has that RP's RCT ID as bitmap
 * name, and the newest epoch is open (enabled). "Changed between RP i and
 * RP j" is the union of the epochs in [seq_i, seq_j); it is usable only if
 * every one of them is valid. Destroying an RP merges the epoch that
 * starts at it into the one before (so nothing is under-reported).
 *
 * Crash safety. Every multi-step change first records its intent in the
 * store (an RP row in state "creating"), then changes the images, then
 * commits. Reconciliation under the exclusive VS lock rolls back whatever
 * a dead process left half done; reconciliation in any mode marks RPs
 * whose data or change tracking is gone, with the reason. */
#include "service.h"
#include "live.h"
#include "lvirt.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

void rp_warnf(rp_ctx *ctx, const char *fmt, ...)
{
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (ctx->warn)
    ctx->warn(ctx->warn_user, line);
}

char *rp_snapshot_name(const char *rp_guid)
{
  return rp_xasprintf(RP_PREFIX "rp-%s", rp_guid);
}

/* Ends RP r's fleecing views: the jobs and nodes in the running VM (if
 * any), and the scratch files. Returns -1 (error set) when QEMU refused. */
static int fleece_drop(rp_ctx *ctx, const char *rp_guid, size_t n)
{
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    CLEANUP_FREE char *node = rp_fleece_name(rp_guid, i);
    CLEANUP_FREE char *file = rp_fleece_file(ctx->dir, rp_guid, i);
    if (access(file, F_OK) < 0 && errno == ENOENT)
      continue; /* released before (the file goes last) */
    if (ctx->vm && rp_vm_fleece_release(ctx->vm, node) < 0)
      rc = -1;
    else
      unlink(file);
  }
  return rc;
}

static int check_writable(rp_ctx *ctx, const rp_vs_info *vs);

static char *new_bitmap_name(void)
{
  char u[37];
  rp_uuid(u);
  return rp_xasprintf(RP_PREFIX "%s", u);
}

/* ---- context ------------------------------------------------------------ */

rp_ctx *rp_open(const char *state_dir)
{
  rp_err_clear();
  const char *d = state_dir;
  if (!d || !*d)
    d = getenv("REFPOINT_STATE_DIR");
  if (!d || !*d)
    d = "/var/lib/refpoint";
  rp_ctx *ctx = rp_xcalloc(1, sizeof *ctx);
  ctx->dir = rp_abspath(d);
  if (!ctx->dir) {
    free(ctx);
    rp_err_set(RP_E_FAILED, errno, "state directory %s", d);
    return NULL;
  }
  CLEANUP_FREE char *locks = rp_xasprintf("%s/locks", ctx->dir);
  CLEANUP_FREE char *db = rp_xasprintf("%s/refpoint.db", ctx->dir);
  if (rp_mkdir_p(ctx->dir, 0700) < 0 || rp_mkdir_p(locks, 0700) < 0 ||
      rp_store_open(db, &ctx->st) < 0) {
    rp_err_prefix("state directory %s", ctx->dir);
    free(ctx->dir);
    free(ctx);
    return NULL;
  }
  return ctx;
}

void rp_close(rp_ctx *ctx)
{
  if (!ctx)
    return;
  rp_store_close(ctx->st);
  free(ctx->dir);
  free(ctx);
}

const char *rp_state_dir(const rp_ctx *ctx)
{
  return ctx->dir;
}

int rp_set_export_group(rp_ctx *ctx, const char *group)
{
  rp_err_clear();
  ctx->export_group_set = false;
  if (!group)
    return 0;
  char *end;
  unsigned long n = strtoul(group, &end, 10);
  if (*group && !*end && n < 0xffffffffUL) {
    ctx->export_gid = (gid_t)n;
  } else {
    struct group *g = getgrnam(group);
    if (!g)
      return rp_err_set(RP_E_INVALID_PARAMETER, 0, "export group '%s' does not exist", group);
    ctx->export_gid = g->gr_gid;
  }
  ctx->export_group_set = true;
  return 0;
}

void rp_set_warn(rp_ctx *ctx, rp_warn_fn fn, void *user)
{
  ctx->warn = fn;
  ctx->warn_user = user;
}

int rp_vs_lock(rp_ctx *ctx, const char *vs_guid, bool exclusive, const char *op)
{
  CLEANUP_FREE char *p = rp_xasprintf("%s/locks/%s.lock", ctx->dir, vs_guid);
  int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return rp_err_set(rp_err_from_errno(errno), errno, "%s: lock %s", op, p);
  if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return rp_err_set(RP_E_IN_USE, 0,
                        "%s: virtual system %s is in use by another operation", op, vs_guid);
    return rp_err_set(RP_E_FAILED, e, "%s: lock %s", op, p);
  }
  return fd;
}

void rp_vs_unlock(int fd)
{
  if (fd >= 0)
    close(fd); /* releases the flock */
}

/* A libvirt VS: its disks as the domain XML has them now, against the
 * store. A disk libvirt moved to another file (blockcopy pivot, an edited
 * XML) is recorded: the store follows the new file, whose reconciliation
 * then finds which snapshots and bitmaps came along (blockcopy carries only
 * recording bitmaps) and marks the older RPs with the reason. An external
 * snapshot overlay on top, a removed disk or a disk that is no longer
 * qcow2 are refused with the cause: nothing is recorded, since blockcommit
 * or an undo brings the disk back unchanged. */
static int sync_libvirt_disks(rp_ctx *ctx, rp_vs_info *vs)
{
  if (!vs->libvirt_uri)
    return 0;
  rp_lv *lv = NULL;
  rp_lv_disk *xd = NULL;
  size_t nx = 0;
  int rc = -1;
  if (rp_lv_open(vs->libvirt_uri, vs->name, &lv) < 0 || rp_lv_disks(lv, &xd, &nx) < 0)
    goto out;
  for (size_t i = 0; i < vs->n_disks; i++) {
    rp_disk_info *d = &vs->disks[i];
    const rp_lv_disk *x = NULL;
    for (size_t j = 0; j < nx && !x; j++)
      if (d->target && !strcmp(xd[j].target, d->target))
        x = &xd[j];
    for (size_t j = 0; j < nx && !x; j++) /* target renamed, same file */
      if (xd[j].source && !strcmp(xd[j].source, d->path))
        x = &xd[j];
    if (!x) {
      rp_err_set(RP_E_DISK_CHANGED, 0,
                 "disk %s (target %s, %s) is no longer a disk of libvirt domain %s (removed, "
                 "or its target renamed)",
                 d->instance_id, d->target ? d->target : "?", d->path, rp_lv_name(lv));
      goto out;
    }
    if (x->source && !strcmp(x->source, d->path))
      continue;
    if (x->overlay) {
      rp_err_set(RP_E_DISK_CHANGED, 0,
                 "disk %s (target %s) of libvirt domain %s now writes to %s, an external "
                 "snapshot overlay on top of %s; refpoint works on the active layer it "
                 "registered: merge the overlay back (virsh blockcommit %s %s --active --pivot) "
                 "and try again",
                 d->instance_id, x->target, rp_lv_name(lv), x->source ? x->source : "?", d->path,
                 rp_lv_name(lv), x->target);
      goto out;
    }
    const char *why = rp_lv_disk_uncovered(x);
    if (why) {
      rp_err_set(RP_E_DISK_CHANGED, 0,
                 "disk %s (target %s) of libvirt domain %s moved from %s to %s, which refpoint "
                 "cannot cover (%s)",
                 d->instance_id, x->target, rp_lv_name(lv), d->path, x->source ? x->source : "?",
                 why);
      goto out;
    }
    rp_warnf(ctx,
             "disk %s (target %s) of libvirt domain %s moved from %s to %s (blockcopy pivot, or "
             "the domain XML was edited); reference points keep only what came along to the new "
             "file",
             d->instance_id, x->target, rp_lv_name(lv), d->path, x->source);
    if (rp_store_begin(ctx->st) < 0)
      goto out;
    if (rp_store_disk_set_path(ctx->st, d->guid, x->source) < 0 || rp_store_commit(ctx->st) < 0) {
      rp_store_rollback(ctx->st);
      if (strstr(rp_last_error()->message, "UNIQUE"))
        rp_err_set(RP_E_DISK_CHANGED, 0, "disk %s moved to %s, which another registered disk uses",
                   d->instance_id, x->source);
      goto out;
    }
    free(d->path);
    d->path = rp_xstrdup(x->source);
  }
  rc = 0;
out:
  rp_lv_disks_free(xd, nx);
  rp_lv_close(lv);
  return rc;
}

int rp_op_attach(rp_ctx *ctx, rp_vs_info *vs)
{
  rp_op_detach(ctx);
  if (sync_libvirt_disks(ctx, vs) < 0)
    return rp_err_prefix("virtual system %s", vs->element_name);
  if (rp_vm_attach(ctx->dir, vs, 30000, &ctx->vm, NULL) < 0)
    return -1;
  /* a neighbour's job on the VM: reads went on, an operation does not */
  if (ctx->vm && ctx->vm->busy) {
    rp_err_set(RP_E_IN_USE, 0, "virtual system %s: %s; try again when it has ended",
               vs->element_name, ctx->vm->busy);
    rp_op_detach(ctx);
    return -1;
  }
  return 0;
}

void rp_op_detach(rp_ctx *ctx)
{
  rp_vm_detach(ctx->vm);
  ctx->vm = NULL;
}

void rp_vs_unlock_op(rp_ctx *ctx, int fd)
{
  rp_op_detach(ctx);
  rp_vs_unlock(fd);
}

void rp_states_free(rp_image_state **s, size_t n)
{
  if (!s)
    return;
  for (size_t i = 0; i < n; i++)
    rp_image_state_free(s[i]);
  free(s);
}

/* ---- reconciliation ----------------------------------------------------- */

/* Undoes what a CreateReferencePoint/Import may have done to one disk:
 * its snapshot, its new bitmap, the disabling of the previous open epoch.
 * Idempotent: looks at the image first. Create and Import add the new
 * epoch's bitmap before they disable the previous one, so some enabled
 * bitmap records every write at every instant; "previous disabled, new
 * absent" means writes may have gone unrecorded (a process of an older
 * version killed between its two steps, or another tool): that is lost
 * tracking, never a silent re-enable. */
int rp_undo_disk(rp_vm *vm, const char *path, const char *snap, const char *bitmap,
                 const char *prev, char **lost)
{
  *lost = NULL;
  rp_image_state *s;
  if (rp_engine_inspect(vm, path, &s) < 0)
    return -1;
  int rc = 0;
  if (snap && rp_image_has_snapshot(s, snap) && rp_engine_snapshot_delete(vm, path, snap) < 0)
    rc = -1;
  /* the previous epoch records again, and takes over what the new bitmap
   * recorded meanwhile (writes between the capture and this undo), before
   * the new one goes: nothing written is ever missing from an epoch */
  const rp_bitmap_st *pb = prev ? rp_image_bitmap(s, prev) : NULL;
  const rp_bitmap_st *nb = bitmap ? rp_image_bitmap(s, bitmap) : NULL;
  if (pb && !pb->enabled && !pb->in_use) {
    if (nb && !nb->in_use) {
      if (rp_engine_bitmap_merge(vm, path, bitmap, prev, true) < 0)
        rc = -1;
    } else {
      *lost = rp_xasprintf("change-tracking bitmap %s on %s was found disabled by an interrupted "
                           "operation with no bitmap recording after it (writes since then are "
                           "tracked by nothing)",
                           prev, path);
    }
  }
  if (bitmap && nb && rp_engine_bitmap_remove(vm, path, bitmap) < 0)
    rc = -1;
  rp_image_state_free(s);
  if (rc < 0) {
    free(*lost);
    *lost = NULL;
  }
  return rc;
}

int rp_epoch_mark_lost(rp_ctx *ctx, const char *disk_guid, const char *bitmap, const char *why)
{
  rp_epoch *ep;
  size_t nep;
  if (rp_store_epochs(ctx->st, disk_guid, &ep, &nep) < 0)
    return -1;
  int rc = 0;
  for (size_t k = 0; k < nep && rc == 0; k++) {
    if (strcmp(ep[k].bitmap, bitmap) || !ep[k].valid)
      continue;
    ep[k].valid = false;
    free(ep[k].reason);
    ep[k].reason = rp_xstrdup(why);
    rp_warnf(ctx, "%s; reference points spanning it can no longer be a base", why);
    rc = rp_store_epoch_update(ctx->st, &ep[k]);
  }
  rp_epochs_free(ep, nep);
  return rc;
}

static const rp_epoch *open_epoch(const rp_epoch *e, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (e[i].end_seq < 0)
      return &e[i];
  return NULL;
}

/* Rolls back RPs left in state "creating" by a process that died. */
static int rollback_pending(rp_ctx *ctx, const rp_vs_info *vs, rp_rp_rec **rps, size_t nrp)
{
  for (size_t k = 0; k < nrp; k++) {
    rp_rp_rec *r = rps[k];
    if (strcmp(r->state, "creating"))
      continue;
    CLEANUP_FREE char *snap = rp_snapshot_name(r->info.guid);
    if (rp_is_fleece(r) && fleece_drop(ctx, r->info.guid, r->info.n_disks) < 0)
      return rp_err_prefix("roll back unfinished reference point %s", r->info.instance_id);
    for (size_t i = 0; i < r->info.n_disks; i++) {
      const rp_disk_info *d = NULL;
      for (size_t j = 0; j < vs->n_disks; j++)
        if (!strcmp(vs->disks[j].guid, r->disk_guids[i]))
          d = &vs->disks[j];
      if (!d)
        continue;
      rp_epoch *ep;
      size_t nep;
      if (rp_store_epochs(ctx->st, d->guid, &ep, &nep) < 0)
        return -1;
      const rp_epoch *o = open_epoch(ep, nep);
      CLEANUP_FREE char *prev = o && o->valid ? rp_xstrdup(o->bitmap) : NULL;
      rp_epochs_free(ep, nep);
      CLEANUP_FREE char *lost = NULL;
      if (rp_undo_disk(ctx->vm, d->path, r->info.imported ? NULL : snap, r->info.rct_identifiers[i],
                       prev, &lost) < 0 ||
          (lost && rp_epoch_mark_lost(ctx, d->guid, prev, lost) < 0))
        return rp_err_prefix("roll back unfinished reference point %s", r->info.instance_id);
    }
    if (rp_store_rp_delete(ctx->st, r->info.guid) < 0)
      return -1;
    rp_warnf(ctx, "rolled back reference point %s that an interrupted operation left unfinished",
             r->info.instance_id);
  }
  return 0;
}

/* A disk file's signature: any change to its snapshots or bitmaps goes
 * through a write, which moves mtime/ctime (and a replaced file has another
 * inode). */
static char *file_sig(const char *path)
{
  struct stat st;
  if (stat(path, &st) < 0)
    return NULL;
  return rp_xasprintf("%llu:%llu:%lld.%09ld:%lld.%09ld", (unsigned long long)st.st_ino,
                      (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec,
                      st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

/* Our snapshots and bitmaps on disk d that no RP and no epoch of the store
 * knows: left by a destroy that died after its commit, or whose clean-up
 * failed. Runs under the exclusive VS lock after pending RPs were rolled
 * back, so nothing of ours is half made. Temporary bitmaps (refpoint-x-)
 * are an export's and left to it. */
static void remove_orphans(rp_ctx *ctx, const rp_disk_info *d, const rp_image_state *s,
                           const rp_epoch *ep, size_t nep, rp_rp_rec **rps, size_t nrp)
{
  for (size_t i = 0; i < s->n_snapshots; i++) {
    const char *n = s->snapshots[i];
    if (strncmp(n, RP_PREFIX "rp-", strlen(RP_PREFIX "rp-")))
      continue;
    bool known = false;
    for (size_t k = 0; k < nrp && !known; k++) {
      CLEANUP_FREE char *sn = rp_snapshot_name(rps[k]->info.guid);
      known = !strcmp(sn, n);
    }
    if (known)
      continue;
    rp_warnf(ctx, "disk %s: removing snapshot %s of a reference point that no longer exists",
             d->path, n);
    if (rp_engine_snapshot_delete(ctx->vm, d->path, n) < 0)
      rp_warnf(ctx, "%s", rp_last_error()->message);
  }
  for (size_t i = 0; i < s->n_bitmaps; i++) {
    const char *n = s->bitmaps[i].name;
    if (strncmp(n, RP_PREFIX, strlen(RP_PREFIX)) || !strncmp(n, RP_PREFIX "x-", strlen(RP_PREFIX "x-")) ||
        !rp_is_uuid(n + strlen(RP_PREFIX)))
      continue;
    bool known = false;
    for (size_t k = 0; k < nep && !known; k++)
      known = !strcmp(ep[k].bitmap, n);
    for (size_t k = 0; k < nrp && !known; k++)
      for (size_t j = 0; j < rps[k]->info.n_disks && !known; j++)
        known = !strcmp(rps[k]->info.rct_identifiers[j], n);
    if (known)
      continue;
    rp_warnf(ctx, "disk %s: removing change-tracking bitmap %s that no epoch uses any more",
             d->path, n);
    if (rp_engine_bitmap_remove(ctx->vm, d->path, n) < 0)
      rp_warnf(ctx, "%s", rp_last_error()->message);
  }
}

/* The signature a disk is trusted by: its file's, and, while a QEMU runs
 * it, which QEMU (a QEMU killed and started again holds the same unchanged
 * file, but its bitmaps came up inconsistent). */
static char *disk_sig(rp_ctx *ctx, const char *path)
{
  char *f = file_sig(path);
  if (!f || !ctx->vm)
    return f;
  char *s = rp_xasprintf("%s|%s", f, ctx->vm->qemu_id ? ctx->vm->qemu_id : "qemu");
  free(f);
  return s;
}

int rp_reconcile(rp_ctx *ctx, const rp_vs_info *vs, int flags, rp_image_state ***states_out)
{
  rp_rp_rec **rps = NULL;
  size_t nrp = 0;
  rp_image_state **states = rp_xcalloc(vs->n_disks, sizeof *states);
  int rc = -1;
  bool in_tx = false;

  if (flags & RECON_READ) {
    /* every disk unchanged since it was last found consistent: nothing to
     * look at (a half-made RP of a dead process would have changed its
     * file; a live one holds the exclusive lock, so reads skip us) */
    /* (a fleecing view can vanish with QEMU without any file changing) */
    bool all_same = rp_store_vs_has_fleece(ctx->st, vs->name) == 0;
    for (size_t i = 0; i < vs->n_disks && all_same; i++) {
      CLEANUP_FREE char *sg = disk_sig(ctx, vs->disks[i].path);
      CLEANUP_FREE char *old = NULL;
      all_same = sg && rp_store_disk_sig(ctx->st, vs->disks[i].guid, &old) == 0 && old &&
                 !strcmp(old, sg);
    }
    if (all_same) {
      rc = 0;
      goto out;
    }
  }
  if (rp_store_rp_list(ctx->st, vs->name, &rps, &nrp) < 0)
    goto out;
  bool pending = false;
  for (size_t k = 0; k < nrp; k++)
    pending |= !strcmp(rps[k]->state, "creating");
  if (pending && (flags & RECON_REPAIR)) {
    if (rp_store_begin(ctx->st) < 0)
      goto out;
    in_tx = true;
    if (rollback_pending(ctx, vs, rps, nrp) < 0 || rp_store_commit(ctx->st) < 0)
      goto out;
    in_tx = false;
    rp_rp_list_free(rps, nrp);
    rps = NULL;
    if (rp_store_rp_list(ctx->st, vs->name, &rps, &nrp) < 0)
      goto out;
    pending = false;
  }

  /* fleecing views live only in the running QEMU that made them */
  for (size_t k = 0; k < nrp; k++) {
    rp_rp_rec *r = rps[k];
    if (strcmp(r->state, "ready") || !rp_is_fleece(r))
      continue;
    bool alive = r->info.has_associated_data && ctx->vm != NULL;
    for (size_t j = 0; alive && j < r->info.n_disks; j++) {
      CLEANUP_FREE char *node = rp_fleece_name(r->info.guid, j);
      int has = rp_vm_has_node(ctx->vm, node);
      if (has < 0) /* QEMU did not answer: decide nothing */
        goto out;
      alive = has == 1;
    }
    if (r->info.has_associated_data && !alive) {
      const char *why = "its fleecing view ended with the QEMU process that held it (fleecing "
                        "keeps point-in-time data only while QEMU runs)";
      rp_warnf(ctx, "reference point %s lost its associated data: %s", r->info.instance_id, why);
      r->info.has_associated_data = false;
      if (rp_store_begin(ctx->st) < 0)
        goto out;
      in_tx = true;
      if (rp_store_rp_set_data(ctx->st, r->info.guid, false, why) < 0 ||
          rp_store_commit(ctx->st) < 0)
        goto out;
      in_tx = false;
    }
    if (!r->info.has_associated_data && (flags & RECON_REPAIR) &&
        fleece_drop(ctx, r->info.guid, r->info.n_disks) < 0)
      rp_warnf(ctx, "%s", rp_last_error()->message);
  }

  for (size_t i = 0; i < vs->n_disks; i++) {
    const rp_disk_info *d = &vs->disks[i];
    /* a pure read (rp show, rp list, enumerations) may trust a file that
     * has not changed since it was last found consistent; operations that
     * act on the images always look */
    CLEANUP_FREE char *sig = disk_sig(ctx, d->path);
    if ((flags & RECON_READ) && !pending && sig) {
      CLEANUP_FREE char *old = NULL;
      if (rp_store_disk_sig(ctx->st, d->guid, &old) == 0 && old && !strcmp(old, sig))
        continue;
    }
    if (rp_engine_inspect(ctx->vm, d->path, &states[i]) < 0) {
      states[i] = NULL;
      if ((flags & RECON_STRICT) || rp_last_error()->code == RP_E_IN_USE)
        goto out;
      rp_warnf(ctx, "disk %s: %s", d->instance_id, rp_last_error()->message);
      continue;
    }
    rp_image_state *s = states[i];
    bool found = false;
    if (!s->qcow2_v3 || s->corrupt) {
      rp_err_set(RP_E_DISK_CHANGED, 0, "disk %s (%s) is %s", d->instance_id, d->path,
                 s->corrupt ? "marked corrupt" : "no longer a qcow2 v3 image");
      if (flags & RECON_STRICT)
        goto out;
      rp_warnf(ctx, "%s", rp_last_error()->message);
      continue;
    }
    bool resized = s->virtual_size != d->virtual_size;
    rp_epoch *ep;
    size_t nep;
    if (rp_store_epochs(ctx->st, d->guid, &ep, &nep) < 0)
      goto out;
    if (rp_store_begin(ctx->st) < 0) {
      rp_epochs_free(ep, nep);
      goto out;
    }
    in_tx = true;
    for (size_t k = 0; k < nep; k++) {
      rp_epoch *e = &ep[k];
      if (!e->valid)
        continue;
      const rp_bitmap_st *b = rp_image_bitmap(s, e->bitmap);
      char *why = NULL;
      if (resized)
        why = rp_xasprintf("disk %s was resized from %llu to %llu bytes", d->path,
                           (unsigned long long)d->virtual_size,
                           (unsigned long long)s->virtual_size);
      else if (!b)
        why = rp_xasprintf("change-tracking bitmap %s is missing from %s (removed, or the disk "
                           "was replaced)",
                           e->bitmap, d->path);
      else if (b->in_use)
        why = rp_xasprintf("change-tracking bitmap %s on %s was left in-use by a writer that "
                           "did not exit cleanly",
                           e->bitmap, d->path);
      else if (e->end_seq < 0 && !b->enabled && !pending)
        why = rp_xasprintf("change-tracking bitmap %s on %s was disabled by someone else",
                           e->bitmap, d->path);
      if (!why)
        continue;
      found = true;
      e->valid = false;
      free(e->reason);
      e->reason = why;
      rp_warnf(ctx, "%s; reference points of %s spanning it can no longer be a base", why,
               vs->element_name);
      if (rp_store_epoch_update(ctx->st, e) < 0) {
        rp_epochs_free(ep, nep);
        goto out;
      }
    }
    /* associated data: snapshots */
    for (size_t k = 0; k < nrp; k++) {
      rp_rp_rec *r = rps[k];
      if (strcmp(r->state, "ready") || rp_is_fleece(r))
        continue;
      bool mine = false;
      for (size_t j = 0; j < r->info.n_disks; j++)
        mine |= !strcmp(r->disk_guids[j], d->guid);
      if (!mine)
        continue;
      CLEANUP_FREE char *snap = rp_snapshot_name(r->info.guid);
      bool present = rp_image_has_snapshot(s, snap);
      if (r->info.has_associated_data && !present) {
        CLEANUP_FREE char *why =
            rp_xasprintf("snapshot %s is missing from %s", snap, d->path);
        rp_warnf(ctx, "reference point %s lost its associated data: %s", r->info.instance_id, why);
        r->info.has_associated_data = false;
        found = true;
        if (rp_store_rp_set_data(ctx->st, r->info.guid, false, why) < 0) {
          rp_epochs_free(ep, nep);
          goto out;
        }
      }
    }
    if (rp_store_commit(ctx->st) < 0) {
      rp_epochs_free(ep, nep);
      goto out;
    }
    in_tx = false;
    if (flags & RECON_REPAIR) {
      /* drop our bitmaps that can never be used again (in-use), and
       * snapshots of RPs whose data was released */
      for (size_t k = 0; k < nep; k++) {
        const rp_bitmap_st *b = rp_image_bitmap(s, ep[k].bitmap);
        if (b && b->in_use && rp_engine_bitmap_remove(ctx->vm, d->path, ep[k].bitmap) < 0)
          rp_warnf(ctx, "%s", rp_last_error()->message);
      }
      for (size_t k = 0; k < nrp; k++) {
        if (rps[k]->info.has_associated_data)
          continue;
        CLEANUP_FREE char *snap = rp_snapshot_name(rps[k]->info.guid);
        if (rp_image_has_snapshot(s, snap) && rp_engine_snapshot_delete(ctx->vm, d->path, snap) < 0)
          rp_warnf(ctx, "%s", rp_last_error()->message);
      }
      remove_orphans(ctx, d, s, ep, nep, rps, nrp);
    }
    rp_epochs_free(ep, nep);
    /* remember the file as consistent: only when this pass found nothing
     * and changed nothing on it (repairs move the signature anyway) */
    CLEANUP_FREE char *sig2 = disk_sig(ctx, d->path);
    if (!resized && !found && sig2 && sig && !strcmp(sig, sig2))
      rp_store_disk_set_sig(ctx->st, d->guid, sig);
    if (resized) {
      rp_err_set(RP_E_DISK_CHANGED, 0, "disk %s (%s) was resized from %llu to %llu bytes",
                 d->instance_id, d->path, (unsigned long long)d->virtual_size,
                 (unsigned long long)s->virtual_size);
      if (flags & RECON_STRICT)
        goto out;
      rp_warnf(ctx, "%s", rp_last_error()->message);
    }
  }
  rc = 0;
out:
  if (in_tx)
    rp_store_rollback(ctx->st);
  rp_rp_list_free(rps, nrp);
  if (rc == 0 && states_out)
    *states_out = states;
  else
    rp_states_free(states, vs->n_disks);
  return rc;
}

/* Epochs of the disks of one VS, loaded once for many RPs. */
typedef struct epoch_cache {
  size_t n;
  char **disk;
  rp_epoch **ep;
  size_t *nep;
} epoch_cache;

static void epoch_cache_free(epoch_cache *c)
{
  for (size_t i = 0; i < c->n; i++) {
    free(c->disk[i]);
    rp_epochs_free(c->ep[i], c->nep[i]);
  }
  free(c->disk);
  free(c->ep);
  free(c->nep);
  memset(c, 0, sizeof *c);
}

static int epochs_of(rp_ctx *ctx, epoch_cache *c, const char *disk, rp_epoch **ep, size_t *n)
{
  for (size_t i = 0; c && i < c->n; i++)
    if (!strcmp(c->disk[i], disk)) {
      *ep = c->ep[i];
      *n = c->nep[i];
      return 0;
    }
  if (rp_store_epochs(ctx->st, disk, ep, n) < 0)
    return -1;
  if (c) {
    c->disk = rp_xrealloc(c->disk, (c->n + 1) * sizeof *c->disk);
    c->ep = rp_xrealloc(c->ep, (c->n + 1) * sizeof *c->ep);
    c->nep = rp_xrealloc(c->nep, (c->n + 1) * sizeof *c->nep);
    c->disk[c->n] = rp_xstrdup(disk);
    c->ep[c->n] = *ep;
    c->nep[c->n] = *n;
    c->n++;
  }
  return 0;
}

static int fill_tracking(rp_ctx *ctx, rp_rp_rec *r, epoch_cache *cache)
{
  rp_point_info *p = &r->info;
  p->change_tracking_valid = true;
  free(p->tracking_reason);
  p->tracking_reason = NULL;
  for (size_t i = 0; i < p->n_disks && p->change_tracking_valid; i++) {
    rp_epoch *ep;
    size_t n;
    if (epochs_of(ctx, cache, r->disk_guids[i], &ep, &n) < 0)
      return -1;
    const rp_epoch *e = NULL;
    for (size_t k = 0; k < n; k++)
      if (ep[k].start_seq == p->sequence)
        e = &ep[k];
    if (!e) {
      p->change_tracking_valid = false;
      p->tracking_reason = rp_xstrdup("no change tracking starts at this reference point");
    } else if (!e->valid) {
      p->change_tracking_valid = false;
      p->tracking_reason = rp_xstrdup(e->reason ? e->reason : "change tracking lost");
    }
    if (!cache)
      rp_epochs_free(ep, n);
  }
  return 0;
}

int rp_fill_tracking(rp_ctx *ctx, rp_rp_rec *r)
{
  return fill_tracking(ctx, r, NULL);
}

/* ---- virtual systems ---------------------------------------------------- */

static int check_name(const char *name)
{
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > 256)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "vm add: a name of 1 to 256 characters is needed");
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return rp_err_set(RP_E_INVALID_PARAMETER, 0, "vm add: the name has a control character");
  if (rp_is_uuid(name))
    return rp_err_set(RP_E_INVALID_PARAMETER, 0,
                      "vm add: the name '%s' looks like a GUID; GUIDs are assigned", name);
  return 0;
}

static int check_capture(const char *op, const char *c)
{
  if (c && strcmp(c, "snapshot") && strcmp(c, "fleecing"))
    return rp_err_set(RP_E_INVALID_PARAMETER, 0,
                      "%s: capture is snapshot or fleecing, not '%s'", op, c);
  return 0;
}

static int check_socket(const char *what, const char *p)
{
  if (p && (!*p || strlen(p) > 107))
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s socket path must have 1 to 107 characters",
                      what);
  return 0;
}

/* Inspects every disk of vs (through its running QEMU when there is one)
 * and fills the sizes; DISK_CHANGED when one is not a usable qcow2 v3. */
static int check_disks(rp_ctx *ctx, rp_vs_info *vs, const char *op)
{
  rp_vm *vm = NULL;
  char *state = NULL;
  if (rp_vm_attach(ctx->dir, vs, 30000, &vm, &state) < 0)
    return rp_err_prefix("%s", op);
  free(vs->runtime_state);
  vs->runtime_state = state;
  int rc = 0;
  for (size_t i = 0; i < vs->n_disks && rc == 0; i++) {
    rp_disk_info *d = &vs->disks[i];
    rp_image_state *s;
    if (rp_engine_inspect(vm, d->path, &s) < 0) {
      rc = rp_err_prefix("%s", op);
      break;
    }
    bool ok = s->qcow2_v3 && !s->corrupt;
    /* L7 of the audit: images every later operation would fail on are
     * refused here, with the reason, instead of accepted and failing later */
    const char *why = !ok ? NULL
                      : s->encrypted ? "an encrypted qcow2 (refpoint cannot pass its secret to qemu-img and qemu-nbd)"
                      : s->external_data ? "a qcow2 with an external data file (internal snapshots are not supported with one)"
                                         : NULL;
    d->virtual_size = s->virtual_size;
    rp_image_state_free(s);
    struct stat bst;
    if (ok && !why && stat(d->path, &bst) == 0 && !S_ISREG(bst.st_mode))
      why = "not a regular file (a qcow2 on a block device is not supported yet)";
    if (!ok)
      rc = rp_err_set(RP_E_DISK_CHANGED, 0, "%s: %s is not a qcow2 v3 (compat=1.1) image", op,
                      d->path);
    else if (why)
      rc = rp_err_set(RP_E_NOT_SUPPORTED, 0, "%s: %s is %s", op, d->path, why);
  }
  rp_vm_detach(vm);
  return rc;
}

/* The last steps of vm add (by hand or from libvirt): every disk inspected,
 * then the VS and its disks recorded in one transaction. */
static int register_vs(rp_ctx *ctx, rp_vs_info *vs)
{
  /* one image file is the disk of one VS, whatever path names it (a
   * symlink, a bind mount): two epochs recording on it would drift */
  rp_vs_info **all = NULL;
  size_t na = 0;
  if (rp_store_vs_list(ctx->st, &all, &na) < 0)
    return -1;
  int dup = 0;
  for (size_t i = 0; i < vs->n_disks && !dup; i++) {
    struct stat a;
    if (stat(vs->disks[i].path, &a) < 0)
      continue;
    for (size_t k = 0; k < na && !dup; k++)
      for (size_t j = 0; j < all[k]->n_disks && !dup; j++) {
        struct stat b;
        if (stat(all[k]->disks[j].path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
          dup = rp_err_set(RP_E_INVALID_PARAMETER, 0,
                           "vm add: %s is already registered: the same image as %s, a disk of %s", vs->disks[i].path,
                           all[k]->disks[j].path, all[k]->element_name);
      }
  }
  rp_vs_list_free(all, na);
  if (dup < 0)
    return -1;
  if (check_disks(ctx, vs, "vm add") < 0 || rp_store_begin(ctx->st) < 0)
    return -1;
  if (rp_store_vs_insert(ctx->st, vs) < 0) {
    rp_store_rollback(ctx->st);
    if (strstr(rp_last_error()->message, "UNIQUE"))
      rp_err_set(RP_E_INVALID_PARAMETER, 0,
                 "vm add: a virtual system named '%s' or one of its disks is already registered",
                 vs->element_name);
    return -1;
  }
  return rp_store_commit(ctx->st);
}

int rp_vs_add(rp_ctx *ctx, const char *name, const char *const *disk_paths, size_t n_disks,
              const rp_vs_opts *opts, rp_vs_info **out)
{
  rp_err_clear();
  if (check_name(name) < 0)
    return -1;
  if (n_disks == 0 || n_disks > 64)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "vm add: 1 to 64 disks are needed");
  if (opts && (check_socket("vm add: the QMP", opts->qmp_socket) < 0 ||
               check_socket("vm add: the guest agent", opts->agent_socket) < 0 ||
               check_capture("vm add", opts->capture) < 0))
    return -1;
  rp_vs_info *vs = rp_xcalloc(1, sizeof *vs);
  char g[37];
  rp_uuid(g);
  vs->name = rp_xstrdup(g);
  vs->element_name = rp_xstrdup(name);
  vs->runtime_state = rp_xstrdup("shut off");
  if (opts && opts->qmp_socket)
    vs->qmp_socket = rp_abspath(opts->qmp_socket);
  if (opts && opts->agent_socket)
    vs->agent_socket = rp_abspath(opts->agent_socket);
  if (opts && opts->capture)
    vs->capture = rp_xstrdup(opts->capture);
  vs->disks = rp_xcalloc(n_disks, sizeof *vs->disks);
  for (size_t i = 0; i < n_disks; i++) {
    rp_disk_info *d = &vs->disks[vs->n_disks++];
    rp_uuid(g);
    d->guid = rp_xstrdup(g);
    d->instance_id = rp_disk_instance_id(vs->name, g);
    d->path = rp_abspath(disk_paths[i]);
    struct stat st;
    if (stat(d->path, &st) < 0) {
      rp_err_set(RP_E_DISK_CHANGED, errno, "vm add: disk %s", d->path);
      goto fail;
    }
    for (size_t j = 0; j < i; j++)
      if (!strcmp(vs->disks[j].path, d->path)) {
        rp_err_set(RP_E_INVALID_PARAMETER, 0, "vm add: disk %s given twice", d->path);
        goto fail;
      }
  }
  if (register_vs(ctx, vs) < 0)
    goto fail;
  if (out)
    *out = vs;
  else
    rp_vs_info_free(vs);
  return 0;
fail:
  rp_vs_info_free(vs);
  return -1;
}

void rp_strv_free(char **v, size_t n)
{
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

static void strv_push(char ***v, size_t *n, char *s)
{
  *v = rp_xrealloc(*v, (*n + 1) * sizeof **v);
  (*v)[(*n)++] = s;
}

int rp_vs_add_libvirt(rp_ctx *ctx, const char *uri, const char *domain, const rp_vs_opts *opts,
                      rp_vs_info **out, char ***skipped, size_t *n_skipped)
{
  rp_err_clear();
  char **sk = NULL;
  size_t nsk = 0;
  if (skipped) {
    *skipped = NULL;
    *n_skipped = 0;
  }
  if (opts && opts->qmp_socket)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0,
                      "vm add: --libvirt takes QMP from libvirt; --qmp is for plain QEMU");
  if (opts && (check_socket("vm add: the guest agent", opts->agent_socket) < 0 ||
               check_capture("vm add", opts->capture) < 0))
    return -1;
  if (!domain || !*domain || strlen(domain) > 256)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "vm add: a libvirt domain name or UUID is needed");
  rp_lv *lv = NULL;
  rp_lv_disk *xd = NULL;
  size_t nx = 0;
  rp_vs_info *vs = NULL;
  if (rp_lv_open(uri, domain, &lv) < 0 || rp_lv_disks(lv, &xd, &nx) < 0) {
    rp_err_prefix("vm add");
    goto fail;
  }
  rp_vs_info *old = NULL;
  if (rp_store_vs_get(ctx->st, rp_lv_uuid(lv), &old) == 0 ||
      rp_store_vs_get(ctx->st, rp_lv_name(lv), &old) == 0) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0,
               "vm add: libvirt domain %s (%s) is already registered (as %s, %s)", rp_lv_name(lv),
               rp_lv_uuid(lv), old->element_name, old->name);
    rp_vs_info_free(old);
    goto fail;
  }
  rp_err_clear();
  vs = rp_xcalloc(1, sizeof *vs);
  vs->name = rp_xstrdup(rp_lv_uuid(lv));
  vs->element_name = rp_xstrdup(rp_lv_name(lv));
  vs->libvirt_uri = rp_xstrdup(uri ? uri : RP_LIBVIRT_DEFAULT_URI);
  vs->runtime_state = rp_xstrdup("shut off");
  if (opts && opts->agent_socket)
    vs->agent_socket = rp_abspath(opts->agent_socket);
  if (opts && opts->capture)
    vs->capture = rp_xstrdup(opts->capture);
  vs->disks = rp_xcalloc(nx ? nx : 1, sizeof *vs->disks);
  for (size_t j = 0; j < nx; j++) {
    const char *why = rp_lv_disk_uncovered(&xd[j]);
    if (why) {
      strv_push(&sk, &nsk,
                rp_xasprintf("%s %s: not covered: %s", xd[j].target,
                             xd[j].source ? xd[j].source : "(no source)", why));
      continue;
    }
    if (xd[j].overlay) {
      strv_push(&sk, &nsk,
                rp_xasprintf("%s %s: not covered: an external snapshot overlay is active on it "
                             "(virsh blockcommit, then vm add again)",
                             xd[j].target, xd[j].source));
      continue;
    }
    rp_disk_info *d = &vs->disks[vs->n_disks++];
    char g[37];
    rp_uuid(g);
    d->guid = rp_xstrdup(g);
    d->instance_id = rp_disk_instance_id(vs->name, g);
    d->path = rp_xstrdup(xd[j].source);
    d->target = rp_xstrdup(xd[j].target);
  }
  if (vs->n_disks == 0) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0,
               "vm add: libvirt domain %s has no disk refpoint can cover (a qcow2 file)%s%s",
               rp_lv_name(lv), nsk ? ": " : "", nsk ? sk[0] : "");
    goto fail;
  }
  if (register_vs(ctx, vs) < 0)
    goto fail;
  rp_lv_disks_free(xd, nx);
  rp_lv_close(lv);
  if (out)
    *out = vs;
  else
    rp_vs_info_free(vs);
  if (skipped) {
    *skipped = sk;
    *n_skipped = nsk;
  } else
    rp_strv_free(sk, nsk);
  return 0;
fail:
  rp_lv_disks_free(xd, nx);
  rp_lv_close(lv);
  rp_vs_info_free(vs);
  rp_strv_free(sk, nsk);
  return -1;
}

int rp_vs_discover(rp_ctx *ctx, const char *uri, rp_vs_info ***out, size_t *n, char ***skipped,
                   size_t *n_skipped)
{
  rp_err_clear();
  *out = NULL;
  *n = 0;
  *skipped = NULL;
  *n_skipped = 0;
  char **uuids = NULL, **names = NULL;
  size_t nd = 0;
  if (rp_lv_list(uri, &uuids, &names, &nd) < 0)
    return rp_err_prefix("vm discover");
  for (size_t i = 0; i < nd; i++) {
    rp_vs_info *old = NULL;
    if (rp_store_vs_get(ctx->st, uuids[i], &old) == 0) {
      rp_vs_info_free(old);
      continue;
    }
    rp_vs_info *vs = NULL;
    char **sk = NULL;
    size_t nsk = 0;
    if (rp_vs_add_libvirt(ctx, uri, uuids[i], NULL, &vs, &sk, &nsk) < 0) {
      strv_push(skipped, n_skipped, rp_xasprintf("%s (%s): %s", names[i], uuids[i],
                                                 rp_last_error()->message));
      continue;
    }
    for (size_t k = 0; k < nsk; k++)
      strv_push(skipped, n_skipped, rp_xasprintf("%s: %s", names[i], sk[k]));
    rp_strv_free(sk, nsk);
    *out = rp_xrealloc(*out, (*n + 1) * sizeof **out);
    (*out)[(*n)++] = vs;
  }
  rp_strv_free(uuids, nd);
  rp_strv_free(names, nd);
  rp_err_clear();
  return 0;
}

int rp_vs_set_live(rp_ctx *ctx, const char *key, const rp_vs_opts *opts)
{
  rp_err_clear();
  static const rp_vs_opts none = {0};
  if (!opts)
    opts = &none;
  if (check_socket("vm set: the QMP", opts->qmp_socket) < 0 ||
      check_socket("vm set: the guest agent", opts->agent_socket) < 0 ||
      check_capture("vm set", opts->capture) < 0)
    return -1;
  rp_vs_info *vs;
  if (rp_store_vs_get(ctx->st, key, &vs) < 0)
    return -1;
  int rc = -1, fd = -1;
  if (vs->libvirt_uri && opts->qmp_socket) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0,
               "vm set: %s is a libvirt domain: QMP goes through libvirt (--qmp is for plain QEMU)",
               vs->element_name);
    goto out;
  }
  fd = rp_vs_lock(ctx, vs->name, true, "vm set");
  if (fd < 0)
    goto out;
  free(vs->qmp_socket);
  free(vs->agent_socket);
  vs->qmp_socket = opts->qmp_socket ? rp_abspath(opts->qmp_socket) : NULL;
  vs->agent_socket = opts->agent_socket ? rp_abspath(opts->agent_socket) : NULL;
  free(vs->capture);
  vs->capture = rp_xstrdup(opts->capture);
  /* a QEMU answering on the new socket must have the disks open */
  rp_vm *vm = NULL;
  if (rp_vm_attach(ctx->dir, vs, 30000, &vm, NULL) < 0) {
    rp_err_prefix("vm set");
    goto out;
  }
  rp_vm_detach(vm);
  if (rp_store_begin(ctx->st) < 0)
    goto out;
  if (rp_store_vs_set_live(ctx->st, vs->name, vs->qmp_socket, vs->agent_socket,
                           vs->capture) < 0 ||
      rp_store_commit(ctx->st) < 0) {
    rp_store_rollback(ctx->st);
    goto out;
  }
  rc = 0;
out:
  rp_vs_unlock(fd);
  rp_vs_info_free(vs);
  return rc;
}

/* The runtime state, as QEMU says now; never fails. */
static char *runtime_state(rp_ctx *ctx, const rp_vs_info *vs)
{
  rp_error saved = *rp_last_error();
  char *st = NULL;
  if (vs->libvirt_uri) {
    /* libvirt knows; no monitor command (and no taint) for a listing */
    rp_lv *lv = NULL;
    if (rp_lv_open(vs->libvirt_uri, vs->name, &lv) < 0 || rp_lv_state(lv, &st, NULL) < 0)
      st = rp_xstrdup(rp_last_error()->code == RP_E_NOT_FOUND
                          ? "undefined (the libvirt domain is gone)"
                          : "unknown (libvirt does not answer)");
    rp_lv_close(lv);
    *(rp_error *)rp_last_error() = saved;
    return st;
  }
  rp_vm *vm = NULL;
  if (rp_vm_attach(ctx->dir, vs, 2000, &vm, &st) < 0) {
    free(st);
    st = rp_xstrdup(rp_last_error()->code == RP_E_IN_USE ? "unknown (QMP busy)" : "unknown");
    if (rp_last_error()->code == RP_E_DISK_CHANGED)
      rp_warnf(ctx, "%s", rp_last_error()->message);
  }
  rp_vm_detach(vm);
  *(rp_error *)rp_last_error() = saved;
  return st;
}

int rp_vs_get(rp_ctx *ctx, const char *vs, rp_vs_info **out)
{
  rp_err_clear();
  if (rp_store_vs_get(ctx->st, vs, out) < 0)
    return -1;
  (*out)->runtime_state = runtime_state(ctx, *out);
  return 0;
}

int rp_vs_list(rp_ctx *ctx, rp_vs_info ***out, size_t *n)
{
  rp_err_clear();
  if (rp_store_vs_list(ctx->st, out, n) < 0)
    return -1;
  for (size_t i = 0; i < *n; i++)
    (*out)[i]->runtime_state = runtime_state(ctx, (*out)[i]);
  return 0;
}

int rp_vs_remove(rp_ctx *ctx, const char *key)
{
  rp_err_clear();
  rp_vs_info *vs;
  if (rp_store_vs_get(ctx->st, key, &vs) < 0)
    return -1;
  int rc = -1, fd = rp_vs_lock(ctx, vs->name, true, "vm remove");
  if (fd < 0)
    goto out;
  if (rp_op_attach(ctx, vs) < 0 || rp_reconcile(ctx, vs, RECON_REPAIR, NULL) < 0)
    goto out;
  rp_rp_rec **rps;
  size_t n;
  if (rp_store_rp_list(ctx->st, vs->name, &rps, &n) < 0)
    goto out;
  rp_rp_list_free(rps, n);
  if (n) {
    rp_err_set(RP_E_INVALID_STATE, 0,
               "vm remove: %s still has %zu reference point(s); destroy them first",
               vs->element_name, n);
    goto out;
  }
  if (rp_store_begin(ctx->st) < 0)
    goto out;
  if (rp_store_vs_delete(ctx->st, vs->name) < 0 || rp_store_commit(ctx->st) < 0) {
    rp_store_rollback(ctx->st);
    goto out;
  }
  rc = 0;
out:
  rp_vs_unlock_op(ctx, fd);
  rp_vs_info_free(vs);
  return rc;
}

void rp_vs_info_free(rp_vs_info *vs)
{
  if (!vs)
    return;
  for (size_t i = 0; i < vs->n_disks; i++) {
    free(vs->disks[i].instance_id);
    free(vs->disks[i].guid);
    free(vs->disks[i].path);
    free(vs->disks[i].target);
  }
  free(vs->disks);
  free(vs->libvirt_uri);
  free(vs->name);
  free(vs->element_name);
  free(vs->runtime_state);
  free(vs->qmp_socket);
  free(vs->agent_socket);
  free(vs->capture);
  free(vs);
}

void rp_vs_list_free(rp_vs_info **list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    rp_vs_info_free(list[i]);
  free(list);
}

/* ---- reference points --------------------------------------------------- */

void rp_point_info_free(rp_point_info *p)
{
  if (!p)
    return;
  rp_rp_rec *r = rp_xcalloc(1, sizeof *r);
  r->info = *p;
  r->disk_guids = rp_xcalloc(p->n_disks, sizeof(char *));
  r->origin_disks = rp_xcalloc(p->n_disks, sizeof(char *));
  free(p);
  rp_rp_rec_free(r);
}

void rp_point_list_free(rp_point_info **list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    rp_point_info_free(list[i]);
  free(list);
}

/* Finds a ready RP by InstanceID or GUID. */
static int find_rp(rp_ctx *ctx, const char *id, rp_rp_rec **out)
{
  char g[37];
  if (rp_parse_rp_id(id, g) < 0)
    return rp_err_set(RP_E_NOT_FOUND, 0, "reference point '%s' not found (expected "
                      "Microsoft:<GUID> or a GUID)", id ? id : "");
  if (rp_store_rp_get(ctx->st, g, out) < 0)
    return -1;
  if (strcmp((*out)->state, "ready")) {
    rp_rp_rec_free(*out);
    return rp_err_set(RP_E_NOT_FOUND, 0, "reference point '%s' is not complete", id);
  }
  return 0;
}

/* Reads (rp show, rp list) report drift too, but only when no operation is
 * changing the VS: under the shared lock, taken without waiting. A busy VS
 * is shown as the store has it. Never fails the read. */
static void reconcile_for_read(rp_ctx *ctx, const rp_vs_info *vs)
{
  rp_error saved = *rp_last_error();
  int fd = rp_vs_lock(ctx, vs->name, false, "read");
  if (fd >= 0) {
    rp_op_detach(ctx);
    if (rp_vm_attach(ctx->dir, vs, 1000, &ctx->vm, NULL) == 0)
      rp_reconcile(ctx, vs, RECON_READ, NULL);
    rp_vs_unlock_op(ctx, fd);
  }
  *(rp_error *)rp_last_error() = saved;
}

int rp_point_get(rp_ctx *ctx, const char *id, rp_point_info **out)
{
  rp_err_clear();
  rp_rp_rec *r;
  if (find_rp(ctx, id, &r) < 0)
    return -1;
  rp_vs_info *vs;
  if (rp_store_vs_get(ctx->st, r->info.virtual_system_identifier, &vs) == 0) {
    reconcile_for_read(ctx, vs);
    rp_vs_info_free(vs);
    rp_rp_rec_free(r);
    if (find_rp(ctx, id, &r) < 0)
      return -1;
  }
  if (rp_fill_tracking(ctx, r) < 0) {
    rp_rp_rec_free(r);
    return -1;
  }
  *out = rp_rp_rec_take_info(r);
  return 0;
}

int rp_point_list(rp_ctx *ctx, const char *vs_key, rp_point_info ***out, size_t *n)
{
  rp_err_clear();
  rp_vs_info **vss = NULL;
  size_t nvs = 0;
  if (vs_key) {
    vss = rp_xcalloc(1, sizeof *vss);
    if (rp_store_vs_get(ctx->st, vs_key, &vss[0]) < 0) {
      free(vss);
      return -1;
    }
    nvs = 1;
  } else if (rp_store_vs_list(ctx->st, &vss, &nvs) < 0)
    return -1;
  rp_point_info **res = NULL;
  size_t cnt = 0;
  int rc = 0;
  for (size_t v = 0; v < nvs && rc == 0; v++) {
    reconcile_for_read(ctx, vss[v]);
    rp_rp_rec **rps;
    size_t nrp;
    if (rp_store_rp_list(ctx->st, vss[v]->name, &rps, &nrp) < 0) {
      rc = -1;
      break;
    }
    epoch_cache cache = {0};
    for (size_t k = 0; k < nrp; k++) {
      if (strcmp(rps[k]->state, "ready") || fill_tracking(ctx, rps[k], &cache) < 0) {
        rp_rp_rec_free(rps[k]);
        continue;
      }
      res = rp_xrealloc(res, (cnt + 1) * sizeof *res);
      res[cnt++] = rp_rp_rec_take_info(rps[k]);
    }
    epoch_cache_free(&cache);
    free(rps);
  }
  rp_vs_list_free(vss, nvs);
  if (rc < 0) {
    rp_point_list_free(res, cnt);
    return -1;
  }
  *out = res;
  *n = cnt;
  return 0;
}

int rp_commit_new_point(rp_ctx *ctx, rp_rp_rec *r, const char *invalidate)
{
  const rp_point_info *p = &r->info;
  if (rp_store_begin(ctx->st) < 0)
    return -1;
  for (size_t i = 0; i < p->n_disks; i++) {
    rp_epoch *ep;
    size_t nep;
    if (rp_store_epochs(ctx->st, r->disk_guids[i], &ep, &nep) < 0)
      goto fail;
    int rc = 0;
    for (size_t k = 0; k < nep && rc == 0; k++) {
      if (ep[k].end_seq >= 0)
        continue;
      ep[k].end_seq = p->sequence;
      if (invalidate && ep[k].valid) {
        ep[k].valid = false;
        free(ep[k].reason);
        ep[k].reason = rp_xstrdup(invalidate);
      }
      rc = rp_store_epoch_update(ctx->st, &ep[k]);
    }
    rp_epochs_free(ep, nep);
    rp_epoch ne = {.bitmap = p->rct_identifiers[i], .disk = r->disk_guids[i],
                   .start_seq = p->sequence, .end_seq = -1, .valid = true};
    if (rc < 0 || rp_store_epoch_insert(ctx->st, &ne) < 0)
      goto fail;
  }
  if (rp_store_rp_set_state(ctx->st, p->guid, "ready") < 0 || rp_store_commit(ctx->st) < 0)
    goto fail;
  free(r->state);
  r->state = rp_xstrdup("ready");
  rp_fill_tracking(ctx, r);
  return 0;
fail:
  rp_store_rollback(ctx->st);
  return -1;
}

/* How long the guest agent may take to answer, and the longest a guest
 * stays frozen before the guard thaws it on its own ($REFPOINT_FREEZE_*
 * for tests and unusual guests). */
static int env_ms(const char *name, int dflt)
{
  const char *v = getenv(name);
  long n = v ? strtol(v, NULL, 10) : 0;
  return n > 0 && n < 3600000 ? (int)n : dflt;
}
static int freeze_timeout_ms(void) { return env_ms("REFPOINT_AGENT_TIMEOUT_MS", 10000); }
static int max_frozen_ms(void) { return env_ms("REFPOINT_MAX_FROZEN_MS", 10000); }

int rp_point_create(rp_ctx *ctx, const char *vs_key, uint16_t type, uint16_t consistency,
                    rp_job *job, rp_point_info **out)
{
  rp_err_clear();
  if (type != 1 && type != 2)
    return rp_err_set(RP_E_NOT_SUPPORTED, 0,
                      "CreateReferencePoint: ReferencePointType %u is not supported (1 or 2: RCT)",
                      type);
  if (consistency != 1 && consistency != 2)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0,
                      "CreateReferencePoint: ConsistencyLevel %u is invalid (1 application, 2 "
                      "crash)",
                      consistency);
  rp_vs_info *vs;
  if (rp_store_vs_get(ctx->st, vs_key, &vs) < 0)
    return -1;
  int rc = -1, fd = rp_vs_lock(ctx, vs->name, true, "CreateReferencePoint");
  rp_rp_rec *r = NULL;
  rp_image_state **states = NULL;
  char **prev = rp_xcalloc(vs->n_disks, sizeof(char *));
  size_t done = 0; /* disks whose images were changed */
  bool row = false;
  char *snap = NULL;
  rp_freeze *frozen = NULL;
  if (fd < 0)
    goto out;
  if (rp_op_attach(ctx, vs) < 0 || check_writable(ctx, vs) < 0 ||
      rp_reconcile(ctx, vs, RECON_STRICT | RECON_REPAIR, &states) < 0) {
    rp_err_prefix("CreateReferencePoint");
    goto out;
  }
  if (ctx->vm && consistency == 1) {
    /* application consistency of a running guest needs its agent: a clear
     * error, never a silent downgrade to crash consistency */
    if (!vs->agent_socket) {
      rp_err_set(RP_E_NOT_AVAILABLE, 0,
                 "CreateReferencePoint: application consistency (ConsistencyLevel 1) of the "
                 "running VM %s needs its guest agent, and none is registered (vm set "
                 "--guest-agent SOCKET), or ask for crash consistency (2)",
                 vs->element_name);
      goto out;
    }
    if (strcmp(ctx->vm->state, "running")) {
      rp_err_set(RP_E_INVALID_STATE, 0,
                 "CreateReferencePoint: the VM %s is %s; its guest cannot freeze its file "
                 "systems (ask for crash consistency, 2)",
                 vs->element_name, ctx->vm->state);
      goto out;
    }
  }
  if (rp_job_check(job) < 0)
    goto out;
  r = rp_xcalloc(1, sizeof *r);
  char g[37];
  rp_uuid(g);
  r->state = rp_xstrdup("creating");
  rp_point_info *p = &r->info;
  p->guid = rp_xstrdup(g);
  p->instance_id = rp_point_instance_id(g);
  p->virtual_system_identifier = rp_xstrdup(vs->name);
  p->reference_point_type = 2;
  p->consistency_level = consistency;
  p->has_associated_data = true;
  p->created = rp_now();
  p->n_disks = vs->n_disks;
  p->virtual_disk_identifiers = rp_xcalloc(vs->n_disks, sizeof(char *));
  p->rct_identifiers = rp_xcalloc(vs->n_disks, sizeof(char *));
  r->disk_guids = rp_xcalloc(vs->n_disks, sizeof(char *));
  r->origin_disks = rp_xcalloc(vs->n_disks, sizeof(char *));
  for (size_t i = 0; i < vs->n_disks; i++) {
    p->virtual_disk_identifiers[i] = rp_xstrdup(vs->disks[i].instance_id);
    p->rct_identifiers[i] = new_bitmap_name();
    r->disk_guids[i] = rp_xstrdup(vs->disks[i].guid);
    r->origin_disks[i] = rp_xstrdup(vs->disks[i].instance_id);
    rp_epoch *ep;
    size_t nep;
    if (rp_store_epochs(ctx->st, vs->disks[i].guid, &ep, &nep) < 0)
      goto out;
    const rp_epoch *o = open_epoch(ep, nep);
    if (o && rp_image_bitmap(states[i], o->bitmap) && !rp_image_bitmap(states[i], o->bitmap)->in_use)
      prev[i] = rp_xstrdup(o->bitmap);
    rp_epochs_free(ep, nep);
  }
  bool fleece = ctx->vm && vs->capture && !strcmp(vs->capture, "fleecing");
  if (fleece) {
    /* each view adds a copy-before-write filter to the guest's writes;
     * stacking them was measured to stall QEMU: one at a time */
    int held = rp_store_vs_has_fleece(ctx->st, vs->name);
    if (held != 0) {
      if (held > 0)
        rp_err_set(RP_E_INVALID_STATE, 0,
                   "CreateReferencePoint: a reference point of %s still holds a fleecing view; "
                   "export it, then RemoveAssociatedData or Destroy it first (capture fleecing "
                   "keeps one view at a time)",
                   vs->element_name);
      goto out;
    }
    r->data_kind = rp_xstrdup("fleecing");
  }
  /* 1. intent */
  if (rp_store_begin(ctx->st) < 0)
    goto out;
  p->sequence = rp_store_vs_take_seq(ctx->st, vs->name);
  p->element_name = rp_xasprintf("%s reference point %lld", vs->element_name,
                                 (long long)p->sequence);
  if (p->sequence < 0 || rp_store_rp_insert(ctx->st, r) < 0 || rp_store_commit(ctx->st) < 0) {
    rp_store_rollback(ctx->st);
    goto out;
  }
  row = true;
  /* 2. the images: snapshot = associated data; close the epoch; open the next */
  snap = rp_snapshot_name(g);
  if (ctx->vm) {
    /* running: one transaction for all disks, inside a guest freeze when
     * application consistency is asked for */
    char **fnodes = NULL, **files = NULL;
    int crc = 0;
    if (fleece) {
      /* the scratch images first, so that the guest is frozen only for
       * the transaction */
      CLEANUP_FREE char *fdir = rp_xasprintf("%s/fleece", ctx->dir);
      if (rp_mkdir_p(fdir, 0700) < 0) {
        rp_err_prefix("CreateReferencePoint");
        goto out;
      }
      fnodes = rp_xcalloc(vs->n_disks, sizeof(char *));
      files = rp_xcalloc(vs->n_disks, sizeof(char *));
      for (size_t i = 0; i < vs->n_disks; i++) {
        fnodes[i] = rp_fleece_name(g, i);
        files[i] = rp_fleece_file(ctx->dir, g, i);
      }
      for (size_t i = 0; i < vs->n_disks && crc == 0; i++)
        if (rp_engine_create_image(files[i], states[i]->virtual_size) < 0)
          crc = rp_err_prefix("fleecing scratch image");
    }
    if (crc == 0 && consistency == 1 &&
        rp_freeze_begin(vs->agent_socket, freeze_timeout_ms(), max_frozen_ms(), &frozen) < 0)
      crc = -1;
    if (crc == 0)
      rp_fault_point("create-frozen");
    done = vs->n_disks;
    double pause = 0;
    if (crc == 0)
      crc = fleece ? rp_vm_fleece_capture(ctx->vm, vs->n_disks, (const char *const *)ctx->vm->nodes,
                                          (const char *const *)fnodes, (const char *const *)files,
                                          (const char *const *)prev,
                                          (const char *const *)p->rct_identifiers, &pause)
                   : rp_vm_capture(ctx->vm, vs->n_disks, (const char *const *)ctx->vm->nodes,
                                   (const char *const *)ctx->vm->paths, snap,
                                   (const char *const *)prev,
                                   (const char *const *)p->rct_identifiers, &pause);
    for (size_t i = 0; fleece && i < vs->n_disks; i++) {
      free(fnodes[i]);
      free(files[i]);
    }
    free(fnodes);
    free(files);
    if (frozen) {
      rp_error saved = *rp_last_error();
      int trc = rp_freeze_end(frozen);
      frozen = NULL;
      if (crc < 0)
        *(rp_error *)rp_last_error() = saved;
      else if (trc < 0)
        crc = -1;
    }
    if (crc < 0) {
      rp_err_prefix("CreateReferencePoint");
      goto out;
    }
    rp_job_add(job, vs->n_disks);
    rp_fault_point("create-after-capture");
  }
  for (size_t i = 0; i < vs->n_disks && !ctx->vm; i++) {
    /* shut off: three qemu-img runs per disk, in the one order that leaves
     * some enabled bitmap recording at every instant (a writer that slips
     * in between, or a kill, never makes a write unrecorded): the new
     * epoch's bitmap, the snapshot, then the previous epoch stops. Writes
     * between the steps land in both epochs: over-reported, never lost. */
    const char *path = vs->disks[i].path;
    done = i + 1;
    if (rp_engine_bitmap_add(NULL, path, p->rct_identifiers[i], true) < 0) {
      rp_err_prefix("CreateReferencePoint");
      goto out;
    }
    rp_fault_point("create-after-bitmap-add");
    if (rp_engine_snapshot_create(path, snap) < 0) {
      rp_err_prefix("CreateReferencePoint");
      goto out;
    }
    rp_fault_point("create-between-bitmaps");
    if (prev[i] && rp_engine_bitmap_enable(NULL, path, prev[i], false) < 0) {
      rp_err_prefix("CreateReferencePoint");
      goto out;
    }
    rp_job_add(job, 1);
    rp_fault_point(i == 0 ? "create-after-first-disk" : "create-after-disk");
  }
  /* 3. commit */
  if (rp_commit_new_point(ctx, r, NULL) < 0)
    goto out;
  if (out) {
    *out = rp_rp_rec_take_info(r);
    r = NULL;
  }
  rc = 0;
  goto out;
out:
  if (rc < 0 && row) {
    /* undo in reverse; keep the first error */
    rp_error saved = *rp_last_error();
    bool clean = true;
    CLEANUP_FREE char *snap2 = rp_snapshot_name(r->info.guid);
    if (rp_is_fleece(r) && fleece_drop(ctx, r->info.guid, r->info.n_disks) < 0)
      clean = false;
    char **lost = rp_xcalloc(vs->n_disks, sizeof(char *));
    for (size_t i = done; i-- > 0;)
      if (rp_undo_disk(ctx->vm, vs->disks[i].path, snap2, r->info.rct_identifiers[i], prev[i],
                       &lost[i]) < 0)
        clean = false;
    if (clean && rp_store_begin(ctx->st) == 0) {
      bool ok = true;
      for (size_t i = 0; i < done && ok; i++)
        ok = !lost[i] || rp_epoch_mark_lost(ctx, vs->disks[i].guid, prev[i], lost[i]) == 0;
      if (!ok || rp_store_rp_delete(ctx->st, r->info.guid) < 0 || rp_store_commit(ctx->st) < 0)
        rp_store_rollback(ctx->st);
    }
    for (size_t i = 0; i < vs->n_disks; i++)
      free(lost[i]);
    free(lost);
    /* if undo failed the "creating" row stays: the next operation retries */
    *(rp_error *)rp_last_error() = saved;
  }
  for (size_t i = 0; i < vs->n_disks; i++)
    free(prev[i]);
  free(prev);
  free(snap);
  rp_freeze_end(frozen); /* only on paths that left before thawing */
  rp_states_free(states, vs->n_disks);
  rp_rp_rec_free(r);
  rp_vs_unlock_op(ctx, fd);
  rp_vs_info_free(vs);
  return rc;
}

/* Loads the RP and its VS, takes the exclusive lock and reconciles. */
/* A shut-off VS's disks are changed by qemu-img: each must be writable,
 * said plainly before anything is touched (qemu-img's "Could not open"
 * would read as a missing disk). A running VM's QEMU holds them open. */
static int check_writable(rp_ctx *ctx, const rp_vs_info *vs)
{
  if (ctx->vm)
    return 0;
  for (size_t i = 0; i < vs->n_disks; i++) {
    struct statvfs sv;
    if (statvfs(vs->disks[i].path, &sv) == 0 && (sv.f_flag & ST_RDONLY))
      return rp_err_set(RP_E_FAILED, EROFS,
                        "disk %s (%s) is on a read-only file system; nothing was changed",
                        vs->disks[i].instance_id, vs->disks[i].path);
    if (access(vs->disks[i].path, W_OK) < 0 && errno != ENOENT)
      return rp_err_set(errno == EROFS ? RP_E_FAILED : RP_E_ACCESS_DENIED, errno,
                        "disk %s (%s) is not writable: %s; nothing was changed",
                        vs->disks[i].instance_id, vs->disks[i].path, strerror(errno));
  }
  return 0;
}

static int begin_rp_op(rp_ctx *ctx, const char *op, const char *id, rp_rp_rec **r, rp_vs_info **vs,
                       rp_image_state ***states, int *fd)
{
  *r = NULL;
  *vs = NULL;
  *states = NULL;
  *fd = -1;
  if (find_rp(ctx, id, r) < 0 ||
      rp_store_vs_get(ctx->st, (*r)->info.virtual_system_identifier, vs) < 0)
    return rp_err_prefix("%s", op);
  *fd = rp_vs_lock(ctx, (*vs)->name, true, op);
  if (*fd < 0)
    return -1;
  if (rp_op_attach(ctx, *vs) < 0 || check_writable(ctx, *vs) < 0 ||
      rp_reconcile(ctx, *vs, RECON_REPAIR, states) < 0)
    return rp_err_prefix("%s", op);
  rp_rp_rec_free(*r);
  *r = NULL;
  if (find_rp(ctx, id, r) < 0) /* reconciliation may have changed it */
    return rp_err_prefix("%s", op);
  return 0;
}

const rp_disk_info *rp_vs_disk(const rp_vs_info *vs, const char *guid, size_t *idx)
{
  for (size_t i = 0; i < vs->n_disks; i++)
    if (!strcmp(vs->disks[i].guid, guid)) {
      if (idx)
        *idx = i;
      return &vs->disks[i];
    }
  return NULL;
}

int rp_point_remove_data(rp_ctx *ctx, const char *id, rp_job *job)
{
  rp_err_clear();
  rp_rp_rec *r;
  rp_vs_info *vs;
  rp_image_state **states;
  int fd, rc = -1;
  char *snap = NULL;
  if (begin_rp_op(ctx, "RemoveAssociatedData", id, &r, &vs, &states, &fd) < 0)
    goto out;
  if (!r->info.has_associated_data) {
    rp_err_set(RP_E_NO_DATA, 0, "RemoveAssociatedData: %s has no associated data%s%s",
               r->info.instance_id, r->info.data_reason ? ": " : "",
               r->info.data_reason ? r->info.data_reason : "");
    goto out;
  }
  if (rp_job_check(job) < 0)
    goto out;
  /* store first: a snapshot left behind by a crash is deleted by the
   * next reconciliation, and is never served */
  rp_fault_point("remove-data-before");
  if (rp_store_begin(ctx->st) < 0)
    goto out;
  if (rp_store_rp_set_data(ctx->st, r->info.guid, false, "released by RemoveAssociatedData") < 0 ||
      rp_store_commit(ctx->st) < 0) {
    rp_store_rollback(ctx->st);
    goto out;
  }
  rp_fault_point("remove-data-after-commit");
  snap = rp_snapshot_name(r->info.guid);
  if (rp_is_fleece(r) && fleece_drop(ctx, r->info.guid, r->info.n_disks) < 0)
    rp_warnf(ctx, "RemoveAssociatedData: %s (retried at the next operation)",
             rp_last_error()->message);
  for (size_t i = 0; i < r->info.n_disks && !rp_is_fleece(r); i++) {
    size_t k;
    const rp_disk_info *d = rp_vs_disk(vs, r->disk_guids[i], &k);
    if (d && states[k] && rp_image_has_snapshot(states[k], snap) &&
        rp_engine_snapshot_delete(ctx->vm, d->path, snap) < 0)
      rp_warnf(ctx, "RemoveAssociatedData: %s (retried at the next operation)",
               rp_last_error()->message);
  }
  rc = 0;
out:
  free(snap);
  if (states)
    rp_states_free(states, vs->n_disks);
  rp_vs_unlock_op(ctx, fd);
  rp_rp_rec_free(r);
  rp_vs_info_free(vs);
  return rc;
}

int rp_point_destroy(rp_ctx *ctx, const char *id, rp_job *job)
{
  rp_err_clear();
  rp_rp_rec *r;
  rp_vs_info *vs;
  rp_image_state **states;
  int fd, rc = -1;
  char **drop = NULL; /* bitmaps to remove after the commit */
  size_t ndrop = 0;
  char *snap = NULL;
  if (begin_rp_op(ctx, "DestroyReferencePoint", id, &r, &vs, &states, &fd) < 0)
    goto out;
  if (rp_job_check(job) < 0)
    goto out;
  int64_t seq = r->info.sequence;
  snap = rp_snapshot_name(r->info.guid);
  /* The commit (step 2) is the one moment the RP goes: before it nothing
   * the RP needs has changed (a merge only adds to the epoch before, which
   * then over-reports: safe), after it only leftovers remain, which this
   * call removes (step 3) and, if it dies or fails there, the next
   * operation's reconciliation does (orphan snapshots and bitmaps). A
   * fleecing view lives only in QEMU and goes first. */
  if (rp_is_fleece(r) && fleece_drop(ctx, r->info.guid, r->info.n_disks) < 0)
    goto out;
  /* 1. merge the epoch that starts here into the one before */
  if (rp_store_begin(ctx->st) < 0)
    goto out;
  for (size_t i = 0; i < vs->n_disks; i++) {
    const rp_disk_info *d = &vs->disks[i];
    rp_epoch *ep;
    size_t nep;
    if (rp_store_epochs(ctx->st, d->guid, &ep, &nep) < 0)
      goto tx_fail;
    rp_epoch *before = NULL, *here = NULL;
    for (size_t k = 0; k < nep; k++) {
      if (ep[k].end_seq == seq)
        before = &ep[k];
      if (ep[k].start_seq == seq)
        here = &ep[k];
    }
    int erc = 0;
    if (here && before) {
      bool b_ok = states[i] && before->valid && rp_image_bitmap(states[i], before->bitmap);
      bool h_ok = states[i] && here->valid && rp_image_bitmap(states[i], here->bitmap);
      if (b_ok && h_ok &&
          rp_engine_bitmap_merge(ctx->vm, d->path, here->bitmap, before->bitmap, here->end_seq < 0) < 0)
        erc = -1;
      before->end_seq = here->end_seq;
      if (!here->valid || !h_ok) {
        if (before->valid) {
          free(before->reason);
          before->reason = rp_xstrdup(here->reason ? here->reason : "change tracking lost");
        }
        before->valid = false;
      }
      if (erc == 0 && (rp_store_epoch_update(ctx->st, before) < 0 ||
                       rp_store_epoch_delete(ctx->st, here->bitmap) < 0))
        erc = -1;
    } else if (here) {
      if (rp_store_epoch_delete(ctx->st, here->bitmap) < 0)
        erc = -1;
    }
    if (here && erc == 0 && states[i] && rp_image_bitmap(states[i], here->bitmap)) {
      drop = rp_xrealloc(drop, (ndrop + 1) * sizeof *drop);
      drop[ndrop++] = rp_xasprintf("%zu:%s", i, here->bitmap);
    }
    rp_epochs_free(ep, nep);
    if (erc < 0)
      goto tx_fail;
  }
  rp_fault_point("destroy-before-commit");
  /* 2. the RP goes */
  if (rp_store_rp_delete(ctx->st, r->info.guid) < 0 || rp_store_commit(ctx->st) < 0)
    goto tx_fail;
  rp_fault_point("destroy-after-commit");
  /* 3. its snapshots and the bitmaps no longer referenced */
  for (size_t i = 0; i < r->info.n_disks; i++) {
    size_t k;
    const rp_disk_info *d = rp_vs_disk(vs, r->disk_guids[i], &k);
    if (d && states[k] && rp_image_has_snapshot(states[k], snap) &&
        rp_engine_snapshot_delete(ctx->vm, d->path, snap) < 0)
      rp_warnf(ctx, "DestroyReferencePoint: %s (the next operation removes it)",
               rp_last_error()->message);
    if (i == 0)
      rp_fault_point("destroy-after-first-snapshot");
  }
  for (size_t j = 0; j < ndrop; j++) {
    size_t i = strtoul(drop[j], NULL, 10);
    const char *b = strchr(drop[j], ':') + 1;
    if (rp_engine_bitmap_remove(ctx->vm, vs->disks[i].path, b) < 0)
      rp_warnf(ctx, "DestroyReferencePoint: %s", rp_last_error()->message);
  }
  rp_job_add(job, 1);
  rc = 0;
  goto out;
tx_fail:
  rp_store_rollback(ctx->st);
  rp_err_prefix("DestroyReferencePoint");
out:
  for (size_t j = 0; j < ndrop; j++)
    free(drop[j]);
  free(drop);
  free(snap);
  if (states)
    rp_states_free(states, vs->n_disks);
  rp_vs_unlock_op(ctx, fd);
  rp_rp_rec_free(r);
  rp_vs_info_free(vs);
  return rc;
}

/* ---- job records ---------------------------------------------------------- */

int rp_jobrec_put(rp_ctx *ctx, const rp_job_record *r)
{
  rp_err_clear();
  return rp_store_job_put(ctx->st, r);
}

int rp_jobrec_list(rp_ctx *ctx, rp_job_record **out, size_t *n)
{
  rp_err_clear();
  return rp_store_job_list(ctx->st, out, n);
}

int rp_jobrec_delete(rp_ctx *ctx, const char *id)
{
  rp_err_clear();
  return rp_store_job_delete(ctx->st, id);
}
