/* export.c — ExportReferencePoint, ImportReferencePointMetadata, and the
 * export directory format (docs/export-format.md): verify and restore.
 *
 * An export of RP <guid> into backup root R is built in
 * R/.<guid>.partial-<pid>, every file fsynced, then renamed to R/<guid> and
 * R fsynced. A reader therefore sees either no R/<guid> or a complete one
 * (manifest.json is written last, and is what "complete" means). A process
 * killed mid-way leaves only the dot-named partial folder, which the next
 * export into R removes once its owner is gone. */
#include "copy.h"
#include "service.h"
#include "live.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_MAX (64u << 20) /* largest metadata file we read */

static json_t *jstr(const char *s)
{
  return s ? json_string(s) : json_null();
}

static json_t *point_json(const rp_point_info *p)
{
  json_t *o = json_object();
  json_object_set_new(o, "InstanceID", jstr(p->instance_id));
  json_object_set_new(o, "ElementName", jstr(p->element_name));
  json_object_set_new(o, "VirtualSystemIdentifier", jstr(p->virtual_system_identifier));
  json_object_set_new(o, "ReferencePointType", json_integer(p->reference_point_type));
  json_object_set_new(o, "ConsistencyLevel", json_integer(p->consistency_level));
  json_object_set_new(o, "HasAssociatedData", json_boolean(p->has_associated_data));
  json_t *d = json_array(), *c = json_array();
  for (size_t i = 0; i < p->n_disks; i++) {
    json_array_append_new(d, jstr(p->virtual_disk_identifiers[i]));
    json_array_append_new(c, jstr(p->rct_identifiers[i]));
  }
  json_object_set_new(o, "VirtualDiskIdentifiers", d);
  json_object_set_new(o, "ResilientChangeTrackingIdentifiers", c);
  json_object_set_new(o, "CreationTime", json_integer(p->created));
  return o;
}

/* Writes a JSON document to dir/name (not yet durable: the caller fsyncs
 * all metadata files together, which costs one journal commit, not one
 * per file). */
static int write_json(const char *dir, const char *name, json_t *doc)
{
  CLEANUP_FREE char *path = rp_xasprintf("%s/%s", dir, name);
  char *txt = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (!txt)
    return rp_err_set(RP_E_NO_MEMORY, 0, "encode %s", name);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
  if (!f) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    free(txt);
    return rp_err_set(rp_err_from_errno(e), e, "create %s", path);
  }
  size_t len = strlen(txt);
  int ok = fwrite(txt, 1, len, f) == len && fputc('\n', f) != EOF && fflush(f) == 0;
  int e = errno;
  free(txt);
  if (fclose(f) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (!ok)
    return rp_err_set(rp_err_from_errno(e), e, "write %s", path);
  return 0;
}

/* A metadata file someone names (ImportReferencePointMetadata, restore):
 * only a regular file, opened without blocking (a FIFO or a device would
 * hang the job or feed it for ever), and no error ever quotes its content. */
static char *read_meta(const char *path, size_t *len)
{
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    rp_err_set(errno == ENOENT ? RP_E_INVALID_PARAMETER : rp_err_from_errno(errno), errno,
               "open %s", path);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s is not a regular file", path);
    return NULL;
  }
  if (fcntl(fd, F_SETFL, 0) < 0) { /* blocking again: a regular file never waits */
    close(fd);
    rp_err_set(RP_E_FAILED, errno, "%s", path);
    return NULL;
  }
  return rp_read_fd(fd, path, META_MAX, len);
}

static json_t *read_json(const char *path, const char *format)
{
  size_t len;
  CLEANUP_FREE char *txt = read_meta(path, &len);
  if (!txt)
    return NULL;
  json_error_t je;
  json_t *doc = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
  if (!doc || !json_is_object(doc)) {
    json_decref(doc);
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s: not a refpoint %s file (not JSON at line %d)",
               path, format, je.line);
    return NULL;
  }
  const char *f = json_string_value(json_object_get(doc, "Format"));
  json_int_t v = json_integer_value(json_object_get(doc, "FormatVersion"));
  CLEANUP_FREE char *want = rp_xasprintf("refpoint-%s", format);
  if (!f || strcmp(f, want)) {
    json_decref(doc);
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s: not a refpoint %s file", path, format);
    return NULL;
  }
  if (v < 1 || v > RP_EXPORT_FORMAT) {
    json_decref(doc);
    rp_err_set(RP_E_NOT_SUPPORTED, 0, "%s: format version %lld is not supported (this refpoint "
               "reads 1..%d)", path, (long long)v, RP_EXPORT_FORMAT);
    return NULL;
  }
  return doc;
}

static const char *jget_s(json_t *o, const char *k)
{
  return json_string_value(json_object_get(o, k));
}

/* Removes partial exports of this RP left by processes that are gone. */
/* Our dot-named partial folders of this RP in root whose process is gone.
 * Removed relative to root's descriptor, without following links (a
 * partial swapped for a symlink loses the link only). */
static void remove_stale_partials(const char *root, const char *guid)
{
  int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0)
    return;
  int lfd = dup(rfd);
  DIR *d = lfd < 0 ? NULL : fdopendir(lfd);
  if (!d) {
    if (lfd >= 0)
      close(lfd);
    close(rfd);
    return;
  }
  CLEANUP_FREE char *pre = rp_xasprintf(".%s.partial-", guid);
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strncmp(de->d_name, pre, strlen(pre)))
      continue;
    long pid = strtol(de->d_name + strlen(pre), NULL, 10);
    if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
      continue;
    rp_rm_tree_at(rfd, de->d_name, 0);
  }
  closedir(d);
  close(rfd);
}

/* Exports are private (0700 / 0600) unless an export group is set: then
 * the folder and its files become readable by that group (0750 / 0640). */
static int share_with_group(rp_ctx *ctx, const char *dir)
{
  if (!ctx->export_group_set)
    return 0;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return rp_err_set(rp_err_from_errno(errno), errno, "open %s", dir);
  int rc = 0;
  if (fchown(dfd, (uid_t)-1, ctx->export_gid) < 0 || fchmod(dfd, 0750) < 0)
    rc = rp_err_set(rp_err_from_errno(errno), errno, "export group for %s", dir);
  int lfd = rc == 0 ? dup(dfd) : -1;
  DIR *d = lfd < 0 ? NULL : fdopendir(lfd);
  struct dirent *de;
  while (d && rc == 0 && (de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    int fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fchown(fd, (uid_t)-1, ctx->export_gid) < 0 || fchmod(fd, 0640) < 0)
      rc = rp_err_set(rp_err_from_errno(errno), errno, "export group for %s/%s", dir, de->d_name);
    if (fd >= 0)
      close(fd);
  }
  if (d)
    closedir(d);
  close(dfd);
  return rc;
}

void rp_export_cleanup(const char *export_directory, const char *rp)
{
  char g[37];
  if (export_directory && rp_parse_rp_id(rp, g) == 0)
    remove_stale_partials(export_directory, g);
}

struct disk_job {
  size_t rp_idx;           /* index in the RP's disk arrays */
  const rp_disk_info *d;   /* the VS disk */
  char **bitmaps;          /* epochs to union (incremental) */
  size_t n_bitmaps;
  rp_nbd_server *srv;
  rp_vm_nbd *qexp; /* fleecing: QEMU's export of the view */
  rp_src *src;
  rp_range *ranges;
  size_t n_ranges;
  char *file;    /* name inside the export */
  char *backing; /* relative backing name or NULL */
  char *base_disk_id; /* this disk's InstanceID in the base export */
  rp_copy_stats stats;
};

/* Checks that the epochs [base_seq, seq) of a disk exist, are contiguous
 * and valid, and collects their bitmaps. */
static int collect_epochs(rp_ctx *ctx, const rp_disk_info *d, int64_t base_seq, int64_t seq,
                          const char *base_id, struct disk_job *dj)
{
  rp_epoch *ep;
  size_t n;
  if (rp_store_epochs(ctx->st, d->guid, &ep, &n) < 0)
    return -1;
  int64_t at = base_seq;
  int rc = 0;
  for (size_t k = 0; k < n && at < seq; k++) {
    if (ep[k].start_seq < at)
      continue;
    if (ep[k].start_seq != at)
      break;
    if (!ep[k].valid) {
      rc = rp_err_set(RP_E_TRACKING_LOST, 0,
                      "change tracking of disk %s since %s was lost (%s); a full export is needed",
                      d->instance_id, base_id, ep[k].reason ? ep[k].reason : "unknown cause");
      break;
    }
    dj->bitmaps = rp_xrealloc(dj->bitmaps, (dj->n_bitmaps + 1) * sizeof(char *));
    dj->bitmaps[dj->n_bitmaps++] = rp_xstrdup(ep[k].bitmap);
    at = ep[k].end_seq < 0 ? INT64_MAX : ep[k].end_seq;
  }
  if (rc == 0 && at < seq)
    rc = rp_err_set(RP_E_TRACKING_LOST, 0,
                    "change tracking of disk %s has no record between %s and the exported "
                    "reference point; a full export is needed",
                    d->instance_id, base_id);
  if (rc == 0 && at != seq)
    rc = rp_err_set(RP_E_TRACKING_LOST, 0,
                    "change tracking of disk %s does not end at the exported reference point; a "
                    "full export is needed",
                    d->instance_id);
  rp_epochs_free(ep, n);
  return rc;
}

static void disk_job_clear(struct disk_job *dj)
{
  rp_src_close(dj->src);
  rp_engine_nbd_stop(dj->srv);
  for (size_t i = 0; i < dj->n_bitmaps; i++)
    free(dj->bitmaps[i]);
  free(dj->bitmaps);
  free(dj->ranges);
  free(dj->file);
  free(dj->backing);
  free(dj->base_disk_id);
}

/* Checks an export request against the store and plans it: the RP, its
 * base, the disks and, for an incremental, the epoch bitmaps to union.
 * Run once before reconciliation (to start the servers early) and once
 * after (authoritative). On failure the error is set and nothing is kept. */
static int plan_export(rp_ctx *ctx, const char *id, const char *g, const rp_vs_info *vs,
                       const rp_export_opts *opts, rp_rp_rec **r_out, rp_rp_rec **base_out,
                       struct disk_job **djs_out, size_t *ndj_out)
{
  rp_rp_rec *r = NULL, *base = NULL;
  struct disk_job *djs = NULL;
  size_t ndj = 0;
  if (rp_store_rp_get(ctx->st, g, &r) < 0 || strcmp(r->state, "ready")) {
    rp_err_set(RP_E_NOT_FOUND, 0, "ExportReferencePoint: reference point '%s' not found", id);
    goto fail;
  }
  if (!r->info.has_associated_data) {
    rp_err_set(RP_E_NO_DATA, 0, "ExportReferencePoint: %s has no associated data (%s)",
               r->info.instance_id, r->info.data_reason ? r->info.data_reason : "released");
    goto fail;
  }
  /* the base */
  if (opts->base_rp && *opts->base_rp) {
    char bg[37];
    if (rp_parse_rp_id(opts->base_rp, bg) < 0 || rp_store_rp_get(ctx->st, bg, &base) < 0 ||
        strcmp(base->state, "ready")) {
      rp_err_set(RP_E_NOT_FOUND, 0, "ExportReferencePoint: base reference point '%s' not found",
                 opts->base_rp);
      goto fail;
    }
    if (strcmp(base->info.virtual_system_identifier, vs->name)) {
      rp_err_set(RP_E_INVALID_PARAMETER, 0,
                 "ExportReferencePoint: base %s belongs to another virtual system",
                 base->info.instance_id);
      goto fail;
    }
    if (base->info.sequence >= r->info.sequence) {
      rp_err_set(RP_E_INVALID_PARAMETER, 0,
                 "ExportReferencePoint: base %s is not older than %s", base->info.instance_id,
                 r->info.instance_id);
      goto fail;
    }
  }
  /* which disks */
  djs = rp_xcalloc(r->info.n_disks, sizeof *djs);
  for (size_t i = 0; i < r->info.n_disks; i++) {
    bool want = opts->n_disks == 0;
    for (size_t k = 0; k < opts->n_disks; k++) {
      char dg[37];
      if (rp_parse_disk_id(opts->disks[k], dg) == 0 && !strcmp(dg, r->disk_guids[i]))
        want = true;
    }
    if (!want)
      continue;
    struct disk_job *dj = &djs[ndj++];
    dj->rp_idx = i;
    dj->d = rp_vs_disk(vs, r->disk_guids[i], NULL);
    if (!dj->d) {
      rp_err_set(RP_E_DISK_CHANGED, 0, "ExportReferencePoint: disk %s is no longer part of %s",
                 r->info.virtual_disk_identifiers[i], vs->element_name);
      goto fail;
    }
    dj->file = rp_xasprintf("disk-%s.qcow2", r->disk_guids[i]);
  }
  for (size_t k = 0; k < opts->n_disks; k++) {
    char dg[37];
    bool found = false;
    if (rp_parse_disk_id(opts->disks[k], dg) == 0)
      for (size_t i = 0; i < r->info.n_disks; i++)
        found |= !strcmp(dg, r->disk_guids[i]);
    if (!found) {
      rp_err_set(RP_E_NOT_FOUND, 0,
                 "ExportReferencePoint: disk '%s' is not a disk of reference point %s",
                 opts->disks[k], r->info.instance_id);
      goto fail;
    }
  }
  if (base)
    for (size_t j = 0; j < ndj; j++) {
      bool has = false;
      for (size_t i = 0; i < base->info.n_disks; i++)
        has |= !strcmp(base->disk_guids[i], r->disk_guids[djs[j].rp_idx]);
      if (!has) {
        rp_err_set(RP_E_INVALID_PARAMETER, 0,
                   "ExportReferencePoint: base %s does not cover disk %s",
                   base->info.instance_id, djs[j].d->instance_id);
        goto fail;
      }
      if (collect_epochs(ctx, djs[j].d, base->info.sequence, r->info.sequence,
                         base->info.instance_id, &djs[j]) < 0) {
        rp_err_prefix("ExportReferencePoint");
        goto fail;
      }
    }
  *r_out = r;
  *base_out = base;
  *djs_out = djs;
  *ndj_out = ndj;
  return 0;
fail:
  for (size_t j = 0; j < ndj; j++)
    disk_job_clear(&djs[j]);
  free(djs);
  rp_rp_rec_free(r);
  rp_rp_rec_free(base);
  return -1;
}

int rp_export(rp_ctx *ctx, const char *id, const char *export_directory,
              const rp_export_opts *opts, rp_job *job, rp_export_result **out)
{
  rp_err_clear();
  static const rp_export_opts none = {0};
  if (!opts)
    opts = &none;
  double t0 = rp_monotonic();
  if (!export_directory || export_directory[0] != '/')
    return rp_err_set(RP_E_INVALID_PARAMETER, 0,
                      "ExportReferencePoint: ExportDirectory must be a fully qualified path, not "
                      "'%s'",
                      export_directory ? export_directory : "");
  if (strlen(export_directory) > 3000)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "ExportReferencePoint: ExportDirectory too long");
  rp_rp_rec *r = NULL, *r2 = NULL, *base = NULL;
  rp_vs_info *vs = NULL;
  struct disk_job *djs = NULL;
  size_t ndj = 0;
  int fd = -1, rc = -1;
  char *root = NULL, *final = NULL, *tmp = NULL;
  json_t *base_manifest = NULL;
  bool tmp_made = false;
  char *snap = NULL;

  char g[37];
  if (rp_parse_rp_id(id, g) < 0) {
    rp_err_set(RP_E_NOT_FOUND, 0, "ExportReferencePoint: reference point '%s' not found", id);
    goto out;
  }
  if (rp_store_rp_get(ctx->st, g, &r) < 0 ||
      rp_store_vs_get(ctx->st, r->info.virtual_system_identifier, &vs) < 0) {
    rp_err_prefix("ExportReferencePoint");
    goto out;
  }
  rp_trace("export: start");
  fd = rp_vs_lock(ctx, vs->name, false, "ExportReferencePoint");
  if (fd < 0)
    goto out;
  /* a running VM: its QMP socket is ours until the plan is made */
  if (rp_op_attach(ctx, vs) < 0) {
    rp_err_prefix("ExportReferencePoint");
    goto out;
  }
  /* plan from the store and start the qemu-nbd servers, so that their
   * start-up overlaps reconciliation; then reconcile and plan again */
  rp_rp_rec *pr = NULL, *pb = NULL;
  struct disk_job *pre = NULL;
  size_t npre = 0;
  if (plan_export(ctx, id, g, vs, opts, &pr, &pb, &pre, &npre) == 0) {
    for (size_t j = 0; j < npre && !rp_is_fleece(pr); j++) {
      CLEANUP_FREE char *sn = rp_snapshot_name(pr->info.guid);
      bool live = rp_vm_node(ctx->vm, pre[j].d->path) != NULL;
      if (rp_engine_nbd_spawn(pre[j].d->path, sn, (const char *const *)pre[j].bitmaps,
                              live ? 0 : pre[j].n_bitmaps, false, &pre[j].srv) < 0)
        pre[j].srv = NULL;
    }
  }
  rp_err_clear();
  int rec = rp_reconcile(ctx, vs, RECON_STRICT, NULL);
  if (rec == 0)
    rec = plan_export(ctx, id, g, vs, opts, &r2, &base, &djs, &ndj);
  else
    rp_err_prefix("ExportReferencePoint");
  /* hand the early servers over where the plan did not change */
  for (size_t j = 0; j < npre; j++) {
    for (size_t k = 0; rec == 0 && k < ndj && pre[j].srv; k++) {
      bool same = djs[k].d == NULL || pre[j].d == NULL ? false : !strcmp(djs[k].d->guid, pre[j].d->guid);
      same = same && !djs[k].srv && djs[k].n_bitmaps == pre[j].n_bitmaps;
      for (size_t b = 0; same && b < djs[k].n_bitmaps; b++)
        same = !strcmp(djs[k].bitmaps[b], pre[j].bitmaps[b]);
      if (same) {
        djs[k].srv = pre[j].srv;
        pre[j].srv = NULL;
      }
    }
    disk_job_clear(&pre[j]);
  }
  free(pre);
  rp_rp_rec_free(pr);
  rp_rp_rec_free(pb);
  if (rec < 0)
    goto out;
  rp_rp_rec_free(r);
  r = r2;
  /* the destination */
  root = rp_abspath(export_directory);
  if (rp_mkdir_p(root, 0700) < 0) {
    rp_err_prefix("ExportReferencePoint: ExportDirectory");
    goto out;
  }
  if (access(root, W_OK) < 0) {
    rp_err_set(RP_E_ACCESS_DENIED, errno, "ExportReferencePoint: ExportDirectory %s", root);
    goto out;
  }
  final = rp_xasprintf("%s/%s", root, r->info.guid);
  struct stat st;
  if (lstat(final, &st) == 0) {
    CLEANUP_FREE char *m = rp_xasprintf("%s/manifest.json", final);
    if (access(m, F_OK) == 0)
      rp_err_set(RP_E_EXISTS, 0, "ExportReferencePoint: %s already holds a complete export of %s",
                 final, r->info.instance_id);
    else
      rp_err_set(RP_E_INVALID_PARAMETER, 0,
                 "ExportReferencePoint: %s exists and is not a complete export; remove it first",
                 final);
    goto out;
  }
  remove_stale_partials(root, r->info.guid);
  tmp = rp_xasprintf("%s/.%s.partial-%ld", root, r->info.guid, (long)getpid());
  if (mkdir(tmp, 0700) < 0) {
    rp_err_set(rp_err_from_errno(errno), errno, "ExportReferencePoint: mkdir %s", tmp);
    goto out;
  }
  tmp_made = true;
  /* the base export next to us gives the backing files of an incremental */
  if (base) {
    CLEANUP_FREE char *bm = rp_xasprintf("%s/%s/manifest.json", root, base->info.guid);
    if (access(bm, F_OK) == 0) {
      base_manifest = read_json(bm, "export");
      if (!base_manifest) {
        rp_err_prefix("ExportReferencePoint: base export");
        goto out;
      }
    }
    for (size_t j = 0; j < ndj; j++) {
      /* this disk's identity in the base RP: origin of the base (imports) */
      for (size_t i = 0; i < base->info.n_disks; i++)
        if (!strcmp(base->disk_guids[i], r->disk_guids[djs[j].rp_idx]))
          djs[j].base_disk_id = rp_xstrdup(base->origin_disks[i]);
      json_t *ds = json_object_get(base_manifest, "Disks");
      for (size_t k = 0; k < json_array_size(ds); k++) {
        json_t *e = json_array_get(ds, k);
        const char *iid = jget_s(e, "InstanceID"), *f = jget_s(e, "File");
        if (iid && f && djs[j].base_disk_id && !strcmp(iid, djs[j].base_disk_id) &&
            !strchr(f, '/') && strcmp(f, "..") && f[0] != '.')
          djs[j].backing = rp_xasprintf("../%s/%s", base->info.guid, f);
      }
      /* the base's export is not here (or holds no file of this disk): the
       * backing file still names where it belongs, so that a stock tool
       * fails loudly on a missing base instead of reading zeros through
       * an image without backing (docs/export-format.md: rebasing a chain) */
      char bg[37];
      if (!djs[j].backing && djs[j].base_disk_id && rp_parse_disk_id(djs[j].base_disk_id, bg) == 0)
        djs[j].backing = rp_xasprintf("../%s/disk-%s.qcow2", base->info.guid, bg);
      if (!djs[j].backing)
        djs[j].backing = rp_xasprintf("../%s/disk-%s.qcow2", base->info.guid,
                                      r->disk_guids[djs[j].rp_idx]);
    }
  }
  /* open the sources and plan */
  uint64_t total = 0;
  snap = rp_snapshot_name(r->info.guid);
  for (size_t j = 0; j < ndj; j++) {
    struct disk_job *dj = &djs[j];
    /* the snapshot is read from outside in both cases (force-share: its
     * clusters never change); the change tracking of a running VM is only
     * in QEMU's memory, so it comes through QEMU's own NBD server */
    const char *node = rp_vm_node(ctx->vm, dj->d->path);
    const char *const *bms = (const char *const *)dj->bitmaps;
    size_t nbm = node ? 0 : dj->n_bitmaps;
    if (rp_is_fleece(r)) {
      /* a fleecing view lives in QEMU: data and change tracking both come
       * through QEMU's NBD server (the view's node has the disk's node,
       * where the bitmaps are, as backing) */
      CLEANUP_FREE char *fnode = rp_fleece_name(r->info.guid, dj->rp_idx);
      const char *ctxs[1] = {NULL};
      if (!node) {
        rp_err_set(RP_E_NO_DATA, 0, "the VM is not running: the fleecing view is gone");
      } else if (rp_vm_nbd_open(ctx->vm, fnode, node, bms, base ? dj->n_bitmaps : 0, &dj->qexp) == 0) {
        ctxs[0] = rp_vm_nbd_bitmap(dj->qexp);
        if (rp_src_open_export(rp_vm_nbd_sock(ctx->vm), rp_vm_nbd_name(dj->qexp), ctxs,
                               base ? 1 : 0, &dj->src) == 0 &&
            rp_src_ranges(dj->src, base ? ctxs : NULL, base ? 1 : 0, &dj->ranges,
                          &dj->n_ranges) == 0)
          goto planned;
      }
      rp_err_prefix("ExportReferencePoint: disk %s", dj->d->instance_id);
      goto out;
    }
    if ((!dj->srv && rp_engine_nbd_spawn(dj->d->path, snap, bms, nbm, false, &dj->srv) < 0) ||
        rp_engine_nbd_ready(dj->srv) < 0 || rp_src_open(dj->srv->sock, bms, nbm, &dj->src) < 0 ||
        (node && base
             ? rp_vm_dirty_ranges(ctx->vm, node, bms, dj->n_bitmaps, &dj->ranges, &dj->n_ranges)
             : rp_src_ranges(dj->src, base ? bms : NULL, dj->n_bitmaps, &dj->ranges,
                             &dj->n_ranges)) < 0) {
      rp_err_prefix("ExportReferencePoint: disk %s", dj->d->instance_id);
      goto out;
    }
  planned:
    if (rp_src_size(dj->src) != dj->d->virtual_size) {
      rp_err_set(RP_E_DISK_CHANGED, 0, "ExportReferencePoint: disk %s: snapshot size differs",
                 dj->d->instance_id);
      goto out;
    }
    for (size_t k = 0; k < dj->n_ranges; k++)
      total += dj->ranges[k].len;
  }
  rp_trace("export: %zu disk(s) planned, %llu bytes to read", ndj, (unsigned long long)total);
  if (!rp_is_fleece(r))
    rp_op_detach(ctx); /* the data comes from the snapshots alone */
  rp_fault_point("export-planned");
  rp_job_set_total(job, total);
  /* copy */
  for (size_t j = 0; j < ndj; j++) {
    struct disk_job *dj = &djs[j];
    CLEANUP_FREE char *path = rp_xasprintf("%s/%s", tmp, dj->file);
    rp_qcow2w *w = rp_qcow2w_create(path, dj->d->virtual_size, dj->backing);
    if (!w) {
      rp_err_prefix("ExportReferencePoint");
      goto out;
    }
    if (rp_src_copy(dj->src, dj->ranges, dj->n_ranges, w, base != NULL, job, &dj->stats) < 0) {
      rp_qcow2w_abort(w);
      rp_err_prefix("ExportReferencePoint: disk %s", dj->d->instance_id);
      goto out;
    }
    rp_trace("export: disk %zu copied", j);
    if (rp_qcow2w_finish(w) < 0) {
      rp_err_prefix("ExportReferencePoint");
      goto out;
    }
    rp_src_close(dj->src);
    dj->src = NULL;
    rp_engine_nbd_stop(dj->srv);
    dj->srv = NULL;
    rp_vm_nbd_close(ctx->vm, dj->qexp);
    dj->qexp = NULL;
    rp_fault_point("export-after-disk");
  }
  /* metadata: config, runtime state, then the manifest */
  {
    json_t *cfg = json_object();
    json_object_set_new(cfg, "Format", json_string("refpoint-config"));
    json_object_set_new(cfg, "FormatVersion", json_integer(RP_EXPORT_FORMAT));
    json_t *v = json_object(), *vd = json_array();
    json_object_set_new(v, "Name", json_string(vs->name));
    json_object_set_new(v, "ElementName", json_string(vs->element_name));
    for (size_t i = 0; i < vs->n_disks; i++) {
      json_t *e = json_object();
      json_object_set_new(e, "InstanceID", json_string(vs->disks[i].instance_id));
      json_object_set_new(e, "Path", json_string(vs->disks[i].path));
      json_object_set_new(e, "VirtualSize", json_integer((json_int_t)vs->disks[i].virtual_size));
      json_array_append_new(vd, e);
    }
    json_object_set_new(v, "Disks", vd);
    json_object_set_new(cfg, "VirtualSystem", v);
    json_object_set_new(cfg, "ReferencePoint", point_json(&r->info));
    int wr = write_json(tmp, "config.json", cfg);
    json_decref(cfg);
    if (wr < 0)
      goto out_prefix;

    json_t *rt = json_object(), *rd = json_array();
    json_object_set_new(rt, "Format", json_string("refpoint-runtime-state"));
    json_object_set_new(rt, "FormatVersion", json_integer(RP_EXPORT_FORMAT));
    json_object_set_new(rt, "VirtualSystemIdentifier", json_string(vs->name));
    json_object_set_new(rt, "ReferencePointId", json_string(r->info.instance_id));
    json_object_set_new(rt, "BaseReferencePointId", jstr(base ? base->info.instance_id : NULL));
    for (size_t i = 0; i < r->info.n_disks; i++) {
      json_t *e = json_object();
      const rp_disk_info *d = rp_vs_disk(vs, r->disk_guids[i], NULL);
      json_object_set_new(e, "InstanceID", json_string(r->info.virtual_disk_identifiers[i]));
      json_object_set_new(e, "ResilientChangeTrackingIdentifier",
                          json_string(r->info.rct_identifiers[i]));
      json_object_set_new(e, "VirtualSize", json_integer(d ? (json_int_t)d->virtual_size : 0));
      struct disk_job *dj = NULL;
      for (size_t j = 0; j < ndj; j++)
        if (djs[j].rp_idx == i)
          dj = &djs[j];
      json_object_set_new(e, "Exported", json_boolean(dj != NULL));
      json_object_set_new(e, "File", jstr(dj ? dj->file : NULL));
      json_object_set_new(e, "Digest", jstr(dj ? rp_digest_hex(dj->stats.digest) : NULL));
      json_array_append_new(rd, e);
    }
    json_object_set_new(rt, "Disks", rd);
    wr = write_json(tmp, "runtime-state.json", rt);
    json_decref(rt);
    if (wr < 0)
      goto out_prefix;

    json_t *m = json_object(), *md = json_array();
    json_object_set_new(m, "Format", json_string("refpoint-export"));
    json_object_set_new(m, "FormatVersion", json_integer(RP_EXPORT_FORMAT));
    json_object_set_new(m, "Tool", json_string("refpoint " REFPOINT_VERSION));
    json_object_set_new(m, "Created", json_integer(rp_now()));
    json_object_set_new(m, "Kind", json_string(base ? "incremental" : "full"));
    json_object_set_new(m, "VirtualSystemIdentifier", json_string(vs->name));
    json_object_set_new(m, "ReferencePointId", json_string(r->info.instance_id));
    json_object_set_new(m, "BaseReferencePointId", jstr(base ? base->info.instance_id : NULL));
    json_object_set_new(m, "ConfigFile", json_string("config.json"));
    json_object_set_new(m, "RuntimeStateFile", json_string("runtime-state.json"));
    json_object_set_new(m, "ChecksumAlgorithm", json_string("xxh3-128-pieces-256KiB"));
    for (size_t j = 0; j < ndj; j++) {
      struct disk_job *dj = &djs[j];
      json_t *e = json_object(), *rg = json_array();
      json_object_set_new(e, "InstanceID", json_string(dj->d->instance_id));
      json_object_set_new(e, "BaseInstanceID", jstr(dj->base_disk_id));
      json_object_set_new(e, "File", json_string(dj->file));
      json_object_set_new(e, "BackingFile", jstr(dj->backing));
      json_object_set_new(e, "SourcePath", json_string(dj->d->path));
      json_object_set_new(e, "VirtualSize", json_integer((json_int_t)dj->d->virtual_size));
      json_object_set_new(e, "DataBytes", json_integer((json_int_t)dj->stats.data_bytes));
      json_object_set_new(e, "ZeroBytes", json_integer((json_int_t)dj->stats.zero_bytes));
      json_object_set_new(e, "Digest", json_string(rp_digest_hex(dj->stats.digest)));
      for (size_t k = 0; k < dj->n_ranges; k++) {
        json_t *p = json_array();
        json_array_append_new(p, json_integer((json_int_t)dj->ranges[k].off));
        json_array_append_new(p, json_integer((json_int_t)dj->ranges[k].len));
        json_array_append_new(rg, p);
      }
      json_object_set_new(e, "Ranges", rg);
      json_array_append_new(md, e);
    }
    json_object_set_new(m, "Disks", md);
    json_object_set_new(m, "Complete", json_true());
    wr = write_json(tmp, "manifest.json", m);
    json_decref(m);
    if (wr < 0)
      goto out_prefix;
  }
  rp_trace("export: metadata written");
  rp_fault_point("export-before-rename");
  if (rp_job_check(job) < 0)
    goto out_prefix;
  {
    static const char *const meta[] = {"config.json", "runtime-state.json", "manifest.json"};
    for (size_t k = 0; k < 3; k++) {
      CLEANUP_FREE char *p = rp_xasprintf("%s/%s", tmp, meta[k]);
      if (rp_fsync_path(p) < 0)
        goto out_prefix;
    }
  }
  if (share_with_group(ctx, tmp) < 0 || rp_fsync_path(tmp) < 0)
    goto out_prefix;
  if (rename(tmp, final) < 0) {
    if (errno == ENOTEMPTY || errno == EEXIST) /* a concurrent export won */
      rp_err_set(RP_E_EXISTS, 0, "%s already holds a complete export of %s", final,
                 r->info.instance_id);
    else
      rp_err_set(rp_err_from_errno(errno), errno, "rename %s", final);
    goto out_prefix;
  }
  tmp_made = false;
  if (rp_fsync_path(root) < 0)
    goto out_prefix;
  rp_trace("export: renamed into place");
  rp_fault_point("export-after-rename");
  if (out) {
    rp_export_result *res = rp_xcalloc(1, sizeof *res);
    res->export_directory = rp_xstrdup(export_directory);
    res->export_path = rp_xstrdup(final);
    res->rp_id = rp_xstrdup(r->info.instance_id);
    res->base_rp_id = base ? rp_xstrdup(base->info.instance_id) : NULL;
    res->vs_id = rp_xstrdup(vs->name);
    res->config_file = rp_xasprintf("%s/config.json", final);
    res->runtime_file = rp_xasprintf("%s/runtime-state.json", final);
    res->manifest_file = rp_xasprintf("%s/manifest.json", final);
    res->n_disks = ndj;
    res->disk_ids = rp_xcalloc(ndj, sizeof(char *));
    res->disk_files = rp_xcalloc(ndj, sizeof(char *));
    for (size_t j = 0; j < ndj; j++) {
      res->disk_ids[j] = rp_xstrdup(djs[j].d->instance_id);
      res->disk_files[j] = rp_xasprintf("%s/%s", final, djs[j].file);
      res->bytes_data += djs[j].stats.data_bytes;
      res->bytes_zero += base ? djs[j].stats.zero_bytes : 0;
      res->bytes_virtual += djs[j].d->virtual_size;
    }
    res->seconds = rp_monotonic() - t0;
    *out = res;
  }
  rc = 0;
  goto out;
out_prefix:
  rp_err_prefix("ExportReferencePoint");
out:
  for (size_t j = 0; j < ndj; j++) {
    if (djs[j].qexp) { /* the reader first, then QEMU's export */
      rp_src_close(djs[j].src);
      djs[j].src = NULL;
      rp_vm_nbd_close(ctx->vm, djs[j].qexp);
    }
    disk_job_clear(&djs[j]);
  }
  free(djs);
  if (tmp_made)
    rp_rm_rf(tmp);
  json_decref(base_manifest);
  free(snap);
  free(root);
  free(final);
  free(tmp);
  rp_vs_unlock_op(ctx, fd);
  rp_rp_rec_free(r);
  rp_rp_rec_free(base);
  rp_vs_info_free(vs);
  return rc;
}

void rp_export_result_free(rp_export_result *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->n_disks; i++) {
    free(r->disk_ids[i]);
    free(r->disk_files[i]);
  }
  free(r->disk_ids);
  free(r->disk_files);
  free(r->export_directory);
  free(r->export_path);
  free(r->rp_id);
  free(r->base_rp_id);
  free(r->vs_id);
  free(r->config_file);
  free(r->runtime_file);
  free(r->manifest_file);
  free(r);
}

/* ---- reading exports: verify, restore ----------------------------------- */

static json_t *load_manifest(const char *export_path)
{
  CLEANUP_FREE char *m = rp_xasprintf("%s/manifest.json", export_path);
  json_t *doc = read_json(m, "export");
  if (doc && !json_is_true(json_object_get(doc, "Complete"))) {
    json_decref(doc);
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s is not a complete export", export_path);
    return NULL;
  }
  return doc;
}

/* A manifest's file name must be a plain name inside the export. */
static const char *safe_name(json_t *o, const char *k)
{
  const char *s = jget_s(o, k);
  if (!s || !*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, ".."))
    return NULL;
  return s;
}

static int verify_one(const char *path, rp_job *job)
{
  json_t *m = load_manifest(path);
  if (!m)
    return -1;
  int rc = -1;
  const char *cf = safe_name(m, "ConfigFile"), *rf = safe_name(m, "RuntimeStateFile");
  if (!cf || !rf) {
    rp_err_set(RP_E_VERIFY_FAILED, 0, "%s: manifest names no config/runtime-state file", path);
    goto out;
  }
  for (int k = 0; k < 2; k++) {
    CLEANUP_FREE char *p = rp_xasprintf("%s/%s", path, k ? rf : cf);
    json_t *doc = read_json(p, k ? "runtime-state" : "config");
    if (!doc) {
      rp_err_set(RP_E_VERIFY_FAILED, 0, "%s: %s", path, rp_last_error()->message);
      goto out;
    }
    json_decref(doc);
  }
  json_t *ds = json_object_get(m, "Disks");
  for (size_t i = 0; i < json_array_size(ds); i++) {
    json_t *e = json_array_get(ds, i);
    const char *f = safe_name(e, "File"), *want = jget_s(e, "Digest");
    json_t *rg = json_object_get(e, "Ranges");
    if (!f || !want || !json_is_array(rg)) {
      rp_err_set(RP_E_VERIFY_FAILED, 0, "%s: manifest disk %zu is incomplete", path, i);
      goto out;
    }
    size_t nr = json_array_size(rg);
    rp_range *ranges = rp_xcalloc(nr, sizeof *ranges);
    for (size_t k = 0; k < nr; k++) {
      json_t *p = json_array_get(rg, k);
      ranges[k].off = (uint64_t)json_integer_value(json_array_get(p, 0));
      ranges[k].len = (uint64_t)json_integer_value(json_array_get(p, 1));
    }
    CLEANUP_FREE char *file = rp_xasprintf("%s/%s", path, f);
    rp_nbd_server *srv = NULL;
    rp_src *src = NULL;
    rp_copy_stats st;
    int r = -1;
    if (rp_engine_nbd_start(file, NULL, NULL, 0, true, &srv) == 0 &&
        rp_src_open(srv->sock, NULL, 0, &src) == 0) {
      bool inside = true;
      for (size_t k = 0; k < nr; k++)
        inside &= ranges[k].off + ranges[k].len <= rp_src_size(src) && ranges[k].len > 0;
      if (!inside)
        rp_err_set(RP_E_VERIFY_FAILED, 0, "%s: manifest ranges of %s lie outside the disk", path, f);
      else
        r = rp_src_copy(src, ranges, nr, NULL, false, job, &st);
    }
    rp_src_close(src);
    rp_engine_nbd_stop(srv);
    free(ranges);
    if (r < 0) {
      if (rp_last_error()->code != RP_E_VERIFY_FAILED && rp_last_error()->code != RP_E_CANCELLED) {
        char why[sizeof rp_last_error()->message];
        snprintf(why, sizeof why, "%s", rp_last_error()->message);
        rp_err_set(RP_E_VERIFY_FAILED, 0, "%s: cannot read %s: %s", path, f, why);
      }
      goto out;
    }
    if (strcmp(rp_digest_hex(st.digest), want)) {
      rp_err_set(RP_E_VERIFY_FAILED, 0, "%s: %s does not match its checksum (%s, expected %s)",
                 path, f, rp_digest_hex(st.digest), want);
      goto out;
    }
  }
  rc = 0;
out:
  json_decref(m);
  return rc;
}

int rp_verify(const char *const *paths, size_t n, rp_job *job)
{
  rp_err_clear();
  if (n == 0)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "verify: no export given");
  for (size_t i = 0; i < n; i++) {
    CLEANUP_FREE char *abs = rp_abspath(paths[i]);
    if (verify_one(abs, job) < 0)
      return rp_err_prefix("verify");
  }
  return 0;
}

static int restore_abs(const char *const *paths, size_t n, const char *to_dir,
                       rp_restore_result **out);

int rp_restore(const char *const *paths, size_t n, const char *to_dir, rp_job *job,
               rp_restore_result **out)
{
  rp_err_clear();
  (void)job;
  if (n == 0 || !to_dir)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "restore: no export given");
  char **abs = rp_xcalloc(n, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    abs[i] = rp_abspath(paths[i]);
  char *to = rp_abspath(to_dir);
  int rc = restore_abs((const char *const *)abs, n, to, out);
  for (size_t i = 0; i < n; i++)
    free(abs[i]);
  free(abs);
  free(to);
  return rc;
}

static int restore_abs(const char *const *paths, size_t n, const char *to_dir,
                       rp_restore_result **out)
{
  json_t **m = rp_xcalloc(n, sizeof *m);
  int rc = -1;
  rp_restore_result *res = rp_xcalloc(1, sizeof *res);
  char **tmps = NULL;
  for (size_t i = 0; i < n; i++) {
    m[i] = load_manifest(paths[i]);
    if (!m[i])
      goto out;
    const char *kind = jget_s(m[i], "Kind"), *b = jget_s(m[i], "BaseReferencePointId");
    if (i == 0 && (!kind || strcmp(kind, "full"))) {
      rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s is not a full export: a chain starts with one",
                 paths[0]);
      goto out;
    }
    if (i > 0) {
      const char *prev = jget_s(m[i - 1], "ReferencePointId");
      if (!b || !prev || strcmp(b, prev)) {
        rp_err_set(RP_E_INVALID_PARAMETER, 0,
                   "%s is not an increment of %s (its base is %s): give the chain oldest first",
                   paths[i], paths[i - 1], b ? b : "none");
        goto out;
      }
    }
  }
  if (rp_mkdir_p(to_dir, 0700) < 0)
    goto out;
  json_t *top = json_object_get(m[n - 1], "Disks");
  size_t nd = json_array_size(top);
  res->disk_ids = rp_xcalloc(nd, sizeof(char *));
  res->files = rp_xcalloc(nd, sizeof(char *));
  tmps = rp_xcalloc(nd, sizeof(char *));
  for (size_t d = 0; d < nd; d++) {
    json_t *e = json_array_get(top, d);
    const char **files = rp_xcalloc(n, sizeof(char *));
    char **owned = rp_xcalloc(n, sizeof(char *));
    const char *want = jget_s(e, "InstanceID");
    bool ok = true;
    /* walk back through the chain following BaseInstanceID */
    for (size_t k = n; k-- > 0 && ok;) {
      json_t *ds = json_object_get(m[k], "Disks"), *hit = NULL;
      for (size_t j = 0; j < json_array_size(ds); j++) {
        const char *iid = jget_s(json_array_get(ds, j), "InstanceID");
        if (want && iid && !strcmp(iid, want))
          hit = json_array_get(ds, j);
      }
      const char *f = hit ? safe_name(hit, "File") : NULL;
      if (!f) {
        rp_err_set(RP_E_INVALID_PARAMETER, 0, "restore: %s holds no data of disk %s", paths[k],
                   want ? want : "?");
        ok = false;
        break;
      }
      owned[k] = rp_xasprintf("%s/%s", paths[k], f);
      files[k] = owned[k];
      want = jget_s(hit, "BaseInstanceID");
    }
    if (ok) {
      char g[37];
      const char *iid = jget_s(e, "InstanceID");
      if (rp_parse_disk_id(iid, g) < 0)
        snprintf(g, sizeof g, "disk%zu", d);
      res->disk_ids[res->n_disks] = rp_xstrdup(iid);
      res->files[res->n_disks] = rp_xasprintf("%s/disk-%s.qcow2", to_dir, g);
      tmps[d] = rp_xasprintf("%s/.disk-%s.qcow2.partial-%ld", to_dir, g, (long)getpid());
      struct stat st;
      if (stat(res->files[res->n_disks], &st) == 0) {
        rp_err_set(RP_E_EXISTS, 0, "restore: %s exists; not overwritten",
                   res->files[res->n_disks]);
        ok = false;
      }
      res->n_disks++;
    }
    if (ok && rp_engine_convert_chain(files, n, tmps[d]) < 0)
      ok = false;
    for (size_t k = 0; k < n; k++)
      free(owned[k]);
    free(owned);
    free(files);
    if (!ok)
      goto out;
  }
  for (size_t d = 0; d < res->n_disks; d++) {
    if (chmod(tmps[d], 0600) < 0) { /* a VM's disk: private */
      rp_err_set(rp_err_from_errno(errno), errno, "restore: %s", tmps[d]);
      goto out;
    }
    if (rp_fsync_path(tmps[d]) < 0 || rename(tmps[d], res->files[d]) < 0) {
      rp_err_set(rp_err_from_errno(errno), errno, "restore: %s", res->files[d]);
      goto out;
    }
    free(tmps[d]);
    tmps[d] = NULL;
  }
  rp_fsync_path(to_dir);
  rc = 0;
out:
  if (tmps)
    for (size_t d = 0; d < json_array_size(json_object_get(m[n - 1], "Disks")); d++) {
      if (tmps[d])
        unlink(tmps[d]);
      free(tmps[d]);
    }
  free(tmps);
  for (size_t i = 0; i < n; i++)
    json_decref(m[i]);
  free(m);
  if (rc == 0 && out)
    *out = res;
  else
    rp_restore_result_free(res);
  if (rc < 0 && strncmp(rp_last_error()->message, "restore", 7))
    rp_err_prefix("restore");
  return rc;
}

void rp_restore_result_free(rp_restore_result *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->n_disks; i++) {
    free(r->disk_ids[i]);
    free(r->files[i]);
  }
  free(r->disk_ids);
  free(r->files);
  free(r);
}

/* ---- ImportReferencePointMetadata --------------------------------------- */

int rp_point_import(rp_ctx *ctx, const char *vs_key, const char *config_file,
                    const char *runtime_state_file, rp_job *job, rp_point_info **out)
{
  rp_err_clear();
  rp_vs_info *vs = NULL;
  json_t *cfg = NULL, *rt = NULL;
  rp_rp_rec *r = NULL, *exist = NULL;
  rp_image_state **states = NULL;
  char **prev = NULL;
  size_t nprev = 0, done = 0;
  bool row = false;
  int fd = -1, rc = -1;
  if (!config_file || !runtime_state_file) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "ImportReferencePointMetadata: two files are needed");
    goto out;
  }
  if (rp_store_vs_get(ctx->st, vs_key, &vs) < 0)
    goto out_prefix;
  cfg = read_json(config_file, "config");
  rt = cfg ? read_json(runtime_state_file, "runtime-state") : NULL;
  if (!cfg || !rt)
    goto out_prefix;
  json_t *p = json_object_get(cfg, "ReferencePoint");
  const char *iid = jget_s(p, "InstanceID");
  char g[37];
  if (rp_parse_rp_id(iid, g) < 0) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s: no valid ReferencePoint.InstanceID", config_file);
    goto out_prefix;
  }
  const char *rt_id = jget_s(rt, "ReferencePointId");
  if (!rt_id || strcmp(rt_id, iid)) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s and %s describe different reference points",
               config_file, runtime_state_file);
    goto out_prefix;
  }
  json_t *dids = json_object_get(p, "VirtualDiskIdentifiers");
  json_t *rdisks = json_object_get(rt, "Disks");
  size_t nd = json_array_size(dids);
  if (nd == 0 || nd != vs->n_disks || json_array_size(rdisks) != nd) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0,
               "the reference point has %zu disk(s), virtual system %s has %zu", nd,
               vs->element_name, vs->n_disks);
    goto out_prefix;
  }
  fd = rp_vs_lock(ctx, vs->name, true, "ImportReferencePointMetadata");
  if (fd < 0)
    goto out;
  if (rp_op_attach(ctx, vs) < 0 || rp_reconcile(ctx, vs, RECON_STRICT | RECON_REPAIR, &states) < 0)
    goto out_prefix;
  if (rp_store_rp_get(ctx->st, g, &exist) == 0) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "reference point %s already exists on this host", iid);
    goto out_prefix;
  }
  rp_err_clear();
  /* map each exported disk to a disk of the VS: same InstanceID, else the
   * same position; sizes must agree */
  r = rp_xcalloc(1, sizeof *r);
  r->state = rp_xstrdup("creating");
  rp_point_info *pi = &r->info;
  pi->guid = rp_xstrdup(g);
  pi->instance_id = rp_point_instance_id(g);
  pi->virtual_system_identifier = rp_xstrdup(vs->name);
  pi->reference_point_type = 2;
  json_int_t cl = json_integer_value(json_object_get(p, "ConsistencyLevel"));
  pi->consistency_level = (cl == 1) ? 1 : 2;
  pi->has_associated_data = false;
  pi->data_reason = rp_xstrdup("imported by ImportReferencePointMetadata: no associated data");
  pi->imported = true;
  pi->created = rp_now();
  pi->n_disks = nd;
  pi->virtual_disk_identifiers = rp_xcalloc(nd, sizeof(char *));
  pi->rct_identifiers = rp_xcalloc(nd, sizeof(char *));
  r->disk_guids = rp_xcalloc(nd, sizeof(char *));
  r->origin_disks = rp_xcalloc(nd, sizeof(char *));
  prev = rp_xcalloc(nd, sizeof(char *));
  nprev = nd;
  for (size_t i = 0; i < nd; i++) {
    const char *src_id = json_string_value(json_array_get(dids, i));
    if (!src_id) {
      rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s: disk %zu has no identifier", config_file, i);
      goto out_prefix;
    }
    size_t k = i;
    for (size_t j = 0; j < vs->n_disks; j++)
      if (!strcmp(vs->disks[j].instance_id, src_id))
        k = j;
    json_int_t want = -1;
    for (size_t j = 0; j < json_array_size(rdisks); j++) {
      json_t *e = json_array_get(rdisks, j);
      const char *x = jget_s(e, "InstanceID");
      if (x && !strcmp(x, src_id))
        want = json_integer_value(json_object_get(e, "VirtualSize"));
    }
    if (want < 0 || (uint64_t)want != states[k]->virtual_size) {
      rp_err_set(RP_E_INVALID_PARAMETER, 0,
                 "disk %s (%s) is %llu bytes; exported disk %s was %lld bytes",
                 vs->disks[k].instance_id, vs->disks[k].path,
                 (unsigned long long)states[k]->virtual_size, src_id, (long long)want);
      goto out_prefix;
    }
    for (size_t j = 0; j < i; j++)
      if (!strcmp(r->disk_guids[j], vs->disks[k].guid)) {
        rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s: two disks map to %s", config_file,
                   vs->disks[k].instance_id);
        goto out_prefix;
      }
    r->disk_guids[i] = rp_xstrdup(vs->disks[k].guid);
    r->origin_disks[i] = rp_xstrdup(src_id);
    pi->virtual_disk_identifiers[i] = rp_xstrdup(vs->disks[k].instance_id);
    char u[37];
    rp_uuid(u);
    pi->rct_identifiers[i] = rp_xasprintf(RP_PREFIX "%s", u);
    rp_epoch *ep;
    size_t nep;
    if (rp_store_epochs(ctx->st, vs->disks[k].guid, &ep, &nep) < 0)
      goto out_prefix;
    for (size_t e = 0; e < nep; e++)
      if (ep[e].end_seq < 0 && rp_image_bitmap(states[k], ep[e].bitmap))
        prev[i] = rp_xstrdup(ep[e].bitmap);
    rp_epochs_free(ep, nep);
  }
  if (rp_job_check(job) < 0)
    goto out;
  if (rp_store_begin(ctx->st) < 0)
    goto out_prefix;
  pi->sequence = rp_store_vs_take_seq(ctx->st, vs->name);
  pi->element_name = rp_xstrdup(jget_s(p, "ElementName") ? jget_s(p, "ElementName") : "imported");
  if (pi->sequence < 0 || rp_store_rp_insert(ctx->st, r) < 0 || rp_store_commit(ctx->st) < 0) {
    rp_store_rollback(ctx->st);
    goto out_prefix;
  }
  row = true;
  for (size_t i = 0; i < nd; i++) {
    size_t k = 0;
    rp_vs_disk(vs, r->disk_guids[i], &k);
    done = i + 1;
    /* the new epoch records before the old one stops: on a running VM no
     * write falls between the two */
    if (rp_engine_bitmap_add(ctx->vm, vs->disks[k].path, pi->rct_identifiers[i], true) < 0 ||
        (prev[i] && rp_engine_bitmap_enable(ctx->vm, vs->disks[k].path, prev[i], false) < 0))
      goto out_prefix;
  }
  {
    /* the disks were replaced by the imported content: what the open
     * epochs recorded says nothing about the change to it */
    CLEANUP_FREE char *why = rp_xasprintf("disk content was replaced by the import of %s", iid);
    if (rp_commit_new_point(ctx, r, why) < 0)
      goto out_prefix;
  }
  if (out) {
    *out = rp_rp_rec_take_info(r);
    r = NULL;
  }
  rc = 0;
  goto out;
out_prefix:
  rp_err_prefix("ImportReferencePointMetadata");
out:
  if (rc < 0 && row) {
    rp_error saved = *rp_last_error();
    bool clean = true;
    for (size_t i = done; i-- > 0;) {
      size_t k = 0;
      rp_vs_disk(vs, r->disk_guids[i], &k);
      CLEANUP_FREE char *lost = NULL;
      if (rp_undo_disk(ctx->vm, vs->disks[k].path, NULL, r->info.rct_identifiers[i], prev[i],
                       &lost) < 0)
        clean = false;
      /* (import adds before it disables: a disabled previous epoch here
       * was disabled by someone else, which reconciliation reports) */
    }
    if (clean && rp_store_begin(ctx->st) == 0 &&
        (rp_store_rp_delete(ctx->st, r->info.guid) < 0 || rp_store_commit(ctx->st) < 0))
      rp_store_rollback(ctx->st);
    *(rp_error *)rp_last_error() = saved;
  }
  if (prev)
    for (size_t i = 0; i < nprev; i++)
      free(prev[i]);
  free(prev);
  if (states)
    rp_states_free(states, vs->n_disks);
  rp_rp_rec_free(r);
  rp_rp_rec_free(exist);
  json_decref(cfg);
  json_decref(rt);
  rp_vs_unlock_op(ctx, fd);
  rp_vs_info_free(vs);
  return rc;
}
