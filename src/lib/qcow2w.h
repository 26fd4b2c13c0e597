/* qcow2w.h — a streaming writer of new qcow2 v3 images.
 *
 * Export files are written once, front to back: data clusters are appended
 * as they arrive (in any guest order), and the metadata (L2 tables, L1,
 * refcounts, header) is laid out after the data when the image is
 * finished. The result is a plain qcow2 v3 file with 64 KiB clusters,
 * optionally with a backing file (relative name, format qcow2), that every
 * stock QEMU tool reads; tests prove it with qemu-img check and compare. */
#ifndef RP_QCOW2W_H
#define RP_QCOW2W_H
#include "internal.h"

#define RP_QCOW2_CLUSTER 65536u

typedef struct rp_qcow2w rp_qcow2w;

/* Creates path exclusively (O_EXCL). backing: NULL, or the backing file
 * name to record (qemu resolves a relative name against the image's
 * directory). Returns NULL with the error set. */
rp_qcow2w *rp_qcow2w_create(const char *path, uint64_t virtual_size, const char *backing);
/* Writes n whole clusters of data for guest offset guest_off (cluster
 * aligned), each cluster at most once per image. buf holds n*64 KiB. */
int rp_qcow2w_write(rp_qcow2w *w, uint64_t guest_off, const void *buf, size_t n);
/* Records cluster guest_off as reading zeros (v3 zero flag, no data). */
int rp_qcow2w_zero(rp_qcow2w *w, uint64_t guest_off);
/* Writes the metadata, fsyncs, closes and frees w (also on failure). */
int rp_qcow2w_finish(rp_qcow2w *w);
/* Closes, unlinks the file and frees w. NULL ok. */
void rp_qcow2w_abort(rp_qcow2w *w);
uint64_t rp_qcow2w_data_bytes(const rp_qcow2w *w);
#endif
