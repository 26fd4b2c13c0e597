/* qcow2w.c — streaming qcow2 v3 writer (see qcow2w.h).
 *
 * File layout of a finished image, in 64 KiB clusters:
 *   0                header, header extensions, backing file name
 *   1 .. D           data clusters, in arrival order
 *   D+1 ..           L2 tables (only those that map something), L1 table,
 *                    refcount table, refcount blocks
 * Every cluster in the file has refcount 1, so every L1/L2 entry carries
 * the COPIED flag. Zero clusters are L2 entries with only bit 0 set. */
#include "qcow2w.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define CB 16u /* cluster bits */
#define L2_ENTRIES (RP_QCOW2_CLUSTER / 8u)
#define RB_ENTRIES (RP_QCOW2_CLUSTER / 2u) /* refcount_bits = 16 */
#define OFLAG_COPIED (1ULL << 63)
#define OFLAG_ZERO 1ULL

struct rp_qcow2w {
  int fd;
  char *path;
  char *backing;
  uint64_t vsize;
  uint64_t l1_size;
  uint64_t **l2; /* l1_size pointers, lazily allocated tables (host order) */
  uint64_t next_host; /* next free host cluster index */
  uint64_t data_bytes;
  uint64_t flushed_to; /* host cluster up to which writeback was started */
};

/* Start writeback of appended data every KICK bytes, so that the fsync at
 * the end finds little left to do (the data reaches the disk while the
 * next data is still being read). */
#define KICK_CLUSTERS ((32u << 20) / RP_QCOW2_CLUSTER)

static uint64_t div_up(uint64_t a, uint64_t b)
{
  return (a + b - 1) / b;
}

rp_qcow2w *rp_qcow2w_create(const char *path, uint64_t virtual_size, const char *backing)
{
  if (backing && strlen(backing) > 1023) {
    rp_err_set(RP_E_INVALID_PARAMETER, 0, "qcow2 %s: backing name too long", path);
    return NULL;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* private: a VM's disk */
  if (fd < 0) {
    rp_err_set(rp_err_from_errno(errno), errno, "create %s", path);
    return NULL;
  }
  rp_qcow2w *w = rp_xcalloc(1, sizeof *w);
  w->fd = fd;
  w->path = rp_xstrdup(path);
  w->backing = rp_xstrdup(backing);
  w->vsize = virtual_size;
  w->l1_size = div_up(div_up(virtual_size, RP_QCOW2_CLUSTER), L2_ENTRIES);
  if (w->l1_size == 0)
    w->l1_size = 1;
  w->l2 = rp_xcalloc(w->l1_size, sizeof(uint64_t *));
  w->next_host = 1;
  w->flushed_to = 1;
  return w;
}

static uint64_t *l2_slot(rp_qcow2w *w, uint64_t guest_off)
{
  uint64_t c = guest_off >> CB;
  uint64_t i1 = c / L2_ENTRIES, i2 = c % L2_ENTRIES;
  if (!w->l2[i1])
    w->l2[i1] = rp_xcalloc(L2_ENTRIES, sizeof(uint64_t));
  return &w->l2[i1][i2];
}

static int pwrite_all(rp_qcow2w *w, const void *buf, size_t len, uint64_t off)
{
  const char *p = buf;
  while (len > 0) {
    ssize_t r = pwrite(w->fd, p, len, (off_t)off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return rp_err_set(rp_err_from_errno(errno), errno, "write %s", w->path);
    p += r;
    len -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

int rp_qcow2w_write(rp_qcow2w *w, uint64_t guest_off, const void *buf, size_t n)
{
  if (guest_off % RP_QCOW2_CLUSTER || guest_off + (uint64_t)n * RP_QCOW2_CLUSTER >
                                          div_up(w->vsize, RP_QCOW2_CLUSTER) * RP_QCOW2_CLUSTER)
    return rp_err_set(RP_E_FAILED, 0, "qcow2 %s: write outside the disk at %llu", w->path,
                      (unsigned long long)guest_off);
  uint64_t host = w->next_host;
  if (pwrite_all(w, buf, (size_t)n * RP_QCOW2_CLUSTER, host << CB) < 0)
    return -1;
  w->next_host += n;
  if (w->next_host - w->flushed_to >= KICK_CLUSTERS) {
    sync_file_range(w->fd, (off_t)(w->flushed_to << CB),
                    (off_t)((w->next_host - w->flushed_to) << CB), SYNC_FILE_RANGE_WRITE);
    w->flushed_to = w->next_host;
  }
  for (size_t i = 0; i < n; i++)
    *l2_slot(w, guest_off + (uint64_t)i * RP_QCOW2_CLUSTER) = ((host + i) << CB) | OFLAG_COPIED;
  w->data_bytes += (uint64_t)n * RP_QCOW2_CLUSTER;
  return 0;
}

int rp_qcow2w_zero(rp_qcow2w *w, uint64_t guest_off)
{
  if (guest_off % RP_QCOW2_CLUSTER || guest_off >= w->vsize)
    return rp_err_set(RP_E_FAILED, 0, "qcow2 %s: zero outside the disk", w->path);
  *l2_slot(w, guest_off) = OFLAG_ZERO;
  return 0;
}

uint64_t rp_qcow2w_data_bytes(const rp_qcow2w *w)
{
  return w->data_bytes;
}

static void put32(unsigned char *p, uint32_t v)
{
  v = htobe32(v);
  memcpy(p, &v, 4);
}
static void put64(unsigned char *p, uint64_t v)
{
  v = htobe64(v);
  memcpy(p, &v, 8);
}

static void free_w(rp_qcow2w *w)
{
  for (uint64_t i = 0; i < w->l1_size; i++)
    free(w->l2[i]);
  free(w->l2);
  free(w->path);
  free(w->backing);
  free(w);
}

int rp_qcow2w_finish(rp_qcow2w *w)
{
  int rc = -1;
  unsigned char *buf = rp_xcalloc(1, RP_QCOW2_CLUSTER);
  uint64_t n_l2 = 0;
  for (uint64_t i = 0; i < w->l1_size; i++)
    n_l2 += w->l2[i] != NULL;
  uint64_t data_end = w->next_host;
  uint64_t l1_clusters = div_up(w->l1_size * 8, RP_QCOW2_CLUSTER);
  /* refcount blocks cover every cluster including themselves: iterate */
  uint64_t rb = 1, rt = 1, total;
  for (;;) {
    total = data_end + n_l2 + l1_clusters + rt + rb;
    uint64_t rb2 = div_up(total, RB_ENTRIES), rt2 = div_up(rb2 * 8, RP_QCOW2_CLUSTER);
    if (rb2 == rb && rt2 == rt)
      break;
    rb = rb2;
    rt = rt2;
  }
  uint64_t l2_first = data_end, l1_off = data_end + n_l2, rt_off = l1_off + l1_clusters,
           rb_first = rt_off + rt;

  /* L2 tables, in L1 order */
  uint64_t next = l2_first;
  uint64_t *l1 = rp_xcalloc(l1_clusters * L2_ENTRIES, sizeof(uint64_t));
  for (uint64_t i = 0; i < w->l1_size; i++) {
    if (!w->l2[i])
      continue;
    for (uint64_t k = 0; k < L2_ENTRIES; k++)
      put64(buf + k * 8, w->l2[i][k]);
    if (pwrite_all(w, buf, RP_QCOW2_CLUSTER, next << CB) < 0)
      goto out;
    put64((unsigned char *)&l1[i], (next << CB) | OFLAG_COPIED);
    next++;
  }
  if (pwrite_all(w, l1, l1_clusters * RP_QCOW2_CLUSTER, l1_off << CB) < 0)
    goto out;
  /* refcount table */
  {
    unsigned char *rtab = rp_xcalloc(rt, RP_QCOW2_CLUSTER);
    for (uint64_t i = 0; i < rb; i++)
      put64(rtab + i * 8, (rb_first + i) << CB);
    int r = pwrite_all(w, rtab, rt * RP_QCOW2_CLUSTER, rt_off << CB);
    free(rtab);
    if (r < 0)
      goto out;
  }
  /* refcount blocks: every cluster 0..total-1 has refcount 1 */
  for (uint64_t i = 0; i < rb; i++) {
    memset(buf, 0, RP_QCOW2_CLUSTER);
    for (uint64_t k = 0; k < RB_ENTRIES; k++) {
      uint64_t c = i * RB_ENTRIES + k;
      if (c >= total)
        break;
      buf[k * 2] = 0;
      buf[k * 2 + 1] = 1;
    }
    if (pwrite_all(w, buf, RP_QCOW2_CLUSTER, (rb_first + i) << CB) < 0)
      goto out;
  }
  /* header */
  memset(buf, 0, RP_QCOW2_CLUSTER);
  memcpy(buf, "QFI\xfb", 4);
  put32(buf + 4, 3);
  put32(buf + 20, CB);
  put64(buf + 24, w->vsize);
  put32(buf + 36, (uint32_t)w->l1_size);
  put64(buf + 40, l1_off << CB);
  put64(buf + 48, rt_off << CB);
  put32(buf + 56, (uint32_t)rt);
  put32(buf + 96, 4); /* refcount_order: 16-bit refcounts */
  put32(buf + 100, 104);
  size_t p = 104;
  if (w->backing) {
    put32(buf + p, 0xE2792ACAu); /* backing file format name */
    put32(buf + p + 4, 5);
    memcpy(buf + p + 8, "qcow2", 5);
    p += 16;
  }
  put32(buf + p, 0); /* end of extensions */
  put32(buf + p + 4, 0);
  p += 8;
  if (w->backing) {
    size_t bl = strlen(w->backing);
    put64(buf + 8, p);
    put32(buf + 16, (uint32_t)bl);
    memcpy(buf + p, w->backing, bl);
  }
  if (pwrite_all(w, buf, RP_QCOW2_CLUSTER, 0) < 0)
    goto out;
  if (fsync(w->fd) < 0) {
    rp_err_set(rp_err_from_errno(errno), errno, "fsync %s", w->path);
    goto out;
  }
  rc = 0;
out:
  free(l1);
  free(buf);
  if (close(w->fd) < 0 && rc == 0)
    rc = rp_err_set(rp_err_from_errno(errno), errno, "close %s", w->path);
  if (rc < 0)
    unlink(w->path);
  free_w(w);
  return rc;
}

void rp_qcow2w_abort(rp_qcow2w *w)
{
  if (!w)
    return;
  close(w->fd);
  unlink(w->path);
  free_w(w);
}
