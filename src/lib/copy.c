/* copy.c — libnbd data path (see copy.h).
 *
 * Extents come from NBD block status: base:allocation for a full export,
 * qemu:dirty-bitmap:<epoch> for an incremental one (the union of the epoch
 * bitmaps between the base and the exported reference point). libnbd 1.14
 * has 32-bit extent lengths, so the disk is walked in 1 GiB requests.
 *
 * Copy: each range is cut into pieces at 256 KiB-aligned guest offsets; up
 * to QD pieces are in flight with nbd_aio_pread. When a piece arrives its
 * hash is taken and its clusters go to the qcow2 writer (all-zero clusters
 * are skipped, or recorded as zero clusters). The export digest is the
 * 128-bit XXH3 hash over (BE64 offset, BE64 length, XXH3-128(piece)) of all
 * pieces in guest order, so it does not depend on completion order and
 * can be recomputed from the export file alone (rp_verify).
 *
 * Why XXH3-128 and not SHA-256: the checksum proves that the export is what
 * was read, against corruption on the way and at rest. It cannot prove
 * more, because the manifest that holds it sits next to the data (whoever
 * can change one can change the other). SHA-256 cost a quarter of the CPU
 * time of a full export (measured with perf, see docs/PERFORMANCE.md);
 * XXH3 runs at memory speed. */
#include "copy.h"

#include <endian.h>
#include <libnbd.h>
#include <xxhash.h>
#include <string.h>

/* Requests of 256 KiB, 8 in flight: measured best against qemu-nbd 7.2 on
 * a unix socket (1 MiB requests, 16 in flight were 2x slower: see
 * docs/PERFORMANCE.md). A piece is also the unit of the checksum. */
#define PIECE (256u << 10)
#define QD 8
#define STATUS_CHUNK (1ULL << 30)

struct rp_src {
  struct nbd_handle *h;
  uint64_t size;
};

static int nbd_fail(const char *what)
{
  return rp_err_set(RP_E_FAILED, 0, "%s: %s", what, nbd_get_error() ? nbd_get_error() : "libnbd error");
}

int rp_src_open(const char *sock, const char *const *bitmaps, size_t n_bitmaps, rp_src **out)
{
  return rp_src_open_export(sock, "", bitmaps, n_bitmaps, out);
}

int rp_src_open_export(const char *sock, const char *name, const char *const *bitmaps,
                       size_t n_bitmaps, rp_src **out)
{
  rp_src *s = rp_xcalloc(1, sizeof *s);
  s->h = nbd_create();
  if (!s->h) {
    free(s);
    return nbd_fail("nbd_create");
  }
  char ctx[512];
  /* our buffers are used only after a successful read: no need for libnbd
   * to zero them first (that memset was 10% of an export's CPU time) */
  nbd_set_pread_initialize(s->h, false);
  if (nbd_add_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0)
    goto fail;
  for (size_t i = 0; i < n_bitmaps; i++) {
    snprintf(ctx, sizeof ctx, "qemu:dirty-bitmap:%s", bitmaps[i]);
    if (nbd_add_meta_context(s->h, ctx) < 0)
      goto fail;
  }
  if (nbd_set_export_name(s->h, name) < 0 || nbd_connect_unix(s->h, sock) < 0)
    goto fail;
  int64_t sz = nbd_get_size(s->h);
  if (sz < 0)
    goto fail;
  s->size = (uint64_t)sz;
  if (nbd_can_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) != 1) {
    rp_src_close(s);
    return rp_err_set(RP_E_FAILED, 0, "NBD server does not offer base:allocation");
  }
  for (size_t i = 0; i < n_bitmaps; i++) {
    snprintf(ctx, sizeof ctx, "qemu:dirty-bitmap:%s", bitmaps[i]);
    if (nbd_can_meta_context(s->h, ctx) != 1) {
      rp_src_close(s);
      return rp_err_set(RP_E_TRACKING_LOST, 0, "change-tracking bitmap %s is not available",
                        bitmaps[i]);
    }
  }
  *out = s;
  return 0;
fail:
  nbd_fail("nbd connect");
  nbd_close(s->h);
  free(s);
  return -1;
}

void rp_src_close(rp_src *s)
{
  if (!s)
    return;
  nbd_shutdown(s->h, 0);
  nbd_close(s->h);
  free(s);
}

uint64_t rp_src_size(const rp_src *s)
{
  return s->size;
}

struct walk {
  const char *ctx;
  bool dirty_mode;
  uint64_t end; /* how far the context has been described */
  rp_range *r;
  size_t n, cap;
  uint64_t size;
};

static void add_range(struct walk *w, uint64_t off, uint64_t len)
{
  uint64_t a = off / RP_QCOW2_CLUSTER * RP_QCOW2_CLUSTER;
  uint64_t b = (off + len + RP_QCOW2_CLUSTER - 1) / RP_QCOW2_CLUSTER * RP_QCOW2_CLUSTER;
  if (b > w->size)
    b = w->size;
  if (w->n && w->r[w->n - 1].off + w->r[w->n - 1].len >= a) {
    rp_range *last = &w->r[w->n - 1];
    if (b > last->off + last->len)
      last->len = b - last->off;
    return;
  }
  if (w->n == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 256;
    w->r = rp_xrealloc(w->r, w->cap * sizeof *w->r);
  }
  w->r[w->n++] = (rp_range){a, b - a};
}

static int extent_cb(void *user, const char *metacontext, uint64_t offset, uint32_t *entries,
                     size_t nr, int *error)
{
  (void)error;
  struct walk *w = user;
  if (strcmp(metacontext, w->ctx))
    return 0;
  uint64_t off = offset;
  for (size_t i = 0; i + 1 < nr; i += 2) {
    uint32_t len = entries[i], fl = entries[i + 1];
    bool take = w->dirty_mode ? (fl & 1) : !(fl & (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO));
    if (take && len)
      add_range(w, off, len);
    off += len;
  }
  w->end = off;
  return 0;
}

static int cmp_range(const void *a, const void *b)
{
  const rp_range *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

int rp_src_ranges(rp_src *s, const char *const *bitmaps, size_t n_bitmaps, rp_range **out,
                  size_t *n)
{
  struct walk all = {.size = s->size};
  size_t passes = bitmaps ? n_bitmaps : 1;
  for (size_t p = 0; p < passes; p++) {
    char ctx[512];
    struct walk w = {.size = s->size, .dirty_mode = bitmaps != NULL};
    if (bitmaps)
      snprintf(ctx, sizeof ctx, "qemu:dirty-bitmap:%s", bitmaps[p]);
    else
      snprintf(ctx, sizeof ctx, "%s", LIBNBD_CONTEXT_BASE_ALLOCATION);
    w.ctx = ctx;
    uint64_t off = 0;
    while (off < s->size) {
      uint64_t cnt = s->size - off < STATUS_CHUNK ? s->size - off : STATUS_CHUNK;
      w.end = off;
      if (nbd_block_status(s->h, cnt, off, (nbd_extent_callback){.callback = extent_cb, .user_data = &w},
                           0) < 0) {
        free(w.r);
        free(all.r);
        return nbd_fail("block status");
      }
      if (w.end <= off) {
        free(w.r);
        free(all.r);
        return rp_err_set(RP_E_FAILED, 0, "block status made no progress at %llu",
                          (unsigned long long)off);
      }
      off = w.end;
    }
    for (size_t i = 0; i < w.n; i++) {
      if (all.n == all.cap) {
        all.cap = all.cap ? all.cap * 2 : 256;
        all.r = rp_xrealloc(all.r, all.cap * sizeof *all.r);
      }
      all.r[all.n++] = w.r[i];
    }
    free(w.r);
  }
  /* sort and merge the union of all passes */
  if (all.n)
    qsort(all.r, all.n, sizeof *all.r, cmp_range);
  size_t m = 0;
  for (size_t i = 0; i < all.n; i++) {
    if (m && all.r[m - 1].off + all.r[m - 1].len >= all.r[i].off) {
      uint64_t e = all.r[i].off + all.r[i].len;
      if (e > all.r[m - 1].off + all.r[m - 1].len)
        all.r[m - 1].len = e - all.r[m - 1].off;
    } else
      all.r[m++] = all.r[i];
  }
  *out = all.r;
  *n = m;
  return 0;
}

/* ---- copy --------------------------------------------------------------- */

struct piece {
  uint64_t off;
  uint32_t len;
};

struct slot {
  struct copy *c;
  unsigned char *buf;
  size_t piece;
  bool busy;
};

struct copy {
  rp_qcow2w *w;
  bool zero_as_flag;
  struct piece *pieces;
  unsigned char (*hashes)[16];
  rp_copy_stats *st;
  rp_job *job;
  int failed; /* error already set */
  struct slot slots[QD];
};

static bool cluster_is_zero(const unsigned char *p, size_t n)
{
  static const unsigned char z[16];
  return memcmp(p, z, 16) == 0 && memcmp(p, p + 16, n - 16) == 0;
}

static int process_piece(struct copy *c, struct slot *sl)
{
  struct piece *pc = &c->pieces[sl->piece];
  XXH128_canonical_t hc;
  XXH128_canonicalFromHash(&hc, XXH3_128bits(sl->buf, pc->len));
  memcpy(c->hashes[sl->piece], hc.digest, 16);
  size_t ncl = (pc->len + RP_QCOW2_CLUSTER - 1) / RP_QCOW2_CLUSTER;
  if (pc->len % RP_QCOW2_CLUSTER) /* last cluster of the disk: pad */
    memset(sl->buf + pc->len, 0, ncl * RP_QCOW2_CLUSTER - pc->len);
  size_t run_start = 0, run_len = 0;
  for (size_t i = 0; i <= ncl; i++) {
    bool zero = i < ncl && cluster_is_zero(sl->buf + i * RP_QCOW2_CLUSTER, RP_QCOW2_CLUSTER);
    if (i < ncl && !zero) {
      if (!run_len)
        run_start = i;
      run_len++;
      continue;
    }
    if (run_len) {
      if (c->w && rp_qcow2w_write(c->w, pc->off + run_start * RP_QCOW2_CLUSTER,
                                  sl->buf + run_start * RP_QCOW2_CLUSTER, run_len) < 0)
        return -1;
      c->st->data_bytes += run_len * RP_QCOW2_CLUSTER;
      run_len = 0;
    }
    if (i < ncl) {
      c->st->zero_bytes += RP_QCOW2_CLUSTER;
      if (c->w && c->zero_as_flag && rp_qcow2w_zero(c->w, pc->off + i * RP_QCOW2_CLUSTER) < 0)
        return -1;
    }
  }
  rp_job_add(c->job, pc->len);
  return 0;
}

static int done_cb(void *user, int *error)
{
  struct slot *sl = user;
  struct copy *c = sl->c;
  sl->busy = false;
  if (c->failed)
    return 1;
  if (*error) {
    c->failed = 1;
    rp_err_set(RP_E_FAILED, *error, "NBD read at %llu",
               (unsigned long long)c->pieces[sl->piece].off);
    return 1;
  }
  if (process_piece(c, sl) < 0)
    c->failed = 1;
  return 1;
}

int rp_src_copy(rp_src *s, const rp_range *r, size_t n, rp_qcow2w *w, bool zero_as_flag,
                rp_job *job, rp_copy_stats *st)
{
  memset(st, 0, sizeof *st);
  /* cut ranges into pieces at 1 MiB-aligned guest offsets */
  size_t np = 0, cap = 0;
  struct piece *pieces = NULL;
  for (size_t i = 0; i < n; i++) {
    uint64_t off = r[i].off, end = r[i].off + r[i].len;
    while (off < end) {
      uint64_t b = (off / PIECE + 1) * PIECE;
      if (b > end)
        b = end;
      if (np == cap) {
        cap = cap ? cap * 2 : 1024;
        pieces = rp_xrealloc(pieces, cap * sizeof *pieces);
      }
      pieces[np++] = (struct piece){off, (uint32_t)(b - off)};
      off = b;
    }
  }
  struct copy c = {.w = w, .zero_as_flag = zero_as_flag, .pieces = pieces, .st = st, .job = job};
  c.hashes = rp_xcalloc(np ? np : 1, 16);
  for (int i = 0; i < QD; i++) {
    c.slots[i].c = &c;
    c.slots[i].buf = rp_xmalloc(PIECE);
  }
  int rc = -1;
  size_t next = 0;
  while (next < np || nbd_aio_in_flight(s->h) > 0) {
    if (c.failed)
      break;
    if (rp_job_check(job) < 0) {
      c.failed = 1;
      break;
    }
    int free_slot = -1;
    if (next < np)
      for (int i = 0; i < QD; i++)
        if (!c.slots[i].busy) {
          free_slot = i;
          break;
        }
    if (free_slot >= 0) {
      struct slot *sl = &c.slots[free_slot];
      sl->busy = true;
      sl->piece = next;
      if (nbd_aio_pread(s->h, sl->buf, pieces[next].len, pieces[next].off,
                        (nbd_completion_callback){.callback = done_cb, .user_data = sl}, 0) < 0) {
        sl->busy = false;
        nbd_fail("NBD read");
        c.failed = 1;
        break;
      }
      next++;
      continue;
    }
    if (nbd_poll(s->h, -1) < 0) {
      nbd_fail("NBD poll");
      c.failed = 1;
      break;
    }
  }
  /* drain what is still in flight so no callback touches freed buffers */
  while (nbd_aio_in_flight(s->h) > 0)
    if (nbd_poll(s->h, -1) < 0)
      break;
  if (!c.failed) {
    XXH3_state_t *h = XXH3_createState();
    if (!h)
      abort();
    XXH3_128bits_reset(h);
    for (size_t i = 0; i < np; i++) {
      uint64_t be[2] = {htobe64(pieces[i].off), htobe64(pieces[i].len)};
      XXH3_128bits_update(h, be, sizeof be);
      XXH3_128bits_update(h, c.hashes[i], 16);
    }
    XXH128_canonical_t hc;
    XXH128_canonicalFromHash(&hc, XXH3_128bits_digest(h));
    XXH3_freeState(h);
    memcpy(st->digest, hc.digest, 16);
    rc = 0;
  }
  for (int i = 0; i < QD; i++)
    free(c.slots[i].buf);
  free(c.hashes);
  free(pieces);
  return rc;
}

const char *rp_digest_hex(const unsigned char d[16])
{
  static _Thread_local char out[9 + 33];
  memcpy(out, "xxh3-128:", 9);
  for (int i = 0; i < 16; i++)
    snprintf(out + 9 + 2 * i, 3, "%02x", d[i]);
  return out;
}
