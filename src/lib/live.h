/* live.h — running virtual machines: the only module that speaks QMP (to
 * the VM's QEMU) and the qemu-guest-agent protocol.
 *
 * An operation on a VS with a registered QMP socket "attaches" to the VM
 * under the VS lock: it takes the VM's QMP lock (<state>/locks/<guid>.qmp,
 * so our own processes take turns on a socket that serves one client at a
 * time), connects, asks the run state, and matches every disk of the VS to
 * the qcow2 block node QEMU has open on that file (query-named-block-nodes).
 * Nothing answering on the socket means QEMU is not running: the operation
 * then takes the offline path (qemu-img's image locking still guards the
 * files). The engine calls (engine.h) take the attached VM and route each
 * image operation to QMP when the disk is open in it. */
#ifndef RP_LIVE_H
#define RP_LIVE_H
#include "copy.h"
#include "engine.h"

/* ---- QMP client ---------------------------------------------------------- */
typedef struct rp_qmp rp_qmp;
/* Connects and negotiates capabilities. NOT_AVAILABLE when nothing listens
 * (errno ENOENT / ECONNREFUSED kept), TIMEOUT when no greeting comes. */
int rp_qmp_connect(const char *sock, int timeout_ms, rp_qmp **out);
/* Runs one command (args stolen, may be NULL); *ret (may be NULL) gets the
 * "return" value (caller decrefs). A QMP error sets FAILED with the command
 * name and QEMU's description. Events are skipped. */
int rp_qmp_exec(rp_qmp *q, const char *cmd, json_t *args, json_t **ret, int timeout_ms);
void rp_qmp_close(rp_qmp *q);

/* ---- an attached VM ------------------------------------------------------ */
struct rp_vm {
  rp_qmp *q;
  int lock_fd;
  char *state;  /* "running", "paused", or QEMU's status name */
  char *busy;    /* a neighbour's job on the VM (libvirt backup, a foreign block job), or
                  * NULL: reads go on, operations refuse (rp_op_attach) */
  char *qemu_id; /* this QEMU process ("pid:PID:START" or "libvirt:ID"): a restarted
                  * QEMU is another one even when the files did not change */
  size_t n;
  char **paths; /* the VS's disks, index-aligned with nodes */
  char **nodes; /* qcow2 node names */
  /* QEMU's NBD server while exports of this attachment use it */
  int nbd_users;
  char nbd_dir[64];
  char *nbd_sock;
};

/* *out = NULL (and 0) when vs has no QMP socket or QEMU is not running;
 * *state (may be NULL) gets the runtime state (caller frees). lock_wait_ms:
 * how long to wait for another of our processes using the socket. Fails
 * (DISK_CHANGED) when QEMU runs but a disk of vs is not open in it, or is
 * not its active (writable) layer. */
int rp_vm_attach(const char *state_dir, const rp_vs_info *vs, int lock_wait_ms, rp_vm **out,
                 char **state);
void rp_vm_detach(rp_vm *vm);
/* The node serving path in vm, or NULL (vm NULL, or not open there). */
const char *rp_vm_node(const rp_vm *vm, const char *path);

/* What rp_engine_inspect gives, from QEMU: a bitmap QEMU loaded as
 * inconsistent counts as in_use; "enabled" is "recording". */
int rp_vm_inspect(rp_vm *vm, const char *node, rp_image_state **out);
int rp_vm_snapshot_delete(rp_vm *vm, const char *node, const char *name);
int rp_vm_bitmap_add(rp_vm *vm, const char *node, const char *name, bool enabled);
int rp_vm_bitmap_remove(rp_vm *vm, const char *node, const char *name);
int rp_vm_bitmap_enable(rp_vm *vm, const char *node, const char *name, bool enable);
/* dst |= src and optionally enable dst, atomically (one transaction). */
int rp_vm_bitmap_merge(rp_vm *vm, const char *node, const char *src, const char *dst,
                       bool enable_dst);

/* CreateReferencePoint's capture, one QMP transaction for all n disks:
 * per disk, disable prev[i] (if not NULL), add the persistent bitmap
 * newbm[i], and take the internal snapshot snap. The image files are
 * flushed from outside first so that the snapshot's own flush (guest I/O
 * is drained meanwhile) has little left to write. *pause_ms (may be NULL)
 * gets the transaction's round-trip time. */
int rp_vm_capture(rp_vm *vm, size_t n, const char *const *nodes, const char *const *paths,
                  const char *snap, const char *const *prev, const char *const *newbm,
                  double *pause_ms);
/* The clusters dirty in any of the bitmaps of node, read through QEMU's
 * own NBD server (bitmaps of a running QEMU are not in the file): a
 * temporary disabled bitmap = their union, exported read-only on a private
 * socket, its extents read, everything removed again. */
int rp_vm_dirty_ranges(rp_vm *vm, const char *node, const char *const *bitmaps, size_t n_bitmaps,
                       rp_range **out, size_t *n_out);

/* An export of export_node, read-only, by QEMU's own NBD server on a
 * private socket (rp_vm_nbd_sock; the server runs while this attachment has
 * exports), named rp_vm_nbd_name, with, when n_bitmaps > 0, a temporary
 * disabled bitmap on bm_node = the union of bitmaps, offered as
 * qemu:dirty-bitmap:<rp_vm_nbd_bitmap()>. Close removes all of it. */
typedef struct rp_vm_nbd rp_vm_nbd;
int rp_vm_nbd_open(rp_vm *vm, const char *export_node, const char *bm_node,
                   const char *const *bitmaps, size_t n_bitmaps, rp_vm_nbd **out);
const char *rp_vm_nbd_sock(const rp_vm *vm);
const char *rp_vm_nbd_name(const rp_vm_nbd *e);
const char *rp_vm_nbd_bitmap(const rp_vm_nbd *e);
void rp_vm_nbd_close(rp_vm *vm, rp_vm_nbd *e);

/* Fleecing (the VS's capture "fleecing"): RP <guid>'s view of disk i is a
 * scratch qcow2 (rp_fleece_file) opened as node rp_fleece_name with the
 * disk's node as backing, filled by a backup job (sync=none, same id) that
 * copies every cluster the guest is about to overwrite. The view lives
 * only as long as QEMU. Caller frees the names. */
char *rp_fleece_name(const char *rp_guid, size_t i);
char *rp_fleece_file(const char *state_dir, const char *rp_guid, size_t i);
/* 1 when QEMU has that node, 0 not (or vm NULL), -1 when it could not be asked. */
int rp_vm_has_node(rp_vm *vm, const char *node);
/* Adds the scratch nodes, then one transaction: per disk disable prev[i],
 * add newbm[i], start the backup job into fnodes[i]. */
int rp_vm_fleece_capture(rp_vm *vm, size_t n, const char *const *nodes,
                         const char *const *fnodes, const char *const *files,
                         const char *const *prev, const char *const *newbm, double *pause_ms);
/* Cancels the job and deletes the node (each if present). */
int rp_vm_fleece_release(rp_vm *vm, const char *fnode);

/* ---- application consistency: guest file systems frozen ------------------ */
typedef struct rp_freeze rp_freeze;
/* Freezes the guest's file systems through qemu-guest-agent on agent_sock.
 * A guard process owns the agent connection and thaws when rp_freeze_end
 * is called, when this process dies (even by SIGKILL), or after
 * max_frozen_ms, whichever comes first. NOT_AVAILABLE when no agent
 * answers within timeout_ms, FAILED when the agent refuses. */
int rp_freeze_begin(const char *agent_sock, int timeout_ms, int max_frozen_ms, rp_freeze **out);
/* Thaws (if the guard has not already) and reaps the guard. Fails when the
 * thaw failed or the guard had to thaw on its own (the capture took longer
 * than max_frozen_ms, so the point may not be application consistent). */
int rp_freeze_end(rp_freeze *f);
#endif
