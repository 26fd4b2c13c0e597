/* copy.h — the data path: read an NBD export (qemu-nbd) with libnbd, find
 * extents from block status, copy clusters into a qcow2 writer, and
 * compute the export checksum. The only module that uses libnbd. */
#ifndef RP_COPY_H
#define RP_COPY_H
#include "internal.h"
#include "qcow2w.h"
#include <stdbool.h>

typedef struct rp_range {
  uint64_t off, len;
} rp_range;

typedef struct rp_src rp_src;

/* Connects to a unix socket, asking for base:allocation and the given
 * dirty bitmaps. Fails (TRACKING_LOST) when a bitmap is not offered. */
int rp_src_open(const char *sock, const char *const *bitmaps, size_t n_bitmaps, rp_src **out);
/* The same for a named export (QEMU's own NBD server). */
int rp_src_open_export(const char *sock, const char *name, const char *const *bitmaps,
                       size_t n_bitmaps, rp_src **out);
void rp_src_close(rp_src *s);
uint64_t rp_src_size(const rp_src *s);

/* Cluster-aligned ranges (the last one clipped at the disk end), sorted
 * and merged, of: data that is not known to read as zero (bitmap NULL),
 * or the clusters dirty in any of the bitmaps. Caller frees *out. */
int rp_src_ranges(rp_src *s, const char *const *bitmaps, size_t n_bitmaps, rp_range **out,
                  size_t *n);

typedef struct rp_copy_stats {
  uint64_t data_bytes; /* clusters written as data */
  uint64_t zero_bytes; /* clusters found to read as zeros */
  unsigned char digest[16]; /* XXH3-128, canonical (big-endian) */
} rp_copy_stats;

/* Reads ranges (many requests in flight) and computes the digest.
 * w == NULL: only the digest (verification). zero_as_flag: zero clusters
 * are recorded as zero clusters (incremental) instead of being skipped. */
int rp_src_copy(rp_src *s, const rp_range *r, size_t n, rp_qcow2w *w, bool zero_as_flag,
                rp_job *job, rp_copy_stats *st);

/* "xxh3-128:<hex>" of a digest, static per-thread buffer. */
const char *rp_digest_hex(const unsigned char d[16]);
#endif
