/* lvirt.h — libvirt-managed VMs: the only module that talks to libvirtd.
 *
 * A VS registered from libvirt (rp_vs_info.libvirt_uri set) is the domain
 * whose UUID is the VS GUID. Everything refpoint needs from libvirt is read
 * here on every operation: the run state (virDomainGetState), the disks of
 * the domain XML (live XML while it runs, else the persistent one), and a
 * QMP transport through libvirt's monitor passthrough
 * (virDomainQemuMonitorCommandWithFiles, libvirt-qemu), which also hands
 * QEMU file descriptors. Nothing here changes the domain: no XML edit, no
 * restart. The first passthrough command of a QEMU run makes libvirt log
 * the one-time taint "custom-monitor" in the domain's log.
 *
 * Built without libvirt (meson found no libvirt-dev), every call fails with
 * NOT_SUPPORTED and says so. libvirt's XML is parsed with libxml2 here only:
 * it is libvirt's configuration, not a wire protocol of ours. */
#ifndef RP_LVIRT_H
#define RP_LVIRT_H
#include "internal.h"
#include <stdbool.h>

#define RP_LIBVIRT_DEFAULT_URI "qemu:///system"

typedef struct rp_lv rp_lv;

/* Connects to uri (NULL: qemu:///system) and looks up the domain by UUID,
 * else by name. NOT_AVAILABLE when libvirtd does not answer, NOT_FOUND
 * when no such domain exists. Caller closes. */
int rp_lv_open(const char *uri, const char *domain, rp_lv **out);
void rp_lv_close(rp_lv *lv);
const char *rp_lv_uuid(const rp_lv *lv); /* lower case; borrowed */
const char *rp_lv_name(const rp_lv *lv);

/* "running", "paused", "shut off", or libvirt's name of another state
 * ("shutdown", "crashed", "pmsuspended", "blocked"). Caller frees. active
 * (may be NULL): whether a QEMU process runs it. */
int rp_lv_state(rp_lv *lv, char **state, bool *active);

/* libvirt's id of the running domain (a new one at every start), or -1. */
int rp_lv_domain_id(rp_lv *lv);

/* One <disk> of the domain XML. */
typedef struct rp_lv_disk {
  char *target;  /* "vda" */
  char *device;  /* "disk", "cdrom", "floppy", "lun" */
  char *type;    /* "file", "block", "network", "volume", ... */
  char *driver;  /* "qcow2", "raw", ... or NULL */
  char *source;  /* file or block device path, or NULL (network, empty) */
  bool overlay;  /* a non-empty <backingStore>: source sits on top of another image */
  char *alias;   /* "virtio-disk0" (live XML), or NULL */
} rp_lv_disk;
/* The domain's disks in XML order: the live XML when it runs, else the
 * persistent one. Caller frees with rp_lv_disks_free. */
int rp_lv_disks(rp_lv *lv, rp_lv_disk **out, size_t *n);
void rp_lv_disks_free(rp_lv_disk *d, size_t n);
/* Why a disk is not covered by refpoint ("raw disk", "cdrom", ...), or NULL
 * when it is (a qcow2 file). Static string. */
const char *rp_lv_disk_uncovered(const rp_lv_disk *d);

/* Every domain of the connection (UUIDs and names; caller frees both
 * arrays and their strings). */
int rp_lv_list(const char *uri, char ***uuids, char ***names, size_t *n);

/* One QMP command through libvirt's monitor passthrough: cmd is the whole
 * {"execute":...} text; fds (n_fds, may be 0) go along (SCM_RIGHTS inside
 * libvirt, as getfd/add-fd expect). *reply: QEMU's answer object text
 * (caller frees). Fails (FAILED/NOT_AVAILABLE) only when libvirt could not
 * deliver it; a QMP error comes back in the reply. */
int rp_lv_qmp(rp_lv *lv, const char *cmd, const int *fds, size_t n_fds, char **reply);

/* libvirt's jobs on the domain: a backup job (virsh backup-begin) or
 * another domain job that refpoint must not run beside. *what (caller
 * frees) names it, or NULL when the domain is free. */
int rp_lv_busy(rp_lv *lv, char **what);
#endif
