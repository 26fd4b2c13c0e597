/* engine.h — the only module that runs qemu tools (qemu-img, qemu-nbd).
 * Each call maps a tool failure to an rp_errcode (a lock conflict is
 * IN_USE, a missing file DISK_CHANGED, anything else FAILED) with the
 * tool's own message in the error record. */
#ifndef RP_ENGINE_H
#define RP_ENGINE_H
#include "internal.h"
#include <stdbool.h>

typedef struct rp_bitmap_st {
  char *name;
  bool in_use;  /* set by a writer that did not close cleanly */
  bool enabled; /* "auto": recording */
  uint32_t granularity;
} rp_bitmap_st;

typedef struct rp_image_state {
  uint64_t virtual_size;
  char *format;
  bool qcow2_v3;
  bool corrupt;
  bool encrypted;     /* LUKS/AES qcow2: our tools cannot open it without a secret */
  bool external_data; /* a qcow2 with an external data file */
  size_t n_bitmaps;
  rp_bitmap_st *bitmaps;
  size_t n_snapshots;
  char **snapshots;
} rp_image_state;

/* A running VM attached over QMP (live.h); NULL everywhere means offline.
 * The image calls below take it first: a disk open in that VM is changed
 * through QMP, any other with qemu-img. */
typedef struct rp_vm rp_vm;

/* qemu-img info (taking the shared lock, so a running writer gives IN_USE).
 * Caller frees *out with rp_image_state_free. */
int rp_engine_inspect(rp_vm *vm, const char *path, rp_image_state **out);
void rp_image_state_free(rp_image_state *s);
/* From an ImageInfo (qemu-img info, or a QMP BlockDeviceInfo's "image");
 * live_bitmaps: a running QEMU's BlockDirtyInfo list instead of the file's. */
typedef struct json_t json_t;
rp_image_state *rp_image_state_parse(json_t *info, json_t *live_bitmaps);
const rp_bitmap_st *rp_image_bitmap(const rp_image_state *s, const char *name);
bool rp_image_has_snapshot(const rp_image_state *s, const char *name);

int rp_engine_snapshot_create(const char *path, const char *name);
/* An empty qcow2 image (fleecing scratch). */
int rp_engine_create_image(const char *path, uint64_t size);
int rp_engine_snapshot_delete(rp_vm *vm, const char *path, const char *name);

/* Bitmap operations on one bitmap (qemu-img, or QMP when vm has the disk). */
int rp_engine_bitmap_add(rp_vm *vm, const char *path, const char *name, bool enabled);
int rp_engine_bitmap_remove(rp_vm *vm, const char *path, const char *name);
int rp_engine_bitmap_enable(rp_vm *vm, const char *path, const char *name, bool enable);
/* dst |= src, then optionally enable dst; one qemu-img call. */
int rp_engine_bitmap_merge(rp_vm *vm, const char *path, const char *src, const char *dst, bool enable_dst);

/* A read-only qemu-nbd serving one image over a private unix socket. */
typedef struct rp_nbd_server {
  pid_t pid;
  char *dir;  /* private temp dir holding the socket and pid file */
  char *sock; /* socket path */
  char *path; /* the image */
} rp_nbd_server;

/* snapshot: NULL for the active layer. bitmaps: exported as
 * qemu:dirty-bitmap:NAME. no_backing: open the file alone (backing=null). */
int rp_engine_nbd_start(const char *path, const char *snapshot, const char *const *bitmaps,
                        size_t n_bitmaps, bool no_backing, rp_nbd_server **out);
void rp_engine_nbd_stop(rp_nbd_server *s); /* kills and reaps; NULL ok */
/* The two halves of rp_engine_nbd_start, so that the server's start-up can
 * overlap other work: spawn returns at once; ready waits until the socket
 * accepts (or fails with the server's message; the caller still stops s). */
int rp_engine_nbd_spawn(const char *path, const char *snapshot, const char *const *bitmaps,
                        size_t n_bitmaps, bool no_backing, rp_nbd_server **out);
int rp_engine_nbd_ready(rp_nbd_server *s);

/* qemu-img convert of a chain given as files (oldest first) to a qcow2 at
 * out_path, without relying on the files' own backing links. */
int rp_engine_convert_chain(const char *const *files, size_t n, const char *out_path);
#endif
