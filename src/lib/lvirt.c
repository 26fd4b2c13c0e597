/* lvirt.c — libvirt-managed VMs (see lvirt.h). Read-only API calls for
 * identity, state and disks; the monitor passthrough for QMP. */
#include "lvirt.h"

#include <string.h>
#include <unistd.h>

#ifdef HAVE_LIBVIRT
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdlib.h>

struct rp_lv {
  virConnectPtr conn;
  virDomainPtr dom;
  char *uri;
  char uuid[VIR_UUID_STRING_BUFLEN];
  char *name;
};

/* libvirt prints every error on stderr by default; ours go to the record */
static void quiet(void *u, virErrorPtr e) { (void)u, (void)e; }
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void lv_init(void)
{
  virInitialize();
  virSetErrorFunc(NULL, quiet);
}

static const char *lv_msg(void)
{
  const char *m = virGetLastErrorMessage();
  return m && *m ? m : "unknown libvirt error";
}

static int lv_connect(const char *uri, virConnectPtr *out)
{
  pthread_once(&init_once, lv_init);
  if (!uri)
    uri = RP_LIBVIRT_DEFAULT_URI;
  virConnectPtr c = virConnectOpen(uri);
  if (!c)
    return rp_err_set(RP_E_NOT_AVAILABLE, 0,
                      "libvirt %s: cannot connect (is libvirtd running?): %s", uri, lv_msg());
  virConnSetErrorFunc(c, NULL, quiet);
  *out = c;
  return 0;
}

void rp_lv_close(rp_lv *lv)
{
  if (!lv)
    return;
  if (lv->dom)
    virDomainFree(lv->dom);
  if (lv->conn)
    virConnectClose(lv->conn);
  free(lv->uri);
  free(lv->name);
  free(lv);
}

int rp_lv_open(const char *uri, const char *domain, rp_lv **out)
{
  rp_lv *lv = rp_xcalloc(1, sizeof *lv);
  lv->uri = rp_xstrdup(uri ? uri : RP_LIBVIRT_DEFAULT_URI);
  if (lv_connect(lv->uri, &lv->conn) < 0)
    goto fail;
  lv->dom = strlen(domain) == 36 ? virDomainLookupByUUIDString(lv->conn, domain) : NULL;
  if (!lv->dom)
    lv->dom = virDomainLookupByName(lv->conn, domain);
  if (!lv->dom) {
    virErrorPtr e = virGetLastError();
    if (!e || e->code == VIR_ERR_NO_DOMAIN)
      rp_err_set(RP_E_NOT_FOUND, 0, "libvirt %s has no domain %s (undefined?)", lv->uri, domain);
    else
      rp_err_set(RP_E_NOT_AVAILABLE, 0, "libvirt %s: domain %s: %s", lv->uri, domain, lv_msg());
    goto fail;
  }
  if (virDomainGetUUIDString(lv->dom, lv->uuid) < 0) {
    rp_err_set(RP_E_FAILED, 0, "libvirt: domain %s: %s", domain, lv_msg());
    goto fail;
  }
  for (char *p = lv->uuid; *p; p++)
    if (*p >= 'A' && *p <= 'F')
      *p = (char)(*p - 'A' + 'a');
  const char *nm = virDomainGetName(lv->dom);
  lv->name = rp_xstrdup(nm ? nm : domain);
  *out = lv;
  return 0;
fail:
  rp_lv_close(lv);
  return -1;
}

const char *rp_lv_uuid(const rp_lv *lv) { return lv->uuid; }
int rp_lv_domain_id(rp_lv *lv)
{
  unsigned int id = virDomainGetID(lv->dom);
  return id == (unsigned int)-1 ? -1 : (int)id;
}
const char *rp_lv_name(const rp_lv *lv) { return lv->name; }

int rp_lv_state(rp_lv *lv, char **state, bool *active)
{
  int st = 0, reason = 0;
  if (virDomainGetState(lv->dom, &st, &reason, 0) < 0) {
    virErrorPtr e = virGetLastError();
    return rp_err_set(e && e->code == VIR_ERR_NO_DOMAIN ? RP_E_NOT_FOUND : RP_E_NOT_AVAILABLE, 0,
                      "libvirt: state of domain %s: %s", lv->name, lv_msg());
  }
  const char *s;
  switch (st) {
  case VIR_DOMAIN_RUNNING: s = "running"; break;
  case VIR_DOMAIN_BLOCKED: s = "blocked"; break;
  case VIR_DOMAIN_PAUSED: s = "paused"; break;
  case VIR_DOMAIN_SHUTDOWN: s = "shutdown"; break;
  case VIR_DOMAIN_SHUTOFF: s = "shut off"; break;
  case VIR_DOMAIN_CRASHED: s = "crashed"; break;
  case VIR_DOMAIN_PMSUSPENDED: s = "pmsuspended"; break;
  default: s = "no state"; break;
  }
  if (state)
    *state = rp_xstrdup(s);
  if (active)
    *active = virDomainIsActive(lv->dom) == 1;
  return 0;
}

static char *xattr(xmlNodePtr n, const char *name)
{
  xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
  char *r = v ? rp_xstrdup((const char *)v) : NULL;
  xmlFree(v);
  return r;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
  for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
      return c;
  return NULL;
}

void rp_lv_disks_free(rp_lv_disk *d, size_t n)
{
  for (size_t i = 0; d && i < n; i++) {
    free(d[i].target);
    free(d[i].device);
    free(d[i].type);
    free(d[i].driver);
    free(d[i].source);
    free(d[i].alias);
  }
  free(d);
}

int rp_lv_disks(rp_lv *lv, rp_lv_disk **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  char *xml = virDomainGetXMLDesc(lv->dom, 0);
  if (!xml) {
    virErrorPtr e = virGetLastError();
    return rp_err_set(e && e->code == VIR_ERR_NO_DOMAIN ? RP_E_NOT_FOUND : RP_E_NOT_AVAILABLE, 0,
                      "libvirt: XML of domain %s: %s", lv->name, lv_msg());
  }
  /* libvirt's own output: still no network access, no entities */
  xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
  free(xml);
  if (!doc)
    return rp_err_set(RP_E_FAILED, 0, "libvirt: domain %s: unreadable XML", lv->name);
  xmlNodePtr devs = child(xmlDocGetRootElement(doc), "devices");
  size_t cap = 0;
  for (xmlNodePtr c = devs ? devs->children : NULL; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "disk"))
      continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 8;
      *out = rp_xrealloc(*out, cap * sizeof **out);
    }
    rp_lv_disk *d = &(*out)[(*n)++];
    memset(d, 0, sizeof *d);
    d->type = xattr(c, "type");
    d->device = xattr(c, "device");
    xmlNodePtr t = child(c, "target"), dr = child(c, "driver"), s = child(c, "source"),
               b = child(c, "backingStore"), a = child(c, "alias");
    d->target = t ? xattr(t, "dev") : NULL;
    d->driver = dr ? xattr(dr, "type") : NULL;
    if (s) {
      d->source = xattr(s, "file");
      if (!d->source)
        d->source = xattr(s, "dev");
    }
    d->overlay = b && child(b, "source") != NULL;
    d->alias = a ? xattr(a, "name") : NULL;
    if (!d->target)
      d->target = rp_xasprintf("disk%zu", *n - 1);
    if (!d->device)
      d->device = rp_xstrdup("disk");
    if (!d->type)
      d->type = rp_xstrdup("file");
  }
  xmlFreeDoc(doc);
  return 0;
}

int rp_lv_list(const char *uri, char ***uuids, char ***names, size_t *n)
{
  virConnectPtr c;
  if (lv_connect(uri, &c) < 0)
    return -1;
  virDomainPtr *doms = NULL;
  int k = virConnectListAllDomains(c, &doms, 0);
  if (k < 0) {
    rp_err_set(RP_E_NOT_AVAILABLE, 0, "libvirt %s: list domains: %s",
               uri ? uri : RP_LIBVIRT_DEFAULT_URI, lv_msg());
    virConnectClose(c);
    return -1;
  }
  *uuids = rp_xcalloc((size_t)k + 1, sizeof(char *));
  *names = rp_xcalloc((size_t)k + 1, sizeof(char *));
  *n = 0;
  for (int i = 0; i < k; i++) {
    char u[VIR_UUID_STRING_BUFLEN];
    const char *nm = virDomainGetName(doms[i]);
    if (virDomainGetUUIDString(doms[i], u) == 0 && nm) {
      for (char *p = u; *p; p++)
        if (*p >= 'A' && *p <= 'F')
          *p = (char)(*p - 'A' + 'a');
      (*uuids)[*n] = rp_xstrdup(u);
      (*names)[*n] = rp_xstrdup(nm);
      (*n)++;
    }
    virDomainFree(doms[i]);
  }
  free(doms);
  virConnectClose(c);
  return 0;
}

/* libvirtd restarted since we connected: connect again before sending
 * (never resend a command that may have been delivered) */
static int lv_revive(rp_lv *lv)
{
  if (virConnectIsAlive(lv->conn) == 1)
    return 0;
  virConnectPtr c;
  if (lv_connect(lv->uri, &c) < 0)
    return -1;
  virDomainPtr d = virDomainLookupByUUIDString(c, lv->uuid);
  if (!d) {
    rp_err_set(RP_E_NOT_FOUND, 0, "libvirt %s has no domain %s any more (undefined?)", lv->uri,
               lv->name);
    virConnectClose(c);
    return -1;
  }
  virDomainFree(lv->dom);
  virConnectClose(lv->conn);
  lv->conn = c;
  lv->dom = d;
  rp_trace("libvirt connection to %s re-established", lv->uri);
  return 0;
}

int rp_lv_qmp(rp_lv *lv, const char *cmd, const int *fds, size_t n_fds, char **reply)
{
  if (lv_revive(lv) < 0)
    return -1;
  char *res = NULL;
  unsigned int nout = 0;
  int *outfds = NULL;
  int rc = virDomainQemuMonitorCommandWithFiles(lv->dom, cmd, (unsigned int)n_fds, (int *)fds,
                                                &nout, &outfds, &res, 0);
  for (unsigned int i = 0; i < nout; i++)
    close(outfds[i]);
  free(outfds);
  if (rc < 0) {
    virErrorPtr e = virGetLastError();
    rp_errcode code = RP_E_FAILED;
    if (e && (e->code == VIR_ERR_OPERATION_INVALID || e->code == VIR_ERR_NO_DOMAIN))
      code = RP_E_NOT_AVAILABLE; /* domain not running (any more) */
    else if (e && (e->code == VIR_ERR_SYSTEM_ERROR || e->code == VIR_ERR_RPC ||
                   e->code == VIR_ERR_NO_CONNECT))
      code = RP_E_NOT_AVAILABLE;
    return rp_err_set(code, 0, "libvirt monitor passthrough to %s: %s", lv->name, lv_msg());
  }
  *reply = res;
  return 0;
}

int rp_lv_busy(rp_lv *lv, char **what)
{
  *what = NULL;
  int type = 0, nparams = 0;
  virTypedParameterPtr params = NULL;
  if (virDomainGetJobStats(lv->dom, &type, &params, &nparams, 0) < 0)
    return 0; /* not running, or no job information: nothing holds it */
  if (type != VIR_DOMAIN_JOB_NONE) {
    int op = 0;
    virTypedParamsGetInt(params, nparams, VIR_DOMAIN_JOB_OPERATION, &op);
    *what = op == VIR_DOMAIN_JOB_OPERATION_BACKUP
                ? rp_xasprintf("a libvirt backup job (virsh backup-begin) is running on domain %s",
                               lv->name)
                : rp_xasprintf("a libvirt job (operation %d) is running on domain %s", op, lv->name);
  }
  virTypedParamsFree(params, nparams);
  return 0;
}

#else /* built without libvirt */

static int unsupported(void)
{
  return rp_err_set(RP_E_NOT_SUPPORTED, 0,
                    "this refpoint was built without libvirt support (install libvirt-dev and "
                    "rebuild)");
}
int rp_lv_open(const char *uri, const char *domain, rp_lv **out) { return unsupported(); }
void rp_lv_close(rp_lv *lv) {}
const char *rp_lv_uuid(const rp_lv *lv) { return ""; }
const char *rp_lv_name(const rp_lv *lv) { return ""; }
int rp_lv_domain_id(rp_lv *lv) { return -1; }
int rp_lv_state(rp_lv *lv, char **state, bool *active) { return unsupported(); }
int rp_lv_disks(rp_lv *lv, rp_lv_disk **out, size_t *n) { return unsupported(); }
void rp_lv_disks_free(rp_lv_disk *d, size_t n) {}
int rp_lv_list(const char *uri, char ***uuids, char ***names, size_t *n) { return unsupported(); }
int rp_lv_qmp(rp_lv *lv, const char *cmd, const int *fds, size_t n_fds, char **reply)
{
  return unsupported();
}
int rp_lv_busy(rp_lv *lv, char **what) { return unsupported(); }
#endif

const char *rp_lv_disk_uncovered(const rp_lv_disk *d)
{
  if (strcmp(d->device, "disk"))
    return !strcmp(d->device, "cdrom") ? "a CD-ROM" : "not a disk device";
  if (strcmp(d->type, "file"))
    return !strcmp(d->type, "network") ? "a network disk"
           : !strcmp(d->type, "block") ? "a block device (not supported yet)"
                                       : "not a file";
  if (!d->driver || strcmp(d->driver, "qcow2"))
    return d->driver && !strcmp(d->driver, "raw") ? "a raw disk (no change tracking without qcow2)"
                                                  : "not a qcow2 disk";
  if (!d->source)
    return "no source";
  return NULL;
}
