/* refpointd — the reference point service over CIM-XML (DMTF DSP0200) on
 * HTTP, so that WBEM clients such as wbemcli call it as they would call
 * Hyper-V's Msvm_VirtualSystemReferencePointService (docs/refpointd.md).
 *
 * Listeners: a unix socket (mode 0660, no password) and, when asked, HTTP on
 * loopback or HTTPS, both with Basic authentication. One thread per
 * connection (a slow client never blocks another), bounded bodies, a
 * timeout for slow clients. Operations: GetClass, Enumerate*, GetInstance,
 * Associators/References (+Names), ExecQuery (WQL), DeleteInstance (jobs),
 * and the five methods, each run as a job (jobs.c) recorded in the store.
 * Layering: HTTP and dispatch here; CIM text in src/cim; operations are
 * librefpoint's. */
#define _GNU_SOURCE 1
#include "refpoint.h"
#include "config.h"
#include "jobs.h"
#include "request.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define NS "root/virtualization/v2"
#define MAX_BODY (4u << 20)
#define SERVICE_NAME "refpoint"

static const char *state_dir;

/* ---- listeners and who may call ------------------------------------------ */

typedef struct listener {
  const char *spec;     /* as given */
  bool unix_socket;     /* access by file mode, principal from SO_PEERCRED */
  bool tls;
  struct MHD_Daemon *d;
} listener;

static enum { AUTH_NONE, AUTH_FILE, AUTH_PAM } auth_kind;
static const char *auth_arg; /* file path or PAM service */
static unsigned conn_timeout = 30;
/* --libvirt URI / "libvirt = URI": every domain of that connection is a
 * virtual system, registered at the first request that sees it */
static const char *libvirt_uri;
static const char *export_group; /* export-group: exports readable by it */

/* Registers the domains libvirt has now (new ones appear at the next
 * request); never fails a request: what cannot be registered is logged. */
static void libvirt_refresh(rp_ctx *ctx)
{
  if (!libvirt_uri)
    return;
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* one discovery at a time */
  static char *seen[64];
  static size_t nseen;
  rp_vs_info **l;
  size_t n, nsk;
  char **sk;
  pthread_mutex_lock(&mu);
  if (rp_vs_discover(ctx, libvirt_uri, &l, &n, &sk, &nsk) < 0) {
    fprintf(stderr, "refpointd: libvirt: %s\n", rp_last_error()->message);
    pthread_mutex_unlock(&mu);
    return;
  }
  for (size_t i = 0; i < n; i++)
    fprintf(stderr, "refpointd: libvirt domain %s registered as %s\n", l[i]->element_name, l[i]->name);
  /* (a domain without a coverable disk is tried again each time, logged once) */
  for (size_t k = 0; k < nsk; k++) {
    bool old = false;
    for (size_t j = 0; j < nseen && !old; j++)
      old = !strcmp(seen[j], sk[k]);
    if (old)
      continue;
    fprintf(stderr, "refpointd: libvirt: %s\n", sk[k]);
    if (nseen < 64)
      seen[nseen++] = strdup(sk[k]);
  }
  pthread_mutex_unlock(&mu);
  rp_vs_list_free(l, n);
  rp_strv_free(sk, nsk);
}

/* A libvirt VS whose domain was undefined is not served (its state stays
 * in the store: the domain may come back with the same UUID). */
static bool vs_hidden(const rp_vs_info *v)
{
  return v->libvirt_uri && v->runtime_state && !strncmp(v->runtime_state, "undefined", 9);
}

static int served_vs_list(rp_ctx *ctx, rp_vs_info ***out, size_t *n)
{
  if (rp_vs_list(ctx, out, n) < 0)
    return -1;
  size_t k = 0;
  for (size_t i = 0; i < *n; i++) {
    if (vs_hidden((*out)[i]))
      rp_vs_info_free((*out)[i]);
    else
      (*out)[k++] = (*out)[i];
  }
  *n = k;
  return 0;
}

/* "user:hash" lines, hash from crypt(3) (e.g. openssl passwd -6) */
static bool check_file(const char *user, const char *pass)
{
  FILE *f = fopen(auth_arg, "re");
  if (!f)
    return false;
  char line[1024];
  bool ok = false, found = false;
  while (!ok && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    char *colon = strchr(line, ':');
    if (!colon || line[0] == '#')
      continue;
    *colon = '\0';
    if (strcmp(line, user))
      continue;
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    /* crypt_rn, not crypt_r: sanitizers intercept crypt_r without finding libcrypt's */
    const char *h = crypt_rn(pass, colon + 1, &cd, (int)sizeof cd);
    ok = h && h[0] != '*' && strlen(h) == strlen(colon + 1) && !strcmp(h, colon + 1);
    found = true;
  }
  fclose(f);
  if (!found) {
    /* the same work for an unknown user: no user-name oracle by timing */
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    crypt_rn(pass, "$6$refpointdummy$", &cd, (int)sizeof cd);
  }
  return ok;
}

static int pam_conv_fn(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
  struct pam_response *r = calloc((size_t)n, sizeof *r);
  if (!r)
    return PAM_BUF_ERR;
  for (int i = 0; i < n; i++)
    if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
      r[i].resp = strdup((const char *)data);
  *resp = r;
  return PAM_SUCCESS;
}

static bool check_pam(const char *user, const char *pass)
{
  struct pam_conv conv = {pam_conv_fn, (void *)pass};
  pam_handle_t *h = NULL;
  if (pam_start(auth_arg ? auth_arg : "refpointd", user, &conv, &h) != PAM_SUCCESS)
    return false;
  int rc = pam_authenticate(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
  if (rc == PAM_SUCCESS)
    rc = pam_acct_mgmt(h, PAM_SILENT);
  pam_end(h, rc);
  return rc == PAM_SUCCESS;
}

/* Verified logins are remembered for 60 s, keyed by user and a seeded hash
 * of the password (never the password itself), so that a client's every
 * request does not pay for a SHA-512-crypt or PAM round. */
#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>
#define AUTH_CACHE 64
static struct {
  char user[128];
  XXH128_hash_t h;
  time_t until;
} auth_cache[AUTH_CACHE];
static pthread_mutex_t auth_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t auth_seed;

static XXH128_hash_t pw_hash(const char *user, const char *pass)
{
  XXH3_state_t *st = XXH3_createState();
  XXH3_128bits_reset_withSeed(st, auth_seed);
  XXH3_128bits_update(st, user, strlen(user) + 1);
  XXH3_128bits_update(st, pass, strlen(pass));
  /* the password file as it is now: any change to it (a password changed,
   * a user removed) makes every cached login of it stale at once */
  struct stat fs;
  if (auth_kind == AUTH_FILE && auth_arg && stat(auth_arg, &fs) == 0) {
    long long g[4] = {(long long)fs.st_ino, (long long)fs.st_size, (long long)fs.st_mtim.tv_sec,
                      (long long)fs.st_mtim.tv_nsec};
    XXH3_128bits_update(st, g, sizeof g);
  }
  XXH128_hash_t h = XXH3_128bits_digest(st);
  XXH3_freeState(st);
  return h;
}

static bool cached(const char *user, const char *pass)
{
  if (strlen(user) >= 128)
    return false;
  XXH128_hash_t h = pw_hash(user, pass);
  time_t now = time(NULL);
  bool hit = false;
  pthread_mutex_lock(&auth_lock);
  for (int i = 0; i < AUTH_CACHE && !hit; i++)
    hit = auth_cache[i].until > now && !strcmp(auth_cache[i].user, user) &&
          XXH128_isEqual(auth_cache[i].h, h);
  pthread_mutex_unlock(&auth_lock);
  return hit;
}

static void remember(const char *user, const char *pass)
{
  if (strlen(user) >= 128)
    return;
  XXH128_hash_t h = pw_hash(user, pass);
  time_t now = time(NULL);
  pthread_mutex_lock(&auth_lock);
  int slot = 0;
  for (int i = 0; i < AUTH_CACHE; i++)
    if (auth_cache[i].until < auth_cache[slot].until)
      slot = i;
  snprintf(auth_cache[slot].user, sizeof auth_cache[slot].user, "%s", user);
  auth_cache[slot].h = h;
  auth_cache[slot].until = now + 60;
  pthread_mutex_unlock(&auth_lock);
}

/* allow-group: who of the accounts PAM accepts may use the service. PAM
 * alone authenticates every account of the host (and of its directory
 * service); the default admits root only. */
static const char *allow_groups[16];
static int n_allow_groups;

static bool allowed_account(const char *user)
{
  struct passwd pw, *pr = NULL;
  char buf[8192];
  if (getpwnam_r(user, &pw, buf, sizeof buf, &pr) != 0 || !pr)
    return false;
  if (pw.pw_uid == 0)
    return true;
  gid_t groups[512];
  int ng = 512;
  if (getgrouplist(user, pw.pw_gid, groups, &ng) < 0)
    return false;
  for (int k = 0; k < n_allow_groups; k++) {
    struct group gr, *grp = NULL;
    char gb[8192];
    if (getgrnam_r(allow_groups[k], &gr, gb, sizeof gb, &grp) != 0 || !grp)
      continue;
    for (int i = 0; i < ng; i++)
      if (groups[i] == grp->gr_gid)
        return true;
  }
  return false;
}

/* A client-given name for the log: control characters escaped (no forged
 * log lines), bounded. Static buffer per thread. */
static const char *log_name(const char *s)
{
  static _Thread_local char out[200];
  size_t k = 0;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && k + 5 < sizeof out; p++) {
    if (*p < 0x20 || *p == 0x7f || *p == '\\')
      k += (size_t)snprintf(out + k, sizeof out - k, "\\x%02x", *p);
    else
      out[k++] = (char)*p;
  }
  out[k] = '\0';
  return out;
}

/* true when the caller may proceed; false when a 401 or 403 was queued */
static bool authorized(struct MHD_Connection *c, const listener *l, enum MHD_Result *ret)
{
  if (l->unix_socket) {
    /* the principal is the peer process's user, as the kernel tells it */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (ci && getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && getenv("REFPOINTD_LOG_PEERS"))
      fprintf(stderr, "refpointd: unix socket request from uid %u pid %d\n", (unsigned)cr.uid, (int)cr.pid);
    return true;
  }
  if (auth_kind == AUTH_NONE)
    return true;
  char *pass = NULL;
  char *user = MHD_basic_auth_get_username_password(c, &pass);
  bool ok = user && pass && *user && cached(user, pass);
  bool forbidden = false;
  if (!ok && user && pass && *user) {
    ok = auth_kind == AUTH_FILE ? check_file(user, pass) : check_pam(user, pass);
    if (ok && auth_kind == AUTH_PAM && !allowed_account(user)) {
      ok = false;
      forbidden = true;
    }
    if (ok)
      remember(user, pass);
  }
  if (forbidden) {
    fprintf(stderr, "refpointd: %s authenticated but is not allowed (root, or a member of an "
                    "allow-group)\n", log_name(user));
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    *ret = MHD_queue_response(c, 403, resp);
    MHD_destroy_response(resp);
  } else if (!ok) {
    fprintf(stderr, "refpointd: authentication failed%s%s\n", user ? " for " : "", user ? log_name(user) : "");
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    *ret = MHD_queue_basic_auth_fail_response(c, "refpointd", resp);
    MHD_destroy_response(resp);
  }
  if (pass)
    explicit_bzero(pass, strlen(pass));
  MHD_free(user);
  MHD_free(pass);
  return ok;
}
static char *export_roots[32];
static int n_export_roots;

/* ---- instances as property lists ---------------------------------------- */

typedef struct prop {
  const char *name, *type;
  bool key, array, ref;
  size_t n;
  char **v;
  char *refpath; /* ref: the target as "Class.K=\"v\",..." for key matching */
} prop;

typedef struct inst {
  const char *cls;
  size_t n;
  prop p[24];
} inst;

static void put(inst *in, const char *name, const char *type, bool key, const char *v)
{
  prop *p = &in->p[in->n++];
  *p = (prop){.name = name, .type = type, .key = key};
  if (v) {
    p->v = malloc(sizeof(char *));
    p->v[0] = strdup(v);
    p->n = 1;
  }
}

static void put_arr(inst *in, const char *name, const char *type, char **v, size_t n)
{
  prop *p = &in->p[in->n++];
  *p = (prop){.name = name, .type = type, .array = true, .n = n};
  p->v = calloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    p->v[i] = strdup(v[i]);
}

static void inst_clear(inst *in)
{
  for (size_t i = 0; i < in->n; i++) {
    free(in->p[i].refpath);
    for (size_t k = 0; k < in->p[i].n; k++)
      free(in->p[i].v[k]);
    free(in->p[i].v);
  }
  in->n = 0;
}

static void vs_inst(inst *in, const rp_vs_info *vs)
{
  *in = (inst){.cls = "Msvm_ComputerSystem"};
  put(in, "CreationClassName", "string", true, "Msvm_ComputerSystem");
  put(in, "Name", "string", true, vs->name);
  put(in, "ElementName", "string", false, vs->element_name);
  /* Msvm_ComputerSystem.EnabledState: 2 Enabled (running), 3 Disabled
   * (shut off), 32768 Paused, 0 Unknown */
  const char *st = vs->runtime_state ? vs->runtime_state : "";
  const char *es = !strcmp(st, "running")                                 ? "2"
                   : !strcmp(st, "paused")                                ? "32768"
                   : !strcmp(st, "shut off") || !strcmp(st, "QEMU not running") ? "3"
                                                                          : "0";
  put(in, "EnabledState", "uint16", false, es);
  put(in, "Caption", "string", false, "Virtual Machine");
}

static void rp_inst(inst *in, const rp_point_info *p)
{
  char t[16], c[16];
  snprintf(t, sizeof t, "%u", p->reference_point_type);
  snprintf(c, sizeof c, "%u", p->consistency_level);
  *in = (inst){.cls = "Msvm_VirtualSystemReferencePoint"};
  put(in, "InstanceID", "string", true, p->instance_id);
  put(in, "VirtualSystemIdentifier", "string", true, p->virtual_system_identifier);
  put(in, "ElementName", "string", false, p->element_name);
  put(in, "ReferencePointType", "uint16", false, t);
  put(in, "ConsistencyLevel", "uint16", false, c);
  put(in, "HasAssociatedData", "boolean", false, p->has_associated_data ? "TRUE" : "FALSE");
  put_arr(in, "VirtualDiskIdentifiers", "string", p->virtual_disk_identifiers, p->n_disks);
  put_arr(in, "ResilientChangeTrackingIdentifiers", "string", p->rct_identifiers, p->n_disks);
}

/* the disks: Msvm_StorageAllocationSettingData, whose InstanceIDs are what
 * VirtualDiskIdentifiers and DisksToExport hold */
static void disk_inst(inst *in, const rp_vs_info *vs, const rp_disk_info *d)
{
  char sz[32];
  snprintf(sz, sizeof sz, "%llu", (unsigned long long)d->virtual_size);
  *in = (inst){.cls = "Msvm_StorageAllocationSettingData"};
  put(in, "InstanceID", "string", true, d->instance_id);
  put(in, "ElementName", "string", false, "Hard Disk Image");
  put(in, "ResourceType", "uint16", false, "31");
  put(in, "ResourceSubType", "string", false, "Microsoft:Hyper-V:Virtual Hard Disk");
  char *hr[1] = {d->path};
  put_arr(in, "HostResource", "string", hr, 1);
  put(in, "VirtualQuantity", "uint64", false, sz);
  put(in, "Parent", "string", false, vs->name);
}

static void svc_inst(inst *in)
{
  *in = (inst){.cls = "Msvm_VirtualSystemReferencePointService"};
  put(in, "CreationClassName", "string", true, "Msvm_VirtualSystemReferencePointService");
  put(in, "Name", "string", true, SERVICE_NAME);
  put(in, "ElementName", "string", false, "refpoint reference point service");
}

static void job_inst(inst *in, const djob_view *j)
{
  char st[16], ty[16], pc[16], ec[16];
  snprintf(st, sizeof st, "%d", j->state);
  snprintf(ty, sizeof ty, "%d", j->type);
  snprintf(pc, sizeof pc, "%d", j->percent);
  snprintf(ec, sizeof ec, "%u", j->error_code);
  bool ex = j->type == DJ_EXPORT;
  *in = (inst){.cls = ex ? "Msvm_VirtualSystemReferencePointExportJob" : "Msvm_ConcreteJob"};
  put(in, "InstanceID", "string", true, j->id);
  put(in, "Name", "string", false,
      ex ? "Export reference point" : j->type == DJ_CREATE ? "Create reference point"
      : j->type == DJ_DESTROY ? "Destroy reference point" : j->type == DJ_REMOVE ? "Remove associated data"
                                                                               : "Import reference point metadata");
  put(in, "JobState", "uint16", false, st);
  put(in, "JobType", "uint16", false, ty);
  put(in, "PercentComplete", "uint16", false, pc);
  put(in, "ErrorCode", "uint16", false, ec);
  put(in, "ErrorDescription", "string", false, j->desc);
  put(in, "Cancellable", "boolean", false, ex ? "TRUE" : "FALSE");
  put(in, "TimeBeforeRemoval", "datetime", false, "00000000000500.000000:000");
  if (ex) {
    put(in, "ExportDirectory", "string", false, j->export_dir);
    put(in, "VirtualMachineId", "string", false, j->vs_id);
    put(in, "ReferencePointId", "string", false, j->rp_id);
    put(in, "BaseReferencePointId", "string", false, j->base_id);
    put_arr(in, "ExportedDisks", "string", j->disks, j->n);
    put_arr(in, "ExportedLogFilePaths", "string", j->files, j->n);
    put(in, "ExportedConfigFilePath", "string", false, j->config);
    put(in, "ExportedRuntimeFilePath", "string", false, j->runtime);
  }
}

static void w_ns(cim_buf *b)
{
  cim_buf_add(b, "<LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"virtualization\"/>"
                 "<NAMESPACE NAME=\"v2\"/></LOCALNAMESPACEPATH>");
}

static void w_instname(cim_buf *b, const inst *in)
{
  cim_buf_addf(b, "<INSTANCENAME CLASSNAME=\"%s\">", in->cls);
  for (size_t i = 0; i < in->n; i++)
    if (in->p[i].key) {
      if (in->p[i].ref) {
        cim_buf_addf(b, "<KEYBINDING NAME=\"%s\">%s</KEYBINDING>", in->p[i].name, in->p[i].v[0]);
        continue;
      }
      cim_buf_addf(b, "<KEYBINDING NAME=\"%s\"><KEYVALUE VALUETYPE=\"string\">", in->p[i].name);
      cim_buf_esc(b, in->p[i].n ? in->p[i].v[0] : "");
      cim_buf_add(b, "</KEYVALUE></KEYBINDING>");
    }
  cim_buf_add(b, "</INSTANCENAME>");
}

static void w_ref(cim_buf *b, const inst *in)
{
  cim_buf_add(b, "<VALUE.REFERENCE><INSTANCEPATH><NAMESPACEPATH><HOST>localhost</HOST>");
  w_ns(b);
  cim_buf_add(b, "</NAMESPACEPATH>");
  w_instname(b, in);
  cim_buf_add(b, "</INSTANCEPATH></VALUE.REFERENCE>");
}

static void w_inst(cim_buf *b, const inst *in)
{
  cim_buf_addf(b, "<INSTANCE CLASSNAME=\"%s\">", in->cls);
  for (size_t i = 0; i < in->n; i++) {
    const prop *p = &in->p[i];
    if (p->ref) {
      cim_buf_addf(b, "<PROPERTY.REFERENCE NAME=\"%s\" REFERENCECLASS=\"%s\">%s</PROPERTY.REFERENCE>",
                   p->name, p->type, p->v[0]);
      continue;
    }
    if (p->array) {
      cim_buf_addf(b, "<PROPERTY.ARRAY NAME=\"%s\" TYPE=\"%s\"><VALUE.ARRAY>", p->name, p->type);
      for (size_t k = 0; k < p->n; k++) {
        cim_buf_add(b, "<VALUE>");
        cim_buf_esc(b, p->v[k]);
        cim_buf_add(b, "</VALUE>");
      }
      cim_buf_add(b, "</VALUE.ARRAY></PROPERTY.ARRAY>");
    } else {
      cim_buf_addf(b, "<PROPERTY NAME=\"%s\" TYPE=\"%s\">", p->name, p->type);
      if (p->n) {
        cim_buf_add(b, "<VALUE>");
        cim_buf_esc(b, p->v[0]);
        cim_buf_add(b, "</VALUE>");
      }
      cim_buf_add(b, "</PROPERTY>");
    }
  }
  cim_buf_add(b, "</INSTANCE>");
}

/* a reference property: the VALUE.REFERENCE is rendered now (raw XML) */
static void put_ref(inst *in, const char *name, const char *refclass, bool key, const inst *target)
{
  cim_buf b = {0};
  cim_buf_add(&b, "");
  w_ref(&b, target);
  prop *p = &in->p[in->n++];
  *p = (prop){.name = name, .type = refclass, .key = key, .ref = true, .n = 1};
  p->v = malloc(sizeof(char *));
  p->v[0] = b.s;
  cim_buf t = {0};
  cim_buf_add(&t, target->cls);
  int k = 0;
  for (size_t i = 0; i < target->n; i++)
    if (target->p[i].key && target->p[i].n) {
      cim_buf_addf(&t, "%c%s=\"", k++ ? ',' : '.', target->p[i].name);
      for (const char *c = target->p[i].v[0]; *c; c++) {
        char one[3] = {*c == '"' || *c == '\\' ? '\\' : *c, *c == '"' || *c == '\\' ? *c : 0, 0};
        cim_buf_add(&t, one);
      }
      cim_buf_add(&t, "\"");
    }
  p->refpath = t.s;
}

static void rpvs_inst(inst *in, const inst *vm, const inst *rpi)
{
  *in = (inst){.cls = "Msvm_ReferencePointOfVirtualSystem"};
  put_ref(in, "Antecedent", "Msvm_ComputerSystem", true, vm);
  put_ref(in, "Dependent", "Msvm_VirtualSystemReferencePoint", true, rpi);
}

static void aje_inst(inst *in, const inst *rpi, const inst *job)
{
  *in = (inst){.cls = "Msvm_AffectedJobElement"};
  put_ref(in, "AffectedElement", "CIM_ManagedElement", true, rpi);
  put_ref(in, "AffectingElement", "CIM_Job", true, job);
  char *eff[1] = {"5"}; /* Create */
  put_arr(in, "ElementEffects", "uint16", eff, 1);
}

/* ---- class declarations (GetClass) --------------------------------------- */

typedef struct pdecl {
  const char *name, *type; /* type "ref:Class" for references */
  bool array, in, out;
} pdecl;

typedef struct mdecl {
  const char *name;
  pdecl p[8];
} mdecl;

typedef struct cdecl_ {
  const char *name, *super;
  pdecl props[20];
  const char *keys[3];
  mdecl methods[6];
} cdecl_;

static const cdecl_ classes[] = {
    {"Msvm_ComputerSystem", "CIM_ComputerSystem",
     {{"CreationClassName", "string"}, {"Name", "string"}, {"ElementName", "string"},
      {"EnabledState", "uint16"}, {"Caption", "string"}},
     {"CreationClassName", "Name"}, {{0}}},
    {"Msvm_VirtualSystemReferencePoint", "CIM_ManagedElement",
     {{"InstanceID", "string"}, {"VirtualSystemIdentifier", "string"}, {"ElementName", "string"},
      {"ReferencePointType", "uint16"}, {"ConsistencyLevel", "uint16"},
      {"HasAssociatedData", "boolean"}, {"VirtualDiskIdentifiers", "string", true},
      {"ResilientChangeTrackingIdentifiers", "string", true}},
     {"InstanceID", "VirtualSystemIdentifier"}, {{0}}},
    {"Msvm_VirtualSystemReferencePointService", "CIM_VirtualSystemSnapshotService",
     {{"CreationClassName", "string"}, {"Name", "string"}, {"ElementName", "string"}},
     {"CreationClassName", "Name"},
     {{"CreateReferencePoint",
       {{"AffectedSystem", "ref:Msvm_ComputerSystem", false, true},
        {"ReferencePointSettings", "string", false, true},
        {"ReferencePointType", "uint16", false, true},
        {"ResultingReferencePoint", "ref:Msvm_VirtualSystemReferencePoint", false, true, true},
        {"Job", "ref:CIM_ConcreteJob", false, false, true}}},
      {"DestroyReferencePoint",
       {{"AffectedReferencePoint", "ref:Msvm_VirtualSystemReferencePoint", false, true},
        {"Job", "ref:CIM_ConcreteJob", false, false, true}}},
      {"ExportReferencePoint",
       {{"ReferencePoint", "ref:Msvm_VirtualSystemReferencePoint", false, true},
        {"ExportDirectory", "string", false, true},
        {"ExportSettingData", "string", false, true},
        {"Job", "ref:CIM_ConcreteJob", false, false, true}}},
      {"ImportReferencePointMetadata",
       {{"AffectedSystem", "ref:Msvm_ComputerSystem", false, true},
        {"ConfigFilePath", "string", false, true},
        {"RuntimeStateFilePath", "string", false, true},
        {"Job", "ref:CIM_ConcreteJob", false, false, true}}},
      {"RemoveAssociatedData",
       {{"AffectedReferencePoint", "ref:Msvm_VirtualSystemReferencePoint", false, true},
        {"Job", "ref:CIM_ConcreteJob", false, false, true}}}}},
#define JOB_PROPS                                                                                  \
  {"InstanceID", "string"}, {"Name", "string"}, {"JobState", "uint16"}, {"JobType", "uint16"},       \
      {"PercentComplete", "uint16"}, {"ErrorCode", "uint16"}, {"ErrorDescription", "string"},      \
      {"Cancellable", "boolean"}, {"TimeBeforeRemoval", "datetime"}
#define JOB_METHODS                                                                                \
  {{"GetError", {{"Error", "string", false, false, true}}},                                        \
   {"GetErrorEx", {{"Errors", "string", true, false, true}}},                                      \
   {"RequestStateChange",                                                                          \
    {{"RequestedState", "uint16", false, true}, {"TimeoutPeriod", "datetime", false, true},        \
     {"Job", "ref:CIM_ConcreteJob", false, false, true}}}}
    {"Msvm_ConcreteJob", "CIM_ConcreteJob", {JOB_PROPS}, {"InstanceID"}, JOB_METHODS},
    {"Msvm_StorageAllocationSettingData", "CIM_StorageAllocationSettingData",
     {{"InstanceID", "string"}, {"ElementName", "string"}, {"ResourceType", "uint16"},
      {"ResourceSubType", "string"}, {"HostResource", "string", true},
      {"VirtualQuantity", "uint64"}, {"Parent", "string"}},
     {"InstanceID"}, {{0}}},
    {"Msvm_ReferencePointOfVirtualSystem", "CIM_Dependency",
     {{"Antecedent", "ref:Msvm_ComputerSystem"}, {"Dependent", "ref:Msvm_VirtualSystemReferencePoint"}},
     {"Antecedent", "Dependent"}, {{0}}},
    {"Msvm_AffectedJobElement", "CIM_AffectedJobElement",
     {{"AffectedElement", "ref:CIM_ManagedElement"}, {"AffectingElement", "ref:CIM_Job"},
      {"ElementEffects", "uint16", true}},
     {"AffectedElement", "AffectingElement"}, {{0}}},
    {"Msvm_VirtualSystemReferencePointSettingData", "CIM_SettingData",
     {{"InstanceID", "string"}, {"ElementName", "string"}, {"ConsistencyLevel", "uint8"}},
     {"InstanceID"}, {{0}}},
    {"Msvm_VirtualSystemReferencePointExportSettingData", "CIM_SettingData",
     {{"InstanceID", "string"}, {"ElementName", "string"}, {"BaseReferencePoint", "string"},
      {"DisksToExport", "string", true}},
     {"InstanceID"}, {{0}}},
    {"Msvm_Error", "CIM_Error",
     {{"ErrorType", "uint16"}, {"MessageID", "string"}, {"Message", "string"},
      {"PerceivedSeverity", "uint16"}, {"CIMStatusCode", "uint32"}},
     {NULL}, {{0}}},
    {"Msvm_VirtualSystemReferencePointExportJob", "Msvm_ConcreteJob",
     {JOB_PROPS, {"ExportDirectory", "string"}, {"VirtualMachineId", "string"},
      {"ReferencePointId", "string"}, {"BaseReferencePointId", "string"},
      {"ExportedDisks", "string", true}, {"ExportedLogFilePaths", "string", true},
      {"ExportedConfigFilePath", "string"}, {"ExportedRuntimeFilePath", "string"}},
     {"InstanceID"}, JOB_METHODS},
};

static const cdecl_ *find_class(const char *n)
{
  for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
    if (n && !strcasecmp(classes[i].name, n))
      return &classes[i];
  return NULL;
}

static void w_qual(cim_buf *b, const char *q)
{
  cim_buf_addf(b, "<QUALIFIER NAME=\"%s\" TYPE=\"boolean\"><VALUE>TRUE</VALUE></QUALIFIER>", q);
}

static void w_class(cim_buf *b, const cdecl_ *c)
{
  cim_buf_addf(b, "<CLASS NAME=\"%s\" SUPERCLASS=\"%s\">", c->name, c->super);
  for (size_t i = 0; i < 20 && c->props[i].name; i++) {
    const pdecl *p = &c->props[i];
    bool isref = !strncmp(p->type, "ref:", 4);
    if (isref)
      cim_buf_addf(b, "<PROPERTY.REFERENCE NAME=\"%s\" REFERENCECLASS=\"%s\">", p->name, p->type + 4);
    else
      cim_buf_addf(b, "<PROPERTY%s NAME=\"%s\" TYPE=\"%s\">", p->array ? ".ARRAY" : "", p->name, p->type);
    for (int k = 0; k < 3 && c->keys[k]; k++)
      if (!strcmp(c->keys[k], p->name))
        w_qual(b, "Key");
    cim_buf_add(b, isref ? "</PROPERTY.REFERENCE>" : p->array ? "</PROPERTY.ARRAY>" : "</PROPERTY>");
  }
  for (size_t m = 0; m < 6 && c->methods[m].name; m++) {
    cim_buf_addf(b, "<METHOD NAME=\"%s\" TYPE=\"uint32\">", c->methods[m].name);
    for (size_t k = 0; k < 8 && c->methods[m].p[k].name; k++) {
      const pdecl *p = &c->methods[m].p[k];
      if (!strncmp(p->type, "ref:", 4))
        cim_buf_addf(b, "<PARAMETER.REFERENCE NAME=\"%s\" REFERENCECLASS=\"%s\">", p->name, p->type + 4);
      else
        cim_buf_addf(b, "<PARAMETER%s NAME=\"%s\" TYPE=\"%s\">", p->array ? ".ARRAY" : "", p->name, p->type);
      if (p->in)
        w_qual(b, "In");
      if (p->out)
        w_qual(b, "Out");
      cim_buf_add(b, !strncmp(p->type, "ref:", 4) ? "</PARAMETER.REFERENCE>"
                     : p->array ? "</PARAMETER.ARRAY>" : "</PARAMETER>");
    }
    cim_buf_add(b, "</METHOD>");
  }
  cim_buf_add(b, "</CLASS>");
}

/* ---- operations ------------------------------------------------------------ */

typedef struct reply {
  cim_buf body;   /* what goes inside (I)METHODRESPONSE */
  int cim_error;  /* 0, or CIM_ERR_* */
  char desc[1200];
} reply;

static int cim_fail(reply *r, int code, const char *fmt, ...)
{
  static const char *names[] = {"", "CIM_ERR_FAILED", "CIM_ERR_ACCESS_DENIED",
                                "CIM_ERR_INVALID_NAMESPACE", "CIM_ERR_INVALID_PARAMETER",
                                "CIM_ERR_INVALID_CLASS", "CIM_ERR_NOT_FOUND",
                                "CIM_ERR_NOT_SUPPORTED"};
  static const char *more[] = {"CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED", "CIM_ERR_INVALID_QUERY"};
  char m[1000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  r->cim_error = code;
  snprintf(r->desc, sizeof r->desc, "%s: %s",
           code > 0 && code < 8 ? names[code] : (code == 14 || code == 15) ? more[code - 14] : "CIM_ERR", m);
  return -1;
}

static const char *class_param(const cim_request *q)
{
  const cim_param *p = cim_request_param(q, "ClassName");
  if (p && p->n_values)
    return p->values[0];
  p = cim_request_param(q, "InstanceName");
  return p && p->ref ? p->ref->classname : NULL;
}

static void add_inst(inst **out, size_t *n, size_t *cap, const inst *in)
{
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    *out = realloc(*out, *cap * sizeof **out);
  }
  (*out)[(*n)++] = *in;
}

/* Instances of the association classes; obj (or NULL) must be one end. */
static int assoc_instances(rp_ctx *ctx, const char *cls, const cim_objpath *obj, reply *r,
                           inst **out, size_t *n)
{
  size_t cap = 0;
  *out = NULL;
  *n = 0;
  const char *ocls = obj ? obj->classname : NULL;
  if (!strcasecmp(cls, "Msvm_ReferencePointOfVirtualSystem")) {
    rp_vs_info **vl;
    size_t nv;
    if (served_vs_list(ctx, &vl, &nv) < 0)
      return cim_fail(r, 1, "%s", rp_last_error()->message);
    for (size_t v = 0; v < nv; v++) {
      if (ocls && !strcasecmp(ocls, "Msvm_ComputerSystem") &&
          strcasecmp(cim_objpath_key(obj, "Name") ? cim_objpath_key(obj, "Name") : "", vl[v]->name))
        continue;
      rp_point_info **pl;
      size_t np;
      if (rp_point_list(ctx, vl[v]->name, &pl, &np) < 0)
        continue;
      inst vm;
      vs_inst(&vm, vl[v]);
      for (size_t k = 0; k < np; k++) {
        if (ocls && !strcasecmp(ocls, "Msvm_VirtualSystemReferencePoint") &&
            strcasecmp(cim_objpath_key(obj, "InstanceID") ? cim_objpath_key(obj, "InstanceID") : "",
                       pl[k]->instance_id))
          continue;
        inst rpi, a;
        rp_inst(&rpi, pl[k]);
        rpvs_inst(&a, &vm, &rpi);
        add_inst(out, n, &cap, &a);
        inst_clear(&rpi);
      }
      inst_clear(&vm);
      rp_point_list_free(pl, np);
    }
    rp_vs_list_free(vl, nv);
  } else if (!strcasecmp(cls, "Msvm_AffectedJobElement")) {
    djob_view *jl;
    size_t nj = djob_list(&jl);
    for (size_t k = 0; k < nj; k++) {
      if (jl[k].type != DJ_CREATE || !jl[k].rp_id)
        continue;
      if (ocls && strcasestr(ocls, "Job") &&
          strcasecmp(cim_objpath_key(obj, "InstanceID") ? cim_objpath_key(obj, "InstanceID") : "", jl[k].id))
        continue;
      if (ocls && !strcasecmp(ocls, "Msvm_VirtualSystemReferencePoint") &&
          strcasecmp(cim_objpath_key(obj, "InstanceID") ? cim_objpath_key(obj, "InstanceID") : "", jl[k].rp_id))
        continue;
      rp_point_info *p;
      if (rp_point_get(ctx, jl[k].rp_id, &p) < 0)
        continue;
      inst rpi, job, a;
      rp_inst(&rpi, p);
      job_inst(&job, &jl[k]);
      aje_inst(&a, &rpi, &job);
      add_inst(out, n, &cap, &a);
      inst_clear(&rpi);
      inst_clear(&job);
      rp_point_info_free(p);
    }
    djob_views_free(jl, nj);
  }
  return 0;
}

/* every instance of a class, as inst values; caller clears */
static int list(rp_ctx *ctx, const char *cls, reply *r, inst **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  if (!strcasecmp(cls, "Msvm_ComputerSystem")) {
    rp_vs_info **l;
    size_t k;
    if (served_vs_list(ctx, &l, &k) < 0)
      return cim_fail(r, 1, "%s", rp_last_error()->message);
    *out = calloc(k ? k : 1, sizeof **out);
    for (size_t i = 0; i < k; i++)
      vs_inst(&(*out)[i], l[i]);
    *n = k;
    rp_vs_list_free(l, k);
  } else if (!strcasecmp(cls, "Msvm_VirtualSystemReferencePoint")) {
    rp_point_info **l;
    size_t k;
    if (rp_point_list(ctx, NULL, &l, &k) < 0)
      return cim_fail(r, 1, "%s", rp_last_error()->message);
    *out = calloc(k ? k : 1, sizeof **out);
    for (size_t i = 0; i < k; i++)
      rp_inst(&(*out)[i], l[i]);
    *n = k;
    rp_point_list_free(l, k);
  } else if (!strcasecmp(cls, "Msvm_StorageAllocationSettingData")) {
    rp_vs_info **l;
    size_t k;
    if (served_vs_list(ctx, &l, &k) < 0)
      return cim_fail(r, 1, "%s", rp_last_error()->message);
    size_t total = 0;
    for (size_t i = 0; i < k; i++)
      total += l[i]->n_disks;
    *out = calloc(total ? total : 1, sizeof **out);
    for (size_t i = 0; i < k; i++)
      for (size_t d = 0; d < l[i]->n_disks; d++)
        disk_inst(&(*out)[(*n)++], l[i], &l[i]->disks[d]);
    rp_vs_list_free(l, k);
  } else if (!strcasecmp(cls, "Msvm_ReferencePointOfVirtualSystem") ||
             !strcasecmp(cls, "Msvm_AffectedJobElement")) {
    return assoc_instances(ctx, cls, NULL, r, out, n);
  } else if (!strcasecmp(cls, "Msvm_Error") || strcasestr(cls, "SettingData")) {
    /* no instances: errors travel embedded in GetError answers, setting
     * data embedded in method parameters */
  } else if (!strcasecmp(cls, "Msvm_ConcreteJob") ||
             !strcasecmp(cls, "Msvm_VirtualSystemReferencePointExportJob")) {
    bool only_export = strcasecmp(cls, "Msvm_ConcreteJob") != 0;
    djob_view *v;
    size_t k = djob_list(&v);
    *out = calloc(k ? k : 1, sizeof **out);
    for (size_t i = 0; i < k; i++)
      if (!only_export || v[i].type == DJ_EXPORT)
        job_inst(&(*out)[(*n)++], &v[i]);
    djob_views_free(v, k);
  } else if (!strcasecmp(cls, "Msvm_VirtualSystemReferencePointService")) {
    *out = calloc(1, sizeof **out);
    svc_inst(&(*out)[0]);
    *n = 1;
  } else if (!find_class(cls))
    return cim_fail(r, 5, "no class %s in " NS, cls);
  return 0;
}

static bool rp_is_guid(const char *s)
{
  if (strlen(s) != 36)
    return false;
  for (int i = 0; i < 36; i++)
    if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
      return false;
  return true;
}

static bool same_keys(const inst *in, const cim_objpath *p);

/* GetInstance by key, without listing the class */
static int get_one(rp_ctx *ctx, const char *cls, const cim_objpath *p, reply *r, inst *out)
{
  int found = 0;
  if (!strcasecmp(cls, "Msvm_ComputerSystem")) {
    const char *name = cim_objpath_key(p, "Name");
    rp_vs_info *vs;
    if (name && rp_is_guid(name) && rp_vs_get(ctx, name, &vs) == 0) {
      if (!vs_hidden(vs)) {
        vs_inst(out, vs);
        found = 1;
      }
      rp_vs_info_free(vs);
    }
  } else if (!strcasecmp(cls, "Msvm_VirtualSystemReferencePoint")) {
    const char *id = cim_objpath_key(p, "InstanceID");
    rp_point_info *pi;
    if (id && rp_point_get(ctx, id, &pi) == 0) {
      rp_inst(out, pi);
      rp_point_info_free(pi);
      found = 1;
    }
  } else if (!strcasecmp(cls, "Msvm_VirtualSystemReferencePointService")) {
    svc_inst(out);
    found = 1;
  } else if (!strcasecmp(cls, "Msvm_StorageAllocationSettingData") || !strcasecmp(cls, "Msvm_Error") ||
             strcasestr(cls, "ReferencePointSettingData") || strcasestr(cls, "ExportSettingData") ||
             !strcasecmp(cls, "Msvm_ReferencePointOfVirtualSystem") ||
             !strcasecmp(cls, "Msvm_AffectedJobElement")) {
    inst *l;
    size_t n;
    if (list(ctx, cls, r, &l, &n) < 0)
      return -1;
    for (size_t i = 0; i < n; i++) {
      if (!found && same_keys(&l[i], p)) {
        *out = l[i];
        found = 1;
      } else
        inst_clear(&l[i]);
    }
    free(l);
  } else {
    const char *id = cim_objpath_key(p, "InstanceID");
    djob_view v;
    if (id && djob_get(id, &v) == 0) {
      bool ex = v.type == DJ_EXPORT;
      if (ex || strcasecmp(cls, "Msvm_VirtualSystemReferencePointExportJob")) {
        job_inst(out, &v);
        found = 1;
      }
      djob_view_clear(&v);
    }
  }
  if (found && !same_keys(out, p)) {
    inst_clear(out);
    found = 0;
  }
  return found ? 0 : cim_fail(r, 6, "no such instance of %s", cls);
}

static bool same_keys(const inst *in, const cim_objpath *p)
{
  for (size_t i = 0; i < in->n; i++)
    if (in->p[i].key && in->p[i].ref) {
      /* a reference key: every key of our target must be in the given path */
      const char *v = cim_objpath_key(p, in->p[i].name);
      char err[CIM_ERRLEN];
      cim_objpath *want = v ? cim_objpath_parse(v, strlen(v), err) : NULL;
      cim_objpath *have = cim_objpath_parse(in->p[i].refpath, strlen(in->p[i].refpath), err);
      bool ok = want && have && !strcasecmp(want->classname, have->classname);
      for (size_t k = 0; ok && have && k < have->n_keys; k++) {
        const char *w = cim_objpath_key(want, have->keys[k].name);
        ok = w ? !strcasecmp(w, have->keys[k].value) : !strcmp(have->keys[k].name, "VirtualSystemIdentifier") ||
                                                          !strcmp(have->keys[k].name, "CreationClassName");
      }
      cim_objpath_free(want);
      cim_objpath_free(have);
      if (!ok)
        return false;
    } else if (in->p[i].key) {
      const char *v = cim_objpath_key(p, in->p[i].name);
      if (v && strcasecmp(v, in->p[i].v[0]))
        return false;
      if (!v && strcmp(in->p[i].name, "VirtualSystemIdentifier") &&
          strcmp(in->p[i].name, "CreationClassName"))
        return false; /* the RP's VirtualSystemIdentifier key may be left out */
    }
  return true;
}

/* The other ends of Msvm_ReferencePointOfVirtualSystem from obj: a VM's
 * reference points, or a reference point's VM. */
static int associated(rp_ctx *ctx, const cim_objpath *obj, const char *assoc, const char *result,
                      reply *r, inst **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  if (!strcasecmp(obj->classname, "Msvm_ConcreteJob") ||
      !strcasecmp(obj->classname, "Msvm_VirtualSystemReferencePointExportJob")) {
    /* Msvm_AffectedJobElement: the RP a job created (ElementEffects 5) or exported */
    if (assoc && *assoc && strcasecmp(assoc, "Msvm_AffectedJobElement") &&
        strcasecmp(assoc, "CIM_AffectedJobElement"))
      return 0;
    if (result && *result && strcasecmp(result, "Msvm_VirtualSystemReferencePoint") &&
        strcasecmp(result, "CIM_ManagedElement"))
      return 0;
    const char *id = cim_objpath_key(obj, "InstanceID");
    djob_view v;
    if (!id || djob_get(id, &v) < 0)
      return cim_fail(r, 6, "no such job");
    rp_point_info *p = NULL;
    if (v.rp_id && rp_point_get(ctx, v.rp_id, &p) == 0) {
      *out = calloc(1, sizeof **out);
      rp_inst(&(*out)[0], p);
      *n = 1;
      rp_point_info_free(p);
    }
    djob_view_clear(&v);
    return 0;
  }
  if (assoc && *assoc && strcasecmp(assoc, "Msvm_ReferencePointOfVirtualSystem") &&
      strcasecmp(assoc, "CIM_Dependency"))
    return 0;
  if (!strcasecmp(obj->classname, "Msvm_ComputerSystem")) {
    const char *vm = cim_objpath_key(obj, "Name");
    if (result && *result && strcasecmp(result, "Msvm_VirtualSystemReferencePoint") &&
        strcasecmp(result, "CIM_ManagedElement"))
      return 0;
    rp_point_info **l;
    size_t k;
    if (!vm || rp_point_list(ctx, vm, &l, &k) < 0)
      return cim_fail(r, 6, "no such Msvm_ComputerSystem");
    *out = calloc(k ? k : 1, sizeof **out);
    for (size_t i = 0; i < k; i++)
      rp_inst(&(*out)[i], l[i]);
    *n = k;
    rp_point_list_free(l, k);
  } else if (!strcasecmp(obj->classname, "Msvm_VirtualSystemReferencePoint")) {
    const char *id = cim_objpath_key(obj, "InstanceID");
    if (result && *result && strcasecmp(result, "Msvm_ComputerSystem") &&
        strcasecmp(result, "CIM_ComputerSystem"))
      return 0;
    rp_point_info *p;
    rp_vs_info *vs;
    if (!id || rp_point_get(ctx, id, &p) < 0)
      return cim_fail(r, 6, "no such Msvm_VirtualSystemReferencePoint");
    int rc = rp_vs_get(ctx, p->virtual_system_identifier, &vs);
    rp_point_info_free(p);
    if (rc < 0)
      return cim_fail(r, 1, "%s", rp_last_error()->message);
    *out = calloc(1, sizeof **out);
    vs_inst(&(*out)[0], vs);
    *n = 1;
    rp_vs_info_free(vs);
  } else if (!find_class(obj->classname))
    return cim_fail(r, 5, "no class %s in " NS, obj->classname);
  return 0;
}

static void w_objwithpath(cim_buf *b, const inst *in, bool names_only)
{
  if (!names_only)
    cim_buf_add(b, "<VALUE.OBJECTWITHPATH>");
  else
    cim_buf_add(b, "<OBJECTPATH>");
  cim_buf_add(b, "<INSTANCEPATH><NAMESPACEPATH><HOST>localhost</HOST>");
  w_ns(b);
  cim_buf_add(b, "</NAMESPACEPATH>");
  w_instname(b, in);
  cim_buf_add(b, "</INSTANCEPATH>");
  if (!names_only) {
    w_inst(b, in);
    cim_buf_add(b, "</VALUE.OBJECTWITHPATH>");
  } else
    cim_buf_add(b, "</OBJECTPATH>");
}

struct getctx {
  const inst *in;
};

static bool inst_get(void *user, const char *name, cim_value *out)
{
  const inst *in = ((struct getctx *)user)->in;
  for (size_t i = 0; i < in->n; i++)
    if (!strcasecmp(in->p[i].name, name)) {
      const prop *p = &in->p[i];
      if (p->array)
        return false; /* arrays are not comparable in this WQL subset */
      out->text = p->n ? p->v[0] : NULL;
      out->type = !strcmp(p->type, "boolean") ? CIM_V_BOOLEAN
                  : (!strncmp(p->type, "uint", 4) || !strncmp(p->type, "sint", 4)) ? CIM_V_NUMBER
                                                                                     : CIM_V_STRING;
      return true;
    }
  return false;
}

static int exec_query(rp_ctx *ctx, const cim_request *q, reply *r)
{
  const cim_param *lang = cim_request_param(q, "QueryLanguage");
  const cim_param *qp = cim_request_param(q, "Query");
  if (!lang || !lang->n_values || strcasecmp(lang->values[0], "WQL"))
    return cim_fail(r, 14, "QueryLanguage must be WQL");
  if (!qp || !qp->n_values)
    return cim_fail(r, 4, "ExecQuery needs a Query");
  char err[CIM_ERRLEN];
  cim_query *cq = cim_query_parse(qp->values[0], strlen(qp->values[0]), err);
  if (!cq)
    return cim_fail(r, 15, "%s", err);
  inst *l = NULL;
  size_t n = 0;
  int rc;
  if (cim_query_kind(cq) == CIM_Q_ASSOCIATORS)
    rc = associated(ctx, cim_query_object(cq), cim_query_assoc_opt(cq, "AssocClass"),
                    cim_query_assoc_opt(cq, "ResultClass"), r, &l, &n);
  else {
    const cdecl_ *c = find_class(cim_query_class(cq));
    rc = c ? list(ctx, c->name, r, &l, &n) : cim_fail(r, 5, "no class %s", cim_query_class(cq));
  }
  if (rc == 0) {
    cim_buf_add(&r->body, "<IRETURNVALUE>");
    for (size_t i = 0; i < n && rc == 0; i++) {
      struct getctx g = {&l[i]};
      int m = cim_query_match(cq, inst_get, &g, err);
      if (m < 0)
        rc = cim_fail(r, 15, "%s", err);
      else if (m)
        w_objwithpath(&r->body, &l[i], false);
    }
    cim_buf_add(&r->body, "</IRETURNVALUE>");
  }
  for (size_t i = 0; i < n; i++)
    inst_clear(&l[i]);
  free(l);
  cim_query_free(cq);
  return rc;
}

static int intrinsic(rp_ctx *ctx, const cim_request *q, reply *r)
{
  const char *m = q->method, *cls = class_param(q);
  if (!strcmp(m, "ExecQuery"))
    return exec_query(ctx, q, r);
  if (!strcmp(m, "References") || !strcmp(m, "ReferenceNames")) {
    const cim_param *on = cim_request_param(q, "ObjectName");
    if (!on || !on->ref)
      return cim_fail(r, 4, "%s needs an ObjectName instance path", m);
    const cim_param *rc_ = cim_request_param(q, "ResultClass");
    const char *want = rc_ && rc_->n_values ? rc_->values[0] : NULL;
    static const char *assocs[] = {"Msvm_ReferencePointOfVirtualSystem", "Msvm_AffectedJobElement"};
    cim_buf_add(&r->body, "<IRETURNVALUE>");
    for (int a = 0; a < 2; a++) {
      if (want && *want && strcasecmp(want, assocs[a]) &&
          strcasecmp(want, a ? "CIM_AffectedJobElement" : "CIM_Dependency"))
        continue;
      inst *l;
      size_t n;
      if (assoc_instances(ctx, assocs[a], on->ref, r, &l, &n) < 0)
        return -1;
      for (size_t i = 0; i < n; i++) {
        w_objwithpath(&r->body, &l[i], m[9] == 'N');
        inst_clear(&l[i]);
      }
      free(l);
    }
    cim_buf_add(&r->body, "</IRETURNVALUE>");
    return 0;
  }
  if (!strcmp(m, "Associators") || !strcmp(m, "AssociatorNames")) {
    const cim_param *on = cim_request_param(q, "ObjectName");
    if (!on || !on->ref)
      return cim_fail(r, 4, "%s needs an ObjectName instance path", m);
    const cim_param *ac = cim_request_param(q, "AssocClass"), *rc_ = cim_request_param(q, "ResultClass");
    inst *l;
    size_t n;
    if (associated(ctx, on->ref, ac && ac->n_values ? ac->values[0] : NULL,
                   rc_ && rc_->n_values ? rc_->values[0] : NULL, r, &l, &n) < 0)
      return -1;
    cim_buf_add(&r->body, "<IRETURNVALUE>");
    for (size_t i = 0; i < n; i++) {
      w_objwithpath(&r->body, &l[i], m[10] == 'N');
      inst_clear(&l[i]);
    }
    free(l);
    cim_buf_add(&r->body, "</IRETURNVALUE>");
    return 0;
  }
  if (!strcmp(m, "DeleteInstance")) {
    const cim_param *ip = cim_request_param(q, "InstanceName");
    if (!ip || !ip->ref)
      return cim_fail(r, 4, "DeleteInstance needs an InstanceName");
    if (strcasecmp(ip->ref->classname, "Msvm_ConcreteJob") &&
        strcasecmp(ip->ref->classname, "Msvm_VirtualSystemReferencePointExportJob"))
      return cim_fail(r, 7, "instances of %s cannot be deleted", ip->ref->classname);
    const char *id = cim_objpath_key(ip->ref, "InstanceID");
    int d = id ? djob_delete(id) : -1;
    if (d < 0)
      return cim_fail(r, 6, "no such job");
    if (d > 0)
      return cim_fail(r, 1, "the job is still running: cancel it with RequestStateChange first");
    return 0;
  }
  bool gc = !strcmp(m, "GetClass"), ei = !strcmp(m, "EnumerateInstances"),
       en = !strcmp(m, "EnumerateInstanceNames"), gi = !strcmp(m, "GetInstance");
  if (!gc && !ei && !en && !gi && strcmp(m, "EnumerateClassNames") && strcmp(m, "EnumerateClasses"))
    return cim_fail(r, 7, "%s is not supported yet", m);
  if (!strcmp(m, "EnumerateClassNames") || !strcmp(m, "EnumerateClasses")) {
    cim_buf_add(&r->body, "<IRETURNVALUE>");
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++) {
      if (m[9] == 'C' && m[14] == 'N') /* EnumerateClassNames */
        cim_buf_addf(&r->body, "<CLASSNAME NAME=\"%s\"/>", classes[i].name);
      else
        w_class(&r->body, &classes[i]);
    }
    cim_buf_add(&r->body, "</IRETURNVALUE>");
    return 0;
  }
  if (!cls)
    return cim_fail(r, 4, "%s needs a class name", m);
  const cdecl_ *c = find_class(cls);
  if (!c)
    return cim_fail(r, 5, "no class %s in " NS, cls);
  if (gc) {
    cim_buf_add(&r->body, "<IRETURNVALUE>");
    w_class(&r->body, c);
    cim_buf_add(&r->body, "</IRETURNVALUE>");
    return 0;
  }
  if (gi) {
    const cim_param *ip = cim_request_param(q, "InstanceName");
    if (!ip || !ip->ref)
      return cim_fail(r, 4, "GetInstance needs an InstanceName");
    inst one;
    if (get_one(ctx, c->name, ip->ref, r, &one) < 0)
      return -1;
    cim_buf_add(&r->body, "<IRETURNVALUE>");
    w_inst(&r->body, &one);
    cim_buf_add(&r->body, "</IRETURNVALUE>");
    inst_clear(&one);
    return 0;
  }
  inst *l;
  size_t n;
  if (list(ctx, c->name, r, &l, &n) < 0)
    return -1;
  cim_buf_add(&r->body, "<IRETURNVALUE>");
  int rc = 0;
  if (gi) {
    const cim_objpath *want = cim_request_param(q, "InstanceName")->ref;
    size_t hit = n;
    for (size_t i = 0; i < n && hit == n; i++)
      if (same_keys(&l[i], want))
        hit = i;
    if (hit == n)
      rc = cim_fail(r, 6, "no such instance of %s", c->name);
    else
      w_inst(&r->body, &l[hit]);
  } else
    for (size_t i = 0; i < n; i++) {
      if (en)
        w_instname(&r->body, &l[i]);
      else {
        cim_buf_add(&r->body, "<VALUE.NAMEDINSTANCE>");
        w_instname(&r->body, &l[i]);
        w_inst(&r->body, &l[i]);
        cim_buf_add(&r->body, "</VALUE.NAMEDINSTANCE>");
      }
    }
  cim_buf_add(&r->body, "</IRETURNVALUE>");
  for (size_t i = 0; i < n; i++)
    inst_clear(&l[i]);
  free(l);
  return rc;
}

static const char *str_param(const cim_request *q, const char *name)
{
  const cim_param *p = cim_request_param(q, name);
  return p && p->kind == CIM_P_VALUE && p->n_values ? p->values[0] : NULL;
}

static const cim_objpath *ref_param(const cim_request *q, const char *name)
{
  const cim_param *p = cim_request_param(q, name);
  return p ? p->ref : NULL;
}

/* An export directory must lie under a configured root (symlinks resolved
 * on the part that exists). */
/* A path from a client: absolute and without "." or ".." components. The
 * library makes paths absolute lexically while realpath() resolves ".."
 * after symlinks; with no ".." at all the two cannot disagree (M1). */
static bool plain_path(const char *p)
{
  if (!p || p[0] != '/')
    return false;
  for (const char *c = p; (c = strchr(c, '/')); c++) {
    const char *n = c + 1;
    if ((n[0] == '.' && (n[1] == '/' || n[1] == '\0')) ||
        (n[0] == '.' && n[1] == '.' && (n[2] == '/' || n[2] == '\0')))
      return false;
  }
  return true;
}

static bool under_roots(const char *dir)
{
  char probe[PATH_MAX], real[PATH_MAX];
  if (!plain_path(dir) || strlen(dir) >= sizeof probe)
    return false;
  snprintf(probe, sizeof probe, "%s", dir);
  /* climb to the longest existing prefix */
  while (!realpath(probe, real)) {
    char *s = strrchr(probe, '/');
    if (!s || s == probe)
      return false;
    *s = '\0';
    if (strstr(s + 1, "..")) /* a ".." in the part that does not exist */
      return false;
  }
  if (strstr(dir + strlen(probe), "/.."))
    return false;
  for (int i = 0; i < n_export_roots; i++) {
    size_t n = strlen(export_roots[i]);
    if (!strncmp(real, export_roots[i], n) && (real[n] == '\0' || real[n] == '/'))
      return true;
  }
  return false;
}

static void w_return(reply *r, uint32_t code)
{
  cim_buf_addf(&r->body, "<RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>%u</VALUE></RETURNVALUE>", code);
}

/* a method's return value, and the end of its handling */
static int answer(reply *r, uint32_t code)
{
  w_return(r, code);
  return 0;
}

static int job_started(reply *r, const char *id, const char *cls)
{
  inst j = {.cls = cls};
  put(&j, "InstanceID", "string", true, id);
  w_return(r, 4096);
  cim_buf_add(&r->body, "<PARAMVALUE NAME=\"Job\" PARAMTYPE=\"reference\">");
  w_ref(&r->body, &j);
  cim_buf_add(&r->body, "</PARAMVALUE>");
  inst_clear(&j);
  return 0;
}

/* GetError and RequestStateChange of a job */
static int job_method(const cim_request *q, reply *r)
{
  const char *id = cim_objpath_key(q->target, "InstanceID");
  djob_view v;
  if (!id || djob_get(id, &v) < 0)
    return cim_fail(r, 6, "no such job");
  int rc = 0;
  if (!strcmp(q->method, "GetError") || !strcmp(q->method, "GetErrorEx")) {
    bool ex = q->method[8] == 'E';
    w_return(r, 0);
    if (v.state == 10 || v.state == 8) {
      /* Error: an embedded Msvm_Error instance as CIM-XML text */
      cim_buf e = {0};
      char code[16];
      snprintf(code, sizeof code, "%u", v.error_code);
      cim_buf_add(&e, "<INSTANCE CLASSNAME=\"Msvm_Error\"><PROPERTY NAME=\"ErrorType\" TYPE=\"uint16\">"
                      "<VALUE>4</VALUE></PROPERTY><PROPERTY NAME=\"MessageID\" TYPE=\"string\"><VALUE>");
      cim_buf_add(&e, code);
      cim_buf_add(&e, "</VALUE></PROPERTY><PROPERTY NAME=\"Message\" TYPE=\"string\"><VALUE>");
      cim_buf_esc(&e, v.desc);
      cim_buf_add(&e, "</VALUE></PROPERTY><PROPERTY NAME=\"PerceivedSeverity\" TYPE=\"uint16\">"
                      "<VALUE>5</VALUE></PROPERTY><PROPERTY NAME=\"CIMStatusCode\" TYPE=\"uint32\">"
                      "<VALUE>1</VALUE></PROPERTY></INSTANCE>");
      cim_buf_add(&r->body, ex ? "<PARAMVALUE NAME=\"Errors\" PARAMTYPE=\"string\"><VALUE.ARRAY><VALUE>"
                               : "<PARAMVALUE NAME=\"Error\" PARAMTYPE=\"string\"><VALUE>");
      cim_buf_esc(&r->body, e.s);
      cim_buf_add(&r->body, ex ? "</VALUE></VALUE.ARRAY></PARAMVALUE>" : "</VALUE></PARAMVALUE>");
      cim_buf_free(&e);
    }
  } else if (!strcmp(q->method, "RequestStateChange")) {
    const cim_param *rs = cim_request_param(q, "RequestedState");
    int want = rs && rs->n_values ? atoi(rs->values[0]) : 0;
    if (want != 4 && want != 5)
      w_return(r, 5); /* only Terminate and Kill */
    else {
      int c = djob_cancel(id);
      w_return(r, c == 0 ? 0 : 4097); /* 4097: not running any more */
    }
  } else
    rc = cim_fail(r, 17, "no method %s on jobs", q->method);
  djob_view_clear(&v);
  return rc;
}

static int extrinsic(rp_ctx *ctx, const cim_request *q, reply *r)
{
  const char *m = q->method;
  if (!strcasecmp(q->target->classname, "Msvm_ConcreteJob") ||
      !strcasecmp(q->target->classname, "Msvm_VirtualSystemReferencePointExportJob"))
    return job_method(q, r);
  if (strcasecmp(q->target->classname, "Msvm_VirtualSystemReferencePointService"))
    return cim_fail(r, 7, "class %s has no method %s", q->target->classname, m);
  const char *rp_key = NULL;
  const cim_objpath *ref;
  if (!strcmp(m, "CreateReferencePoint")) {
    ref = ref_param(q, "AffectedSystem");
    const char *vs = ref ? cim_objpath_key(ref, "Name") : NULL;
    if (!vs)
      return cim_fail(r, 4, "AffectedSystem must reference an Msvm_ComputerSystem");
    const char *t = str_param(q, "ReferencePointType");
    uint16_t type = t ? (uint16_t)atoi(t) : 2, level = 2;
    const char *set = str_param(q, "ReferencePointSettings");
    if (set && *set) {
      char err[CIM_ERRLEN];
      cim_instance *in = cim_instance_parse(set, strlen(set), err);
      if (!in)
        return answer(r, 4);
      const cim_prop *cl = cim_instance_prop(in, "ConsistencyLevel");
      if (cl && cl->n_values)
        level = (uint16_t)atoi(cl->values[0]);
      cim_instance_free(in);
    }
    /* parameters are checked now; the work runs in a job */
    if (type != 1 && type != 2)
      return answer(r, 1);
    if (level != 1 && level != 2)
      return answer(r, 4);
    rp_vs_info *vsi;
    if (rp_vs_get(ctx, vs, &vsi) < 0)
      return answer(r, rp_err_cim_code(rp_last_error()->code));
    rp_vs_info_free(vsi);
    char id[37];
    if (djob_create(state_dir, vs, type, level, id) < 0)
      return answer(r, 2);
    return job_started(r, id, "Msvm_ConcreteJob");
  }
  if (!strcmp(m, "ExportReferencePoint")) {
    ref = ref_param(q, "ReferencePoint");
    rp_key = ref ? cim_objpath_key(ref, "InstanceID") : NULL;
    const char *dir = str_param(q, "ExportDirectory");
    const char *esd = str_param(q, "ExportSettingData");
    if (!rp_key || !dir)
      return answer(r, 32773);
    if (!under_roots(dir)) {
      w_return(r, 32769); /* access denied: outside the export roots */
      return 0;
    }
    rp_export_opts o = {0};
    cim_instance *in = NULL;
    char *base_id = NULL;
    if (esd && *esd) {
      char err[CIM_ERRLEN];
      in = cim_instance_parse(esd, strlen(esd), err);
      if (!in)
        return answer(r, 32773);
      const cim_prop *b = cim_instance_prop(in, "BaseReferencePoint");
      if (b && b->n_values && *b->values[0]) {
        cim_objpath *bp = cim_objpath_parse(b->values[0], strlen(b->values[0]), err);
        const char *k = bp ? cim_objpath_key(bp, "InstanceID") : NULL;
        base_id = k ? strdup(k) : NULL;
        cim_objpath_free(bp);
        if (!base_id) {
          cim_instance_free(in);
          return answer(r, 32773);
        }
      }
      const cim_prop *d = cim_instance_prop(in, "DisksToExport");
      if (d) {
        o.disks = (const char *const *)d->values;
        o.n_disks = d->n_values;
      }
    }
    o.base_rp = base_id;
    /* check what can be checked at once; the export runs in a job */
    rp_point_info *p;
    int rc = rp_point_get(ctx, rp_key, &p);
    if (rc == 0) {
      rp_point_info_free(p);
      if (base_id && (rc = rp_point_get(ctx, base_id, &p)) == 0)
        rp_point_info_free(p);
    }
    char id[37];
    if (rc < 0)
      w_return(r, rp_err_hyperv_code(rp_last_error()->code));
    else if (djob_export(state_dir, rp_key, dir, base_id, (char *const *)o.disks, o.n_disks, id) < 0)
      w_return(r, 32768);
    else
      job_started(r, id, "Msvm_VirtualSystemReferencePointExportJob");
    free(base_id);
    cim_instance_free(in);
    return 0;
  }
  if (!strcmp(m, "DestroyReferencePoint") || !strcmp(m, "RemoveAssociatedData")) {
    ref = ref_param(q, "AffectedReferencePoint");
    rp_key = ref ? cim_objpath_key(ref, "InstanceID") : NULL;
    if (!rp_key)
      return answer(r, 32773);
    rp_point_info *p;
    if (rp_point_get(ctx, rp_key, &p) < 0)
      return answer(r, rp_err_hyperv_code(rp_last_error()->code));
    rp_point_info_free(p);
    char id[37];
    if (djob_simple(state_dir, m[0] == 'D' ? DJ_DESTROY : DJ_REMOVE, rp_key, NULL, NULL, id) < 0)
      w_return(r, 32768);
    else
      job_started(r, id, "Msvm_ConcreteJob");
    return 0;
  }
  if (!strcmp(m, "ImportReferencePointMetadata")) {
    ref = ref_param(q, "AffectedSystem");
    const char *vs = ref ? cim_objpath_key(ref, "Name") : NULL;
    const char *cf = str_param(q, "ConfigFilePath"), *rf = str_param(q, "RuntimeStateFilePath");
    if (!vs || !cf || !rf)
      return answer(r, 32773);
    /* the daemon runs as root: it reads metadata only from under the export
     * roots, where exports are (M4) */
    if (!under_roots(cf) || !under_roots(rf))
      return answer(r, 32769);
    rp_vs_info *vsi;
    if (rp_vs_get(ctx, vs, &vsi) < 0)
      return answer(r, rp_err_hyperv_code(rp_last_error()->code));
    rp_vs_info_free(vsi);
    char id[37];
    if (djob_simple(state_dir, DJ_IMPORT, vs, cf, rf, id) < 0)
      w_return(r, 32768);
    else
      job_started(r, id, "Msvm_ConcreteJob");
    return 0;
  }
  return cim_fail(r, 17, "no method %s", m);
}

/* ---- HTTP --------------------------------------------------------------- */

typedef struct conn {
  char *body;
  size_t len;
  bool too_big;
} conn;

/* One rp_ctx per connection thread, kept for the thread's life (librefpoint
 * contexts are single-threaded; opening one per request cost a third of a
 * GetInstance). */
static pthread_key_t ctx_key;
static void ctx_free(void *p)
{
  rp_close(p);
}
static rp_ctx *thread_ctx(void)
{
  rp_ctx *c = pthread_getspecific(ctx_key);
  if (!c && (c = rp_open(state_dir))) {
    rp_set_export_group(c, export_group);
    pthread_setspecific(ctx_key, c);
  }
  return c;
}

static enum MHD_Result send_status(struct MHD_Connection *c, unsigned code, const char *cimerror)
{
  struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (cimerror)
    MHD_add_response_header(resp, "CIMError", cimerror);
  enum MHD_Result ret = MHD_queue_response(c, code, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* ---- deadlines that really close (slow-loris) ----------------------------
 * libmicrohttpd's timeout is one of inactivity: a client that sends a byte
 * now and then keeps its slot for ever. Every connection is watched from
 * accept: its request line and headers must be complete within
 * HEADER_DEADLINE s (from accept, or from the end of its previous request),
 * its body within BODY_DEADLINE s, else a watchdog shuts its socket down
 * (the connection thread then sees EOF and MHD frees the slot). Together
 * with a per-address connection limit on TCP listeners, one client cannot
 * hold the slots that others need. */
#define HEADER_DEADLINE 10.0
#define BODY_DEADLINE 60.0
#define PER_IP_LIMIT 16
enum { W_FREE, W_HEADERS, W_BODY, W_WORK, W_CLOSING };
typedef struct watch {
  int state, fd;
  double since;
} watch;
static watch watches[8 * 64];
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;

static double mono(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void watch_set(struct MHD_Connection *c, int state)
{
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  watch *w = ci ? ci->socket_context : NULL;
  if (!w)
    return;
  pthread_mutex_lock(&watch_lock);
  if (w->state != W_FREE && w->state != W_CLOSING) {
    w->state = state;
    w->since = mono();
  }
  pthread_mutex_unlock(&watch_lock);
}

static void notify_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
  (void)cls;
  pthread_mutex_lock(&watch_lock);
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    for (size_t i = 0; ci && i < sizeof watches / sizeof *watches; i++)
      if (watches[i].state == W_FREE) {
        watches[i] = (watch){.state = W_HEADERS, .fd = ci->connect_fd, .since = mono()};
        *socket_context = &watches[i];
        break;
      }
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
    ((watch *)*socket_context)->state = W_FREE; /* before MHD closes the descriptor */
    *socket_context = NULL;
  }
  pthread_mutex_unlock(&watch_lock);
}

static void *watchdog(void *arg)
{
  (void)arg;
  for (;;) {
    struct timespec ts = {0, 250 * 1000000L};
    nanosleep(&ts, NULL);
    double now = mono();
    pthread_mutex_lock(&watch_lock);
    for (size_t i = 0; i < sizeof watches / sizeof *watches; i++) {
      watch *w = &watches[i];
      double lim = w->state == W_HEADERS ? HEADER_DEADLINE : w->state == W_BODY ? BODY_DEADLINE : 0;
      if (lim > 0 && now - w->since > lim) {
        fprintf(stderr, "refpointd: dropped a client that did not send its request %s within %.0f s\n",
                w->state == W_HEADERS ? "headers" : "body", lim);
        shutdown(w->fd, SHUT_RDWR);
        w->state = W_CLOSING;
      }
    }
    pthread_mutex_unlock(&watch_lock);
  }
  return NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
  const listener *l = cls;
  (void)url;
  (void)version;
  conn *cn = *con_cls;
  if (!cn) {
    watch_set(c, W_BODY); /* the headers are in */
    enum MHD_Result aret = MHD_NO;
    if (!authorized(c, l, &aret))
      return aret;
    if (strcmp(method, "POST"))
      return send_status(c, 405, NULL);
    const char *op = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "CIMOperation");
    if (!op)
      return send_status(c, 400, NULL);
    if (strcasecmp(op, "MethodCall"))
      return send_status(c, 400, "unsupported-operation");
    cn = calloc(1, sizeof *cn);
    *con_cls = cn;
    return MHD_YES;
  }
  if (*upload_size) {
    if (cn->len + *upload_size > MAX_BODY)
      cn->too_big = true;
    else {
      cn->body = realloc(cn->body, cn->len + *upload_size + 1);
      memcpy(cn->body + cn->len, upload, *upload_size);
      cn->len += *upload_size;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  watch_set(c, W_WORK); /* the body is in: the work takes what it takes */
  if (cn->too_big)
    return send_status(c, 413, NULL);
  const char *herr;
  char err[CIM_ERRLEN];
  cim_request *q = cim_request_parse(cn->body, cn->len, &herr, err);
  if (!q) {
    fprintf(stderr, "refpointd: refused request: %s\n", err);
    return send_status(c, !strncmp(herr, "unsupported", 11) || !strncmp(herr, "multiple", 8) ? 501 : 400, herr);
  }
  reply r = {0};
  cim_buf_add(&r.body, "");
  if (strcasecmp(q->nspace, NS))
    cim_fail(&r, 3, "namespace %s is not served (use " NS ")", q->nspace);
  else {
    rp_ctx *ctx = thread_ctx();
    if (ctx)
      libvirt_refresh(ctx);
    if (!ctx)
      cim_fail(&r, 1, "%s", rp_last_error()->message);
    else if (q->intrinsic)
      intrinsic(ctx, q, &r);
    else
      extrinsic(ctx, q, &r);
  }
  cim_buf out = {0};
  cim_buf_add(&out, "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">"
                    "<MESSAGE ID=\"");
  cim_buf_esc(&out, q->msgid);
  cim_buf_addf(&out, "\" PROTOCOLVERSION=\"1.0\"><SIMPLERSP><%s NAME=\"", q->intrinsic ? "IMETHODRESPONSE" : "METHODRESPONSE");
  cim_buf_esc(&out, q->method);
  cim_buf_add(&out, "\">");
  if (r.cim_error) {
    cim_buf_addf(&out, "<ERROR CODE=\"%d\" DESCRIPTION=\"", r.cim_error);
    cim_buf_esc(&out, r.desc);
    cim_buf_add(&out, "\"/>");
  } else
    cim_buf_add(&out, r.body.s);
  cim_buf_addf(&out, "</%s></SIMPLERSP></MESSAGE></CIM>\n", q->intrinsic ? "IMETHODRESPONSE" : "METHODRESPONSE");
  cim_request_free(q);
  cim_buf_free(&r.body);
  struct MHD_Response *resp = MHD_create_response_from_buffer(out.len, out.s, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(resp, "Content-Type", "application/xml; charset=\"utf-8\"");
  MHD_add_response_header(resp, "CIMOperation", "MethodResponse");
  enum MHD_Result ret = MHD_queue_response(c, 200, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
  (void)cls;
  (void)c;
  (void)t;
  conn *cn = *con_cls;
  if (cn) {
    free(cn->body);
    free(cn);
  }
  *con_cls = NULL;
  watch_set(c, W_HEADERS); /* a kept-alive connection: the next request's deadline */
}

static int usage(void)
{
  fprintf(stderr,
          "usage: refpointd [--config FILE] [--state-dir DIR] [--listen ADDR]... [--auth pam[:SERVICE] | --auth file:PATH]\n"
          "                 [--cert FILE --key FILE] [--export-root DIR]... [--timeout SECONDS] [--libvirt [URI]]\n                 [--allow-group GROUP]... [--export-group GROUP] [--foreground]\n"
          "  ADDR: unix:PATH (default /run/refpoint/refpointd.sock) | http://HOST:PORT | https://HOST:PORT\n");
  return 2;
}

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "re");
  if (!f)
    return NULL;
  char *b = calloc(1, 1 << 20);
  size_t n = fread(b, 1, (1 << 20) - 1, f);
  fclose(f);
  b[n] = '\0';
  return b;
}

static bool is_loopback(const struct sockaddr_in *sa)
{
  return (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
}

static int start_listener(listener *l, const char *cert, const char *key)
{
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (!strncmp(l->spec, "unix:", 5)) {
    const char *path = l->spec + 5;
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof su.sun_path) {
      fprintf(stderr, "refpointd: socket path too long: %s\n", path);
      return -1;
    }
    strcpy(su.sun_path, path);
    struct stat pst;
    if (lstat(path, &pst) == 0 && !S_ISSOCK(pst.st_mode)) {
      fprintf(stderr, "refpointd: %s exists and is not a socket; not replacing it\n", path);
      return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(path);
    mode_t old = umask(0117); /* rw for owner and group only */
    int b = bind(fd, (struct sockaddr *)&su, sizeof su);
    umask(old);
    if (fd < 0 || b < 0 || listen(fd, 64) < 0) {
      fprintf(stderr, "refpointd: %s: %s\n", l->spec, strerror(errno));
      return -1;
    }
    l->unix_socket = true;
    l->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, l, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_TIMEOUT, conn_timeout, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)64, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                            MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
                            MHD_OPTION_NOTIFY_CONNECTION, notify_conn, NULL, MHD_OPTION_END);
    return l->d ? 0 : -1;
  }
  unsigned port;
  char host[64];
  bool tls = !strncmp(l->spec, "https://", 8);
  int used = 0;
  if (sscanf(l->spec + (tls ? 8 : 7), "%63[^:]:%u%n", host, &port, &used) != 2 || port > 65535 ||
      l->spec[(tls ? 8 : 7) + used] != '\0' ||
      (!tls && strncmp(l->spec, "http://", 7))) {
    fprintf(stderr, "refpointd: bad --listen %s\n", l->spec);
    return -1;
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "refpointd: %s: give an IPv4 address\n", l->spec);
    return -1;
  }
  if (auth_kind == AUTH_NONE) {
    fprintf(stderr, "refpointd: %s: TCP listeners need --auth (the unix socket needs none)\n", l->spec);
    return -1;
  }
  if (!tls && !is_loopback(&sa)) {
    fprintf(stderr, "refpointd: %s: passwords travel only over HTTPS, or plain HTTP on a loopback "
                    "address\n", l->spec);
    return -1;
  }
  l->tls = tls;
  if (tls) {
    char *c = cert ? slurp(cert) : NULL, *k = key ? slurp(key) : NULL;
    if (!c || !k) {
      fprintf(stderr, "refpointd: %s needs --cert FILE and --key FILE (readable PEM)\n", l->spec);
      free(c);
      free(k);
      return -1;
    }
    l->d = MHD_start_daemon(flags | MHD_USE_TLS, (uint16_t)port, NULL, NULL, handle, l,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_HTTPS_MEM_CERT, c,
                            MHD_OPTION_HTTPS_MEM_KEY, k, MHD_OPTION_CONNECTION_TIMEOUT, conn_timeout,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_LIMIT,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                            MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
                            MHD_OPTION_NOTIFY_CONNECTION, notify_conn, NULL, MHD_OPTION_END);
    return l->d ? 0 : -1; /* cert and key stay referenced by the daemon */
  }
  l->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, l, MHD_OPTION_SOCK_ADDR,
                          (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, conn_timeout,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                          MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_LIMIT,
                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                          MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
                          MHD_OPTION_NOTIFY_CONNECTION, notify_conn, NULL, MHD_OPTION_END);
  return l->d ? 0 : -1;
}

static listener ls[8];
static int nl;
static const char *cert, *key_file;

/* One setting, from the config file or the command line. 0, or 2 (usage). */
static int apply(const char *k, const char *v)
{
  if (!strcmp(k, "state-dir"))
    state_dir = v;
  else if (!strcmp(k, "listen")) {
    if (nl == 8) {
      fprintf(stderr, "refpointd: at most 8 listeners\n");
      return 2;
    }
    ls[nl++] = (listener){.spec = v};
  } else if (!strcmp(k, "cert"))
    cert = v;
  else if (!strcmp(k, "key"))
    key_file = v;
  else if (!strcmp(k, "timeout")) {
    char *end;
    long t = strtol(v, &end, 10);
    if (*end || t < 1 || t > 3600) {
      fprintf(stderr, "refpointd: timeout must be 1..3600 seconds\n");
      return 2;
    }
    conn_timeout = (unsigned)t;
  } else if (!strcmp(k, "auth")) {
    if (!strncmp(v, "file:", 5)) {
      auth_kind = AUTH_FILE;
      auth_arg = v + 5;
      if (access(auth_arg, R_OK) < 0) {
        fprintf(stderr, "refpointd: password file %s: %s\n", auth_arg, strerror(errno));
        return 1;
      }
    } else if (!strncmp(v, "pam", 3) && (v[3] == '\0' || v[3] == ':')) {
      auth_kind = AUTH_PAM;
      auth_arg = v[3] ? v + 4 : "refpointd";
    } else {
      fprintf(stderr, "refpointd: auth is pam[:SERVICE] or file:PATH\n");
      return 2;
    }
  } else if (!strcmp(k, "allow-group")) {
    if (n_allow_groups == 16 || !*v) {
      fprintf(stderr, "refpointd: allow-group: 1 to 16 groups\n");
      return 2;
    }
    if (!getgrnam(v))
      fprintf(stderr, "refpointd: warning: allow-group %s: no such group (yet)\n", v);
    allow_groups[n_allow_groups++] = v;
  } else if (!strcmp(k, "export-group")) {
    if (!*v || (!getgrnam(v) && strspn(v, "0123456789") != strlen(v))) {
      fprintf(stderr, "refpointd: export-group: no group '%s'\n", v);
      return 2;
    }
    export_group = v;
  } else if (!strcmp(k, "libvirt")) {
    if (!*v || strlen(v) > 1024) {
      fprintf(stderr, "refpointd: libvirt needs a connection URI (e.g. qemu:///system)\n");
      return 2;
    }
    libvirt_uri = v;
  } else if (!strcmp(k, "export-root")) {
    char real[PATH_MAX];
    if (n_export_roots == 32) {
      fprintf(stderr, "refpointd: at most 32 export roots\n");
      return 2;
    }
    if (!realpath(v, real)) {
      fprintf(stderr, "refpointd: export root %s: %s\n", v, strerror(errno));
      return 1;
    }
    export_roots[n_export_roots++] = strdup(real);
  } else {
    fprintf(stderr, "refpointd: unknown setting '%s'\n", k);
    return 2;
  }
  return 0;
}

static int conf_cb(void *user, const char *k, const char *v, int line)
{
  (void)user;
  int rc = apply(strdup(k), strdup(v)); /* kept for the daemon's life */
  if (rc)
    fprintf(stderr, "refpointd: %s line %d\n", (const char *)user ? (const char *)user : "config", line);
  return rc;
}

int main(int argc, char **argv)
{
  /* the config file first, so that the command line adds to or overrides it */
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--config")) {
      FILE *f = fopen(argv[i + 1], "re");
      if (!f) {
        fprintf(stderr, "refpointd: config %s: %s\n", argv[i + 1], strerror(errno));
        return 1;
      }
      char *buf = calloc(1, RPD_CONF_MAX + 2);
      size_t n = fread(buf, 1, RPD_CONF_MAX + 1, f);
      fclose(f);
      char err[256];
      int rc = rpd_config_parse(buf, n, conf_cb, argv[i + 1], err);
      free(buf);
      if (rc < 0) {
        fprintf(stderr, "refpointd: config %s: %s\n", argv[i + 1], err);
        return 2;
      }
      if (rc)
        return rc;
    }
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (!strcmp(o, "--foreground"))
      continue;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      usage();
      return 0;
    }
    if (!strcmp(o, "--libvirt") && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
      libvirt_uri = "qemu:///system"; /* --libvirt alone: the system connection */
      continue;
    }
    if (strncmp(o, "--", 2) || i + 1 >= argc)
      return usage();
    const char *v = argv[++i];
    if (!strcmp(o, "--config"))
      continue;
    int rc = apply(o + 2, v);
    if (rc)
      return rc == 2 ? usage() : rc;
  }
  if (nl == 0)
    ls[nl++] = (listener){.spec = "unix:/run/refpoint/refpointd.sock"};
  if (conn_timeout == 0 || conn_timeout > 3600)
    return usage();
  rp_ctx *probe = rp_open(state_dir);
  if (!probe) {
    fprintf(stderr, "refpointd: %s\n", rp_last_error()->message);
    return 1;
  }
  rp_close(probe);
  signal(SIGPIPE, SIG_IGN);
  if (getrandom(&auth_seed, sizeof auth_seed, 0) != (ssize_t)sizeof auth_seed)
    return 1;
  pthread_key_create(&ctx_key, ctx_free);
  djob_set_export_group(export_group);
  pthread_t wd;
  pthread_create(&wd, NULL, watchdog, NULL);
  pthread_detach(wd);
  if (djob_restore(state_dir) < 0)
    fprintf(stderr, "refpointd: jobs of the last run not restored: %s\n", rp_last_error()->message);
  for (int i = 0; i < nl; i++) {
    if (!strncmp(ls[i].spec, "unix:", 5)) {
      char dir[PATH_MAX];
      snprintf(dir, sizeof dir, "%s", ls[i].spec + 5);
      char *sl = strrchr(dir, '/');
      if (sl && sl != dir) {
        *sl = '\0';
        mkdir(dir, 0755);
      }
    }
    if (start_listener(&ls[i], cert, key_file) < 0) {
      fprintf(stderr, "refpointd: cannot listen on %s\n", ls[i].spec);
      return 1;
    }
    fprintf(stderr, "refpointd: serving " NS " on %s\n", ls[i].spec);
  }
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  sigprocmask(SIG_BLOCK, &s, NULL);
  int sig;
  sigwait(&s, &sig);
  for (int i = 0; i < nl; i++)
    MHD_stop_daemon(ls[i].d);
  for (int i = 0; i < nl; i++)
    if (ls[i].unix_socket)
      unlink(ls[i].spec + 5);
  return 0;
}
