/* live.c — running VMs over QMP, and the guest agent freeze guard.
 * See live.h for the model; DESIGN.md and docs/live.md for the choices. */
#include "live.h"
#include "lvirt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QMP_TIMEOUT_MS 60000 /* snapshot deletion of a big image can take a while */

static void sleep_ms(int ms)
{
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- a JSON-lines connection (QMP and the guest agent both speak it) ----- */

typedef struct jconn {
  int fd;
  char *buf;
  size_t len, cap;
  size_t max; /* longest line accepted: QEMU's answers can be long, the
               * guest agent's (written by the guest: untrusted) cannot */
} jconn;

static int unix_connect(const char *path, int *fd_out)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path)
    return rp_err_set(RP_E_INVALID_PARAMETER, 0, "socket path %s is too long", path);
  memcpy(a.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return rp_err_set(RP_E_FAILED, errno, "socket");
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = errno;
    close(fd);
    return rp_err_set(e == EACCES ? RP_E_ACCESS_DENIED : RP_E_NOT_AVAILABLE, e,
                      "nothing answers on %s", path);
  }
  *fd_out = fd;
  return 0;
}

/* Sends one message; fd >= 0 goes along as SCM_RIGHTS with its first
 * byte (how QMP's getfd / add-fd receive a descriptor). */
static int jc_send_fd(jconn *c, json_t *msg, int fd)
{
  char *txt = json_dumps(msg, JSON_COMPACT);
  json_decref(msg);
  size_t n = strlen(txt), off = 0;
  while (off < n) {
    ssize_t w;
    if (fd >= 0 && off == 0) {
      struct iovec iov = {.iov_base = txt, .iov_len = n};
      union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
      } u;
      memset(&u, 0, sizeof u);
      struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                          .msg_controllen = sizeof u.buf};
      struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &fd, sizeof(int));
      w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    } else {
      w = send(c->fd, txt + off, n - off, MSG_NOSIGNAL);
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      int e = errno;
      free(txt);
      return rp_err_set(RP_E_NOT_AVAILABLE, e, "send");
    }
    off += (size_t)w;
  }
  free(txt);
  return 0;
}

static int jc_send(jconn *c, json_t *msg) { return jc_send_fd(c, msg, -1); }

/* Next JSON object line, waiting until deadline (monotonic seconds). A
 * 0xFF byte (the guest agent's sync delimiter) resets the line. */
static int jc_recv(jconn *c, double deadline, json_t **out)
{
  for (;;) {
    char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
    if (nl) {
      size_t ll = (size_t)(nl - c->buf) + 1;
      char *start = c->buf;
      char *ff = memrchr(c->buf, 0xff, ll);
      if (ff)
        start = ff + 1;
      json_error_t je;
      json_t *j = json_loadb(start, (size_t)(nl - start), 0, &je);
      memmove(c->buf, c->buf + ll, c->len - ll);
      c->len -= ll;
      if (!j)
        continue; /* blank line or noise */
      *out = j;
      return 0;
    }
    double left = deadline - rp_monotonic();
    if (left <= 0)
      return rp_err_set(RP_E_TIMEOUT, 0, "no answer");
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&p, 1, (int)(left * 1000) + 1);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr == 0)
      continue;
    size_t max = c->max ? c->max : (64u << 20);
    if (c->len >= max)
      return rp_err_set(RP_E_FAILED, 0, "answer longer than %zu bytes", max);
    if (c->len + 4096 > c->cap) {
      c->cap = c->cap ? c->cap * 2 : 65536;
      c->buf = rp_xrealloc(c->buf, c->cap);
    }
    ssize_t r = read(c->fd, c->buf + c->len, (c->cap - c->len < max - c->len) ? c->cap - c->len : max - c->len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return rp_err_set(RP_E_NOT_AVAILABLE, r < 0 ? errno : 0, "connection closed");
    c->len += (size_t)r;
  }
}

static void jc_close(jconn *c)
{
  if (c->fd >= 0)
    close(c->fd);
  free(c->buf);
  c->fd = -1;
  c->buf = NULL;
}

/* ---- QMP ---------------------------------------------------------------- */

struct rp_qmp {
  jconn c;
  char *sock;  /* the unix socket, or "libvirt:<domain>" */
  rp_lv *lv;   /* the libvirt transport (monitor passthrough), or NULL */
  long id;
};

void rp_qmp_close(rp_qmp *q)
{
  if (!q)
    return;
  jc_close(&q->c);
  rp_lv_close(q->lv);
  free(q->sock);
  free(q);
}

int rp_qmp_connect(const char *sock, int timeout_ms, rp_qmp **out)
{
  rp_qmp *q = rp_xcalloc(1, sizeof *q);
  q->c.fd = -1;
  q->sock = rp_xstrdup(sock);
  if (unix_connect(sock, &q->c.fd) < 0) {
    rp_err_prefix("QMP");
    rp_qmp_close(q);
    return -1;
  }
  /* QEMU serves one QMP client at a time: a second one waits, greeting-less.
   * A proxy (virt-qemu-qmp-proxy) sends the events it queued before its
   * greeting: skip them. */
  double deadline = rp_monotonic() + timeout_ms / 1000.0;
  for (;;) {
    json_t *g = NULL;
    if (jc_recv(&q->c, deadline, &g) < 0) {
      rp_err_set(RP_E_TIMEOUT, 0,
                 "QMP %s: no greeting within %d ms (is another client connected to it?)", sock,
                 timeout_ms);
      rp_qmp_close(q);
      return -1;
    }
    bool greeting = json_object_get(g, "QMP") != NULL, event = json_object_get(g, "event") != NULL;
    json_decref(g);
    if (greeting)
      break;
    if (!event) {
      rp_err_set(RP_E_FAILED, 0, "QMP %s: the first message is neither a greeting nor an event",
                 sock);
      rp_qmp_close(q);
      return -1;
    }
  }
  if (rp_qmp_exec(q, "qmp_capabilities", NULL, NULL, timeout_ms) < 0) {
    rp_qmp_close(q);
    return -1;
  }
  *out = q;
  return 0;
}

/* Takes ownership of lv. */
static rp_qmp *qmp_over_libvirt(rp_lv *lv)
{
  rp_qmp *q = rp_xcalloc(1, sizeof *q);
  q->c.fd = -1;
  q->lv = lv;
  q->sock = rp_xasprintf("libvirt:%s", rp_lv_name(lv));
  return q;
}

/* The answer r to command cmd: its "return", or the QMP error. */
static int qmp_answer(json_t *r, const char *cmd, json_t **ret)
{
  json_t *err = json_object_get(r, "error");
  if (err) {
    const char *d = json_string_value(json_object_get(err, "desc"));
    return rp_err_set(RP_E_FAILED, 0, "QMP %s: %s", cmd, d ? d : "error");
  }
  if (ret)
    *ret = json_incref(json_object_get(r, "return"));
  return 0;
}

static int qmp_exec_fd(rp_qmp *q, const char *cmd, json_t *args, int fd, json_t **ret,
                       int timeout_ms)
{
  long id = ++q->id;
  json_t *m = json_pack("{s:s,s:I}", "execute", cmd, "id", (json_int_t)id);
  if (args)
    json_object_set_new(m, "arguments", args);
  double t0 = rp_monotonic();
  if (q->lv) {
    /* libvirt numbers the commands itself */
    json_object_del(m, "id");
    char *txt = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    char *reply = NULL;
    int rc = rp_lv_qmp(q->lv, txt, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0, &reply);
    free(txt);
    if (rc < 0)
      return rp_err_prefix("QMP %s %s", q->sock, cmd);
    json_error_t je;
    json_t *r = json_loads(reply, 0, &je);
    free(reply);
    if (!r)
      return rp_err_set(RP_E_FAILED, 0, "QMP %s %s: unreadable answer from libvirt", q->sock, cmd);
    rc = qmp_answer(r, cmd, ret);
    json_decref(r);
    if (rc == 0)
      rp_trace("QMP %s (libvirt): %.2f ms", cmd, (rp_monotonic() - t0) * 1000);
    return rc;
  }
  if (jc_send_fd(&q->c, m, fd) < 0)
    return rp_err_prefix("QMP %s %s", q->sock, cmd);
  for (;;) {
    json_t *r;
    if (jc_recv(&q->c, t0 + timeout_ms / 1000.0, &r) < 0)
      return rp_err_prefix("QMP %s %s", q->sock, cmd);
    json_t *rid = json_object_get(r, "id");
    if (json_object_get(r, "event") || (rid && json_integer_value(rid) != id)) {
      json_decref(r);
      continue;
    }
    int rc = qmp_answer(r, cmd, ret);
    json_decref(r);
    if (rc == 0)
      rp_trace("QMP %s: %.2f ms", cmd, (rp_monotonic() - t0) * 1000);
    return rc;
  }
}

int rp_qmp_exec(rp_qmp *q, const char *cmd, json_t *args, json_t **ret, int timeout_ms)
{
  return qmp_exec_fd(q, cmd, args, -1, ret, timeout_ms);
}

/* ---- attach ------------------------------------------------------------- */

void rp_vm_detach(rp_vm *vm)
{
  if (!vm)
    return;
  rp_qmp_close(vm->q);
  if (vm->lock_fd >= 0)
    close(vm->lock_fd);
  for (size_t i = 0; i < vm->n; i++) {
    free(vm->paths[i]);
    free(vm->nodes[i]);
  }
  free(vm->paths);
  free(vm->nodes);
  free(vm->state);
  free(vm->qemu_id);
  free(vm->busy);
  free(vm->nbd_sock);
  free(vm);
}

const char *rp_vm_node(const rp_vm *vm, const char *path)
{
  for (size_t i = 0; vm && i < vm->n; i++)
    if (!strcmp(vm->paths[i], path))
      return vm->nodes[i];
  return NULL;
}

static int same_file(const char *a, const char *b)
{
  if (!a || !b)
    return 0;
  if (!strcmp(a, b))
    return 1;
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int named_nodes(rp_qmp *q, json_t **out)
{
  return rp_qmp_exec(q, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), out,
                     QMP_TIMEOUT_MS);
}

/* The format node of a file: a writable qcow2 node; a read-only one means
 * something (an overlay) sits above the disk in that QEMU. */
static json_t *find_node(json_t *nodes, const char *path, bool *ro)
{
  json_t *found = NULL;
  for (size_t i = 0; i < json_array_size(nodes); i++) {
    json_t *n = json_array_get(nodes, i);
    const char *drv = json_string_value(json_object_get(n, "drv"));
    const char *file = json_string_value(json_object_get(n, "file"));
    if (!drv || strcmp(drv, "qcow2") || !same_file(file, path))
      continue;
    bool r = json_is_true(json_object_get(n, "ro"));
    if (!found || (*ro && !r)) {
      found = n;
      *ro = r;
    }
  }
  return found;
}

/* Whether another process holds QEMU's image locks on path: QEMU takes
 * open-file-description locks on bytes 100.. (permissions) and 200..
 * (what it does not share) of every image it opens. */
static bool image_locked(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 200};
  bool locked = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  close(fd);
  return locked;
}

/* A block job nobody of ours started (libvirt's backup, blockcopy,
 * blockcommit, another tool's): a capture or export beside it would get
 * QEMU's raw "Need a root block node" or race it. */
static int foreign_jobs(rp_vm *vm, const char *vs_name)
{
  json_t *jobs = NULL;
  if (vm->busy)
    return 0; /* libvirt said so already */
  if (rp_qmp_exec(vm->q, "query-block-jobs", NULL, &jobs, 5000) < 0)
    return -1;
  for (size_t i = 0; i < json_array_size(jobs) && !vm->busy; i++) {
    json_t *j = json_array_get(jobs, i);
    const char *dev = json_string_value(json_object_get(j, "device"));
    const char *type = json_string_value(json_object_get(j, "type"));
    if (dev && !strncmp(dev, "rpf-", 4))
      continue; /* our fleecing views */
    vm->busy = rp_xasprintf("a %s block job '%s' that refpoint did not start runs on the VM %s (a "
                            "libvirt backup, blockcopy or blockcommit?)",
                            type ? type : "", dev ? dev : "?", vs_name);
  }
  json_decref(jobs);
  return 0;
}

static int qmp_lock(rp_vm *vm, const char *state_dir, const rp_vs_info *vs, int lock_wait_ms)
{
  CLEANUP_FREE char *lp = rp_xasprintf("%s/locks/%s.qmp", state_dir, vs->name);
  vm->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (vm->lock_fd < 0)
    return rp_err_set(rp_err_from_errno(errno), errno, "lock %s", lp);
  double until = rp_monotonic() + lock_wait_ms / 1000.0;
  while (flock(vm->lock_fd, LOCK_EX | LOCK_NB) < 0) {
    if (rp_monotonic() > until)
      return rp_err_set(RP_E_IN_USE, 0,
                        "the QMP socket of %s is in use by another refpoint operation",
                        vs->element_name);
    sleep_ms(2);
  }
  return 0;
}

static int match_nodes(rp_vm *vm, const rp_vs_info *vs);

/* A libvirt domain: its state from libvirt; QMP through libvirt's monitor
 * passthrough while it runs. */
static int attach_libvirt(const char *state_dir, const rp_vs_info *vs, int lock_wait_ms,
                          rp_vm **out, char **state)
{
  rp_lv *lv = NULL;
  char *st = NULL;
  bool active = false;
  if (rp_lv_open(vs->libvirt_uri, vs->name, &lv) < 0 || rp_lv_state(lv, &st, &active) < 0) {
    rp_lv_close(lv);
    return rp_err_prefix("virtual system %s", vs->element_name);
  }
  if (!active) {
    rp_lv_close(lv);
    if (state)
      *state = st;
    else
      free(st);
    return 0;
  }
  rp_vm *vm = rp_xcalloc(1, sizeof *vm);
  vm->lock_fd = -1;
  if (rp_lv_busy(lv, &vm->busy) < 0)
    goto fail;
  if (qmp_lock(vm, state_dir, vs, lock_wait_ms) < 0)
    goto fail;
  vm->qemu_id = rp_xasprintf("libvirt:%d", rp_lv_domain_id(lv));
  vm->q = qmp_over_libvirt(lv);
  lv = NULL;
  vm->state = st;
  st = NULL;
  if (!strcmp(vm->state, "blocked"))
    strcpy(vm->state, "running"); /* (libvirt: running, waiting for a resource) */
  if (match_nodes(vm, vs) < 0)
    goto fail;
  rp_trace("attached to libvirt domain %s: %s", vs->element_name, vm->state);
  if (state)
    *state = rp_xstrdup(vm->state);
  *out = vm;
  return 0;
fail:
  free(st);
  rp_lv_close(lv);
  rp_err_prefix("virtual system %s", vs->element_name);
  rp_vm_detach(vm);
  return -1;
}

int rp_vm_attach(const char *state_dir, const rp_vs_info *vs, int lock_wait_ms, rp_vm **out,
                 char **state)
{
  *out = NULL;
  if (state)
    *state = NULL;
  if (vs->libvirt_uri)
    return attach_libvirt(state_dir, vs, lock_wait_ms, out, state);
  if (!vs->qmp_socket || !*vs->qmp_socket) {
    if (state)
      *state = rp_xstrdup("shut off");
    return 0;
  }
  rp_vm *vm = rp_xcalloc(1, sizeof *vm);
  vm->lock_fd = -1;
  if (qmp_lock(vm, state_dir, vs, lock_wait_ms) < 0)
    goto fail;
  if (rp_qmp_connect(vs->qmp_socket, 5000, &vm->q) < 0) {
    const rp_error *e = rp_last_error();
    if (e->code == RP_E_NOT_AVAILABLE &&
        (e->sys_errno == ENOENT || e->sys_errno == ECONNREFUSED)) {
      /* nothing answers: QEMU is gone, unless a process still holds a
       * disk the way QEMU does (its image locks): then say so rather than
       * take the VM for shut off */
      for (size_t i = 0; i < vs->n_disks; i++)
        if (image_locked(vs->disks[i].path)) {
          rp_err_set(RP_E_IN_USE, 0,
                     "nothing answers on the QMP socket %s, but disk %s is held by a running "
                     "process (is that the VM's QMP socket?)",
                     vs->qmp_socket, vs->disks[i].path);
          goto fail;
        }
      /* QEMU is gone: the files are handled offline */
      rp_vm_detach(vm);
      rp_err_clear();
      if (state)
        *state = rp_xstrdup("QEMU not running");
      return 0;
    }
    goto fail;
  }
  {
    /* which QEMU process this is: the peer of the QMP socket, and when it started */
    struct ucred cr;
    socklen_t cl = sizeof cr;
    unsigned long long start = 0;
    if (getsockopt(vm->q->c.fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) {
      char sp[64];
      snprintf(sp, sizeof sp, "/proc/%d/stat", (int)cr.pid);
      CLEANUP_FREE char *stat = rp_read_file(sp, 1 << 16, NULL);
      const char *rp = stat ? strrchr(stat, ')') : NULL;
      for (int f = 2; rp && f < 22; f++) /* field 22: starttime */
        rp = strchr(rp + 1, ' ');
      if (rp)
        start = strtoull(rp + 1, NULL, 10);
      vm->qemu_id = rp_xasprintf("pid:%d:%llu", (int)cr.pid, start);
    }
  }
  json_t *st = NULL;
  if (rp_qmp_exec(vm->q, "query-status", NULL, &st, 5000) < 0)
    goto fail;
  const char *s = json_string_value(json_object_get(st, "status"));
  if (!s)
    s = "unknown";
  if (!strcmp(s, "prelaunch") || !strcmp(s, "suspended") || !strcmp(s, "debug"))
    s = "paused";
  vm->state = rp_xstrdup(s);
  json_decref(st);
  if (match_nodes(vm, vs) < 0)
    goto fail;
  rp_trace("attached to %s: %s", vs->qmp_socket, vm->state);
  if (state)
    *state = rp_xstrdup(vm->state);
  *out = vm;
  return 0;
fail:
  rp_err_prefix("virtual system %s", vs->element_name);
  rp_vm_detach(vm);
  return -1;
}

/* Every disk of vs to the writable qcow2 node QEMU has open on its file;
 * then no foreign block job may run. */
static int match_nodes(rp_vm *vm, const rp_vs_info *vs)
{
  json_t *nodes = NULL;
  if (named_nodes(vm->q, &nodes) < 0)
    return -1;
  vm->n = vs->n_disks;
  vm->paths = rp_xcalloc(vm->n, sizeof(char *));
  vm->nodes = rp_xcalloc(vm->n, sizeof(char *));
  for (size_t i = 0; i < vs->n_disks; i++) {
    bool ro = false;
    json_t *n = find_node(nodes, vs->disks[i].path, &ro);
    vm->paths[i] = rp_xstrdup(vs->disks[i].path);
    if (!n || ro) {
      rp_err_set(RP_E_DISK_CHANGED, 0,
                 n ? "disk %s (%s) is not the active layer in the running VM %s (an overlay or "
                     "a job sits on it)"
                   : "disk %s (%s) is not open in the running VM %s (query-named-block-nodes "
                     "has no qcow2 node on that file)",
                 vs->disks[i].instance_id, vs->disks[i].path, vs->element_name);
      json_decref(nodes);
      return -1;
    }
    vm->nodes[i] = rp_xstrdup(json_string_value(json_object_get(n, "node-name")));
  }
  json_decref(nodes);
  return foreign_jobs(vm, vs->element_name);
}

/* ---- image state and changes -------------------------------------------- */

int rp_vm_inspect(rp_vm *vm, const char *node, rp_image_state **out)
{
  json_t *nodes;
  if (named_nodes(vm->q, &nodes) < 0)
    return -1;
  json_t *n = NULL;
  for (size_t i = 0; i < json_array_size(nodes) && !n; i++) {
    const char *nn = json_string_value(json_object_get(json_array_get(nodes, i), "node-name"));
    if (nn && !strcmp(nn, node))
      n = json_array_get(nodes, i);
  }
  if (!n) {
    json_decref(nodes);
    return rp_err_set(RP_E_DISK_CHANGED, 0, "block node %s is gone from the running VM", node);
  }
  rp_image_state *s = rp_image_state_parse(json_object_get(n, "image"),
                                           json_object_get(n, "dirty-bitmaps"));
  json_decref(nodes);
  *out = s;
  return 0;
}

int rp_vm_snapshot_delete(rp_vm *vm, const char *node, const char *name)
{
  double t0 = rp_monotonic();
  int rc = rp_qmp_exec(vm->q, "blockdev-snapshot-delete-internal-sync",
                       json_pack("{s:s,s:s}", "device", node, "name", name), NULL, QMP_TIMEOUT_MS);
  rp_trace("live snapshot delete %s: %.1f ms", name, (rp_monotonic() - t0) * 1000);
  return rc;
}

static json_t *bm_add_args(const char *node, const char *name, bool enabled, bool persistent)
{
  return json_pack("{s:s,s:s,s:i,s:b,s:b}", "node", node, "name", name, "granularity",
                   (int)RP_GRANULARITY, "persistent", persistent, "disabled", !enabled);
}

int rp_vm_bitmap_add(rp_vm *vm, const char *node, const char *name, bool enabled)
{
  return rp_qmp_exec(vm->q, "block-dirty-bitmap-add", bm_add_args(node, name, enabled, true),
                     NULL, QMP_TIMEOUT_MS);
}

int rp_vm_bitmap_remove(rp_vm *vm, const char *node, const char *name)
{
  return rp_qmp_exec(vm->q, "block-dirty-bitmap-remove",
                     json_pack("{s:s,s:s}", "node", node, "name", name), NULL, QMP_TIMEOUT_MS);
}

int rp_vm_bitmap_enable(rp_vm *vm, const char *node, const char *name, bool enable)
{
  return rp_qmp_exec(vm->q, enable ? "block-dirty-bitmap-enable" : "block-dirty-bitmap-disable",
                     json_pack("{s:s,s:s}", "node", node, "name", name), NULL, QMP_TIMEOUT_MS);
}

static json_t *action(const char *type, json_t *data)
{
  return json_pack("{s:s,s:o}", "type", type, "data", data);
}

static int transaction(rp_vm *vm, json_t *actions, double *ms)
{
  double t0 = rp_monotonic();
  int rc = rp_qmp_exec(vm->q, "transaction", json_pack("{s:o}", "actions", actions), NULL,
                       QMP_TIMEOUT_MS);
  if (ms)
    *ms = (rp_monotonic() - t0) * 1000;
  return rc;
}

int rp_vm_bitmap_merge(rp_vm *vm, const char *node, const char *src, const char *dst,
                       bool enable_dst)
{
  json_t *a = json_array();
  /* enabling first inside the transaction: no write falls between the
   * merge and the start of recording */
  if (enable_dst)
    json_array_append_new(a, action("block-dirty-bitmap-enable",
                                    json_pack("{s:s,s:s}", "node", node, "name", dst)));
  json_array_append_new(a, action("block-dirty-bitmap-merge",
                                  json_pack("{s:s,s:s,s:[s]}", "node", node, "target", dst,
                                            "bitmaps", src)));
  return transaction(vm, a, NULL);
}

/* Writes the file's dirty page cache back, so that the snapshot's flush
 * (during which guest I/O is drained) has little left to do. */
static void preflush(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  for (int k = 0; k < 3; k++) {
    double t0 = rp_monotonic();
    fdatasync(fd);
    double ms = (rp_monotonic() - t0) * 1000;
    rp_trace("pre-flush %s: %.1f ms", path, ms);
    if (ms < 5)
      break;
  }
  close(fd);
}

/* The epoch switch of a capture, on one disk: the ending epoch's bitmap
 * (if any) stops, the new one starts (persistent). */
static void epoch_actions(json_t *a, const char *node, const char *prev, const char *newbm)
{
  if (prev)
    json_array_append_new(a, action("block-dirty-bitmap-disable",
                                    json_pack("{s:s,s:s}", "node", node, "name", prev)));
  json_array_append_new(a, action("block-dirty-bitmap-add", bm_add_args(node, newbm, true, true)));
}

int rp_vm_capture(rp_vm *vm, size_t n, const char *const *nodes, const char *const *paths,
                  const char *snap, const char *const *prev, const char *const *newbm,
                  double *pause_ms)
{
  for (size_t i = 0; i < n; i++)
    preflush(paths[i]);
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) {
    epoch_actions(a, nodes[i], prev[i], newbm[i]);
    json_array_append_new(a, action("blockdev-snapshot-internal-sync",
                                    json_pack("{s:s,s:s}", "device", nodes[i], "name", snap)));
  }
  double ms = 0;
  int rc = transaction(vm, a, &ms);
  rp_trace("live capture transaction (%zu disk(s)): %.2f ms", n, ms);
  if (pause_ms)
    *pause_ms = ms;
  return rc;
}

struct rp_vm_nbd {
  char *id;      /* export id and name */
  char *tmpbm;   /* temporary union bitmap, or NULL */
  char *bm_node; /* where it lives */
  bool exp;
  rp_vm *vm;
};

/* One NBD server per QEMU: started with the first export of this
 * attachment, stopped with its last. */
/* QEMU's NBD server is running: when every export on it is one of ours
 * whose process is gone (a refpoint killed during an export, or cut off
 * from libvirtd), remove them and stop the server; true when it did. A
 * server with any other export is someone else's and left alone. */
static bool stale_nbd_server(rp_vm *vm)
{
  rp_error saved = *rp_last_error();
  json_t *ex = NULL;
  bool stale = rp_qmp_exec(vm->q, "query-block-exports", NULL, &ex, QMP_TIMEOUT_MS) == 0;
  for (size_t i = 0; stale && i < json_array_size(ex); i++) {
    const char *id = json_string_value(json_object_get(json_array_get(ex, i), "id"));
    long pid = 0;
    stale = id && sscanf(id, RP_PREFIX "x-%ld-", &pid) == 1 && pid > 0 &&
            kill((pid_t)pid, 0) < 0 && errno == ESRCH;
  }
  for (size_t i = 0; stale && i < json_array_size(ex); i++) {
    json_t *e = json_array_get(ex, i);
    const char *id = json_string_value(json_object_get(e, "id"));
    const char *node = json_string_value(json_object_get(e, "node-name"));
    rp_qmp_exec(vm->q, "block-export-del", json_pack("{s:s,s:s}", "id", id, "mode", "hard"), NULL,
                QMP_TIMEOUT_MS);
    /* its temporary union bitmap has the export's name (on the disk's node;
     * for a fleecing view it sits on the view's backing and stays until
     * QEMU exits: disabled, not persistent, harmless) */
    for (int k = 0; node && k < 50; k++) {
      if (rp_qmp_exec(vm->q, "block-dirty-bitmap-remove", json_pack("{s:s,s:s}", "node", node,
                      "name", id), NULL, QMP_TIMEOUT_MS) == 0 ||
          !strstr(rp_last_error()->message, "busy"))
        break;
      sleep_ms(2);
    }
  }
  json_decref(ex);
  if (stale)
    stale = rp_qmp_exec(vm->q, "nbd-server-stop", NULL, NULL, QMP_TIMEOUT_MS) == 0;
  if (stale)
    rp_trace("stopped an NBD server left by a refpoint process that is gone");
  *(rp_error *)rp_last_error() = saved;
  return stale;
}

static int nbd_server_get(rp_vm *vm)
{
  if (vm->nbd_users++ > 0)
    return 0;
  snprintf(vm->nbd_dir, sizeof vm->nbd_dir, "/tmp/refpoint-qnbd-XXXXXX");
  if (!mkdtemp(vm->nbd_dir)) {
    vm->nbd_dir[0] = 0;
    vm->nbd_users--;
    return rp_err_set(RP_E_FAILED, errno, "mkdtemp");
  }
  free(vm->nbd_sock);
  vm->nbd_sock = rp_xasprintf("%s/s", vm->nbd_dir);
  /* QEMU gets the listening socket as a descriptor, never the path: an
   * unprivileged QEMU (libvirt's libvirt-qemu user) cannot create files in
   * our 0700 directory, and needs no label for a passed descriptor */
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", vm->nbd_sock);
  char fdname[48];
  snprintf(fdname, sizeof fdname, "rpnbd-%ld", (long)getpid());
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool passed = false;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 16) < 0) {
    rp_err_set(RP_E_FAILED, errno, "NBD socket %s", vm->nbd_sock);
    goto fail;
  }
  if (qmp_exec_fd(vm->q, "getfd", json_pack("{s:s}", "fdname", fdname), lfd, NULL,
                  QMP_TIMEOUT_MS) < 0) {
    if (!vm->q->lv && strstr(rp_last_error()->message, "connection closed"))
      rp_err_prefix("the QMP socket closed when it was handed a descriptor (a QMP proxy that "
                    "cannot pass sockets? virt-qemu-qmp-proxy cannot: register a libvirt "
                    "domain with vm add --libvirt instead)");
    goto fail;
  }
  passed = true;
  int src = rp_qmp_exec(vm->q, "nbd-server-start",
                        json_pack("{s:{s:s,s:{s:s}}}", "addr", "type", "fd", "data", "str", fdname),
                        NULL, QMP_TIMEOUT_MS);
  if (src < 0 && strstr(rp_last_error()->message, "already") && stale_nbd_server(vm)) {
    /* a server a killed refpoint left behind: stopped, start ours */
    src = rp_qmp_exec(vm->q, "nbd-server-start",
                      json_pack("{s:{s:s,s:{s:s}}}", "addr", "type", "fd", "data", "str", fdname),
                      NULL, QMP_TIMEOUT_MS);
  }
  if (src < 0) {
    if (strstr(rp_last_error()->message, "already"))
      rp_err_set(RP_E_IN_USE, 0,
                 "the VM's NBD server is already running (started by someone else: a libvirt "
                 "pull backup?); refpoint needs it to read from a running VM; try again when it "
                 "has stopped");
    goto fail;
  }
  close(lfd);
  return 0;
fail:
  if (passed) {
    rp_error saved = *rp_last_error();
    rp_qmp_exec(vm->q, "closefd", json_pack("{s:s}", "fdname", fdname), NULL, QMP_TIMEOUT_MS);
    *(rp_error *)rp_last_error() = saved;
  }
  if (lfd >= 0)
    close(lfd);
  rp_rm_rf(vm->nbd_dir);
  vm->nbd_dir[0] = 0;
  vm->nbd_users--;
  return -1;
}

static void nbd_server_put(rp_vm *vm)
{
  if (vm->nbd_users == 0 || --vm->nbd_users > 0)
    return;
  rp_qmp_exec(vm->q, "nbd-server-stop", NULL, NULL, QMP_TIMEOUT_MS);
  rp_rm_rf(vm->nbd_dir);
  vm->nbd_dir[0] = 0;
}

void rp_vm_nbd_close(rp_vm *vm, rp_vm_nbd *e)
{
  if (!e)
    return;
  rp_error saved = *rp_last_error();
  if (e->exp) {
    rp_qmp_exec(vm->q, "block-export-del", json_pack("{s:s,s:s}", "id", e->id, "mode", "hard"),
                NULL, QMP_TIMEOUT_MS);
    nbd_server_put(vm);
  }
  /* the export lets go of the bitmap asynchronously */
  for (int k = 0; e->tmpbm && k < 500; k++) {
    if (rp_vm_bitmap_remove(vm, e->bm_node, e->tmpbm) == 0)
      break;
    sleep_ms(2);
  }
  free(e->id);
  free(e->tmpbm);
  free(e->bm_node);
  free(e);
  *(rp_error *)rp_last_error() = saved;
}

int rp_vm_nbd_open(rp_vm *vm, const char *export_node, const char *bm_node,
                   const char *const *bitmaps, size_t n_bitmaps, rp_vm_nbd **out)
{
  rp_vm_nbd *e = rp_xcalloc(1, sizeof *e);
  char u[37];
  rp_uuid(u);
  e->id = rp_xasprintf(RP_PREFIX "x-%ld-%.8s", (long)getpid(), u);
  if (n_bitmaps) {
    e->bm_node = rp_xstrdup(bm_node);
    if (rp_qmp_exec(vm->q, "block-dirty-bitmap-add", bm_add_args(bm_node, e->id, false, false),
                    NULL, QMP_TIMEOUT_MS) < 0)
      goto fail;
    e->tmpbm = rp_xstrdup(e->id);
    json_t *list = json_array();
    for (size_t i = 0; i < n_bitmaps; i++)
      json_array_append_new(list, json_string(bitmaps[i]));
    if (rp_qmp_exec(vm->q, "block-dirty-bitmap-merge",
                    json_pack("{s:s,s:s,s:o}", "node", bm_node, "target", e->tmpbm, "bitmaps", list),
                    NULL, QMP_TIMEOUT_MS) < 0)
      goto fail;
  }
  if (nbd_server_get(vm) < 0)
    goto fail;
  json_t *args = json_pack("{s:s,s:s,s:s,s:s,s:b}", "type", "nbd", "id", e->id, "node-name",
                           export_node, "name", e->id, "writable", 0);
  if (e->tmpbm)
    json_object_set_new(args, "bitmaps", json_pack("[s]", e->tmpbm));
  if (rp_qmp_exec(vm->q, "block-export-add", args, NULL, QMP_TIMEOUT_MS) < 0) {
    nbd_server_put(vm);
    goto fail;
  }
  e->exp = true;
  *out = e;
  return 0;
fail:
  rp_vm_nbd_close(vm, e);
  return -1;
}

const char *rp_vm_nbd_name(const rp_vm_nbd *e) { return e->id; }
const char *rp_vm_nbd_sock(const rp_vm *vm) { return vm->nbd_sock; }
const char *rp_vm_nbd_bitmap(const rp_vm_nbd *e) { return e->tmpbm; }

int rp_vm_dirty_ranges(rp_vm *vm, const char *node, const char *const *bitmaps, size_t n_bitmaps,
                       rp_range **out, size_t *n_out)
{
  rp_vm_nbd *e;
  if (rp_vm_nbd_open(vm, node, node, bitmaps, n_bitmaps, &e) < 0)
    return -1;
  rp_src *src = NULL;
  const char *ctxs[] = {e->tmpbm};
  int rc = rp_src_open_export(vm->nbd_sock, e->id, ctxs, 1, &src) < 0 ||
                   rp_src_ranges(src, ctxs, 1, out, n_out) < 0
               ? -1
               : 0;
  rp_src_close(src);
  rp_vm_nbd_close(vm, e);
  return rc;
}

/* ---- fleecing ------------------------------------------------------------- */

char *rp_fleece_name(const char *rp_guid, size_t i)
{
  return rp_xasprintf("rpf-%.8s-%zu", rp_guid, i);
}

char *rp_fleece_file(const char *state_dir, const char *rp_guid, size_t i)
{
  return rp_xasprintf("%s/fleece/%s-%zu.qcow2", state_dir, rp_guid, i);
}

int rp_vm_has_node(rp_vm *vm, const char *node)
{
  json_t *nodes;
  if (!vm)
    return 0;
  if (named_nodes(vm->q, &nodes) < 0)
    return -1;
  int found = 0;
  for (size_t i = 0; i < json_array_size(nodes) && !found; i++) {
    const char *nn = json_string_value(json_object_get(json_array_get(nodes, i), "node-name"));
    found = nn && !strcmp(nn, node);
  }
  json_decref(nodes);
  return found;
}

int rp_vm_fleece_release(rp_vm *vm, const char *fnode)
{
  json_t *jobs = NULL;
  /* the backup job that keeps the view (job id = node name); cancelling it
   * removes its copy-before-write filter from the guest's I/O path */
  rp_qmp_exec(vm->q, "block-job-cancel", json_pack("{s:s,s:b}", "device", fnode, "force", 1), NULL,
              QMP_TIMEOUT_MS);
  for (int k = 0; k < 5000; k++) {
    bool running = false;
    if (rp_qmp_exec(vm->q, "query-block-jobs", NULL, &jobs, QMP_TIMEOUT_MS) < 0)
      return -1;
    for (size_t i = 0; i < json_array_size(jobs); i++) {
      const char *d = json_string_value(json_object_get(json_array_get(jobs, i), "device"));
      running |= d && !strcmp(d, fnode);
    }
    json_decref(jobs);
    if (!running)
      break;
    sleep_ms(2);
  }
  int has = rp_vm_has_node(vm, fnode);
  if (has <= 0)
    return has;
  return rp_qmp_exec(vm->q, "blockdev-del", json_pack("{s:s}", "node-name", fnode), NULL,
                     QMP_TIMEOUT_MS);
}

int rp_vm_fleece_capture(rp_vm *vm, size_t n, const char *const *nodes,
                         const char *const *fnodes, const char *const *files,
                         const char *const *prev, const char *const *newbm, double *pause_ms)
{
  size_t added = 0;
  int rc = -1;
  for (; added < n; added++) {
    /* the scratch image reaches QEMU as a descriptor in an fd set
     * (add-fd + /dev/fdset/N), never as a path: our state directory is
     * 0700 root, an unprivileged QEMU could not open it */
    int fd = open(files[added], O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      rp_err_set(rp_err_from_errno(errno), errno, "fleecing scratch %s", files[added]);
      goto out;
    }
    json_t *fs = NULL;
    int arc = qmp_exec_fd(vm->q, "add-fd", NULL, fd, &fs, QMP_TIMEOUT_MS);
    close(fd);
    if (arc < 0)
      goto out;
    json_int_t set = json_integer_value(json_object_get(fs, "fdset-id"));
    json_decref(fs);
    CLEANUP_FREE char *fname = rp_xasprintf("/dev/fdset/%lld", (long long)set);
    json_t *args = json_pack("{s:s,s:s,s:{s:s,s:s},s:s}", "driver", "qcow2", "node-name",
                             fnodes[added], "file", "driver", "file", "filename", fname,
                             "backing", nodes[added]);
    int brc = rp_qmp_exec(vm->q, "blockdev-add", args, NULL, QMP_TIMEOUT_MS);
    /* the node holds its own duplicate now; the set goes (QEMU closes our
     * descriptor once nothing uses it) */
    rp_error saved = *rp_last_error();
    rp_qmp_exec(vm->q, "remove-fd", json_pack("{s:I}", "fdset-id", set), NULL, QMP_TIMEOUT_MS);
    *(rp_error *)rp_last_error() = saved;
    if (brc < 0)
      goto out;
  }
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) {
    epoch_actions(a, nodes[i], prev[i], newbm[i]);
    json_array_append_new(a, action("blockdev-backup",
                                    json_pack("{s:s,s:s,s:s,s:s,s:b}", "device", nodes[i], "target",
                                              fnodes[i], "sync", "none", "job-id", fnodes[i],
                                              "auto-dismiss", 1)));
  }
  double ms = 0;
  rc = transaction(vm, a, &ms);
  rp_trace("live capture transaction (%zu disk(s)): %.2f ms (fleecing)", n, ms);
  if (pause_ms)
    *pause_ms = ms;
out:
  if (rc < 0) {
    rp_error saved = *rp_last_error();
    for (size_t i = 0; i < added; i++)
      rp_qmp_exec(vm->q, "blockdev-del", json_pack("{s:s}", "node-name", fnodes[i]), NULL,
                  QMP_TIMEOUT_MS);
    *(rp_error *)rp_last_error() = saved;
  }
  return rc;
}

/* ---- guest agent freeze guard -------------------------------------------- */

struct rp_freeze {
  pid_t pid;
  int to_guard;   /* write end: one byte = thaw now; EOF = we died */
  int from_guard; /* read end: status lines */
};

/* One agent command; a guest-sync-delimited first flushes stale output. */
static int ga_cmd(jconn *c, const char *cmd, double deadline, json_t **ret)
{
  if (jc_send(c, json_pack("{s:s}", "execute", cmd)) < 0)
    return -1;
  for (;;) {
    json_t *r;
    if (jc_recv(c, deadline, &r) < 0)
      return -1;
    json_t *err = json_object_get(r, "error");
    if (err) {
      const char *d = json_string_value(json_object_get(err, "desc"));
      rp_err_set(RP_E_FAILED, 0, "%s", d ? d : "error");
      json_decref(r);
      return -1;
    }
    if (json_object_get(r, "return")) {
      if (ret)
        *ret = json_incref(json_object_get(r, "return"));
      json_decref(r);
      return 0;
    }
    json_decref(r);
  }
}

static int ga_sync(jconn *c, double deadline)
{
  char u[37];
  rp_uuid(u);
  json_int_t id = (json_int_t)(strtoull(u, NULL, 16) & 0x7fffffff);
  if (jc_send(c, json_pack("{s:s,s:{s:I}}", "execute", "guest-sync-delimited", "arguments", "id",
                           id)) < 0)
    return -1;
  for (;;) {
    json_t *r;
    if (jc_recv(c, deadline, &r) < 0)
      return -1;
    bool ok = json_integer_value(json_object_get(r, "return")) == id;
    json_decref(r);
    if (ok)
      return 0;
  }
}

static void guard_say(int fd, const char *fmt, ...)
{
  char line[1100];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if (n > (int)sizeof line - 2)
    n = (int)sizeof line - 2;
  for (int i = 0; i < n; i++)
    if (line[i] == '\n')
      line[i] = ' ';
  line[n++] = '\n';
  ssize_t w = write(fd, line, (size_t)n);
  (void)w;
}

/* The guard: freeze, report, wait for the word (or EOF, or the limit),
 * thaw, report. Runs in a child that ignores terminal signals, so that a
 * Ctrl-C or kill of the tool still ends in a thaw. */
static void __attribute__((noreturn))
guard_main(const char *sock, int timeout_ms, int max_frozen_ms, int rd, int wr)
{
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  /* hold nothing of the tool's (VS lock, QMP connection, a daemon's
   * sockets) longer than the tool itself */
  long maxfd = sysconf(_SC_OPEN_MAX);
  for (int fd = 3; fd < (maxfd > 0 && maxfd < 65536 ? maxfd : 65536); fd++)
    if (fd != rd && fd != wr)
      close(fd);
  jconn c = {.fd = -1, .max = 65536};
  double dl = rp_monotonic() + timeout_ms / 1000.0;
  if (unix_connect(sock, &c.fd) < 0 || ga_sync(&c, dl) < 0) {
    guard_say(wr, "N no guest agent answered on %s within %d ms: %s", sock, timeout_ms,
              rp_last_error()->message);
    _exit(0);
  }
  json_t *ret = NULL;
  int frc = ga_cmd(&c, "guest-fsfreeze-freeze", rp_monotonic() + timeout_ms / 1000.0, &ret);
  if (frc < 0) {
    rp_error e = *rp_last_error();
    /* the agent may have frozen some file systems before failing or while
     * we waited: thaw in any case */
    ga_cmd(&c, "guest-fsfreeze-thaw", rp_monotonic() + timeout_ms / 1000.0, NULL);
    guard_say(wr, "%c guest-fsfreeze-freeze: %s", e.code == RP_E_TIMEOUT ? 'N' : 'E',
              e.code == RP_E_TIMEOUT ? "the agent did not answer in time" : e.message);
    _exit(0);
  }
  guard_say(wr, "F %lld", (long long)json_integer_value(ret));
  json_decref(ret);
  struct pollfd p = {.fd = rd, .events = POLLIN};
  int pr;
  do
    pr = poll(&p, 1, max_frozen_ms);
  while (pr < 0 && errno == EINTR);
  bool expired = pr == 0;
  int ok = -1;
  for (int k = 0; k < 3 && ok < 0; k++) {
    ret = NULL;
    ok = ga_cmd(&c, "guest-fsfreeze-thaw", rp_monotonic() + timeout_ms / 1000.0, &ret);
    json_decref(ret);
  }
  if (ok < 0)
    guard_say(wr, "E guest-fsfreeze-thaw failed: %s", rp_last_error()->message);
  else if (expired)
    guard_say(wr, "X the guest stayed frozen longer than %d ms and was thawed before the "
                  "capture ended; the point would not be application consistent",
              max_frozen_ms);
  else
    guard_say(wr, "T");
  jc_close(&c);
  if (expired) {
    /* the tool still has to say its word (or die): keep our end of its
     * pipe open until then, so that its write never meets a closed pipe */
    char ch;
    while (read(rd, &ch, 1) < 0 && errno == EINTR)
      ;
  }
  _exit(0);
}

static int read_line(int fd, char *buf, size_t cap)
{
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    if (buf[n] == '\n')
      break;
    n++;
  }
  buf[n] = 0;
  return (int)n;
}

int rp_freeze_begin(const char *agent_sock, int timeout_ms, int max_frozen_ms, rp_freeze **out)
{
  int a[2], b[2];
  if (pipe2(a, O_CLOEXEC) < 0)
    return rp_err_set(RP_E_FAILED, errno, "pipe");
  if (pipe2(b, O_CLOEXEC) < 0) {
    close(a[0]);
    close(a[1]);
    return rp_err_set(RP_E_FAILED, errno, "pipe");
  }
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    return rp_err_set(RP_E_FAILED, e, "fork");
  }
  if (pid == 0) {
    close(a[1]);
    close(b[0]);
    guard_main(agent_sock, timeout_ms, max_frozen_ms, a[0], b[1]);
  }
  close(a[0]);
  close(b[1]);
  rp_freeze *f = rp_xcalloc(1, sizeof *f);
  f->pid = pid;
  f->to_guard = a[1];
  f->from_guard = b[0];
  char line[1100];
  read_line(f->from_guard, line, sizeof line);
  if (line[0] == 'F') {
    rp_trace("guest frozen (%s file systems)", line + 2);
    *out = f;
    return 0;
  }
  close(f->to_guard);
  close(f->from_guard);
  waitpid(f->pid, NULL, 0);
  free(f);
  if (line[0] == 'N')
    return rp_err_set(RP_E_NOT_AVAILABLE, 0,
                      "application-consistent reference point impossible: %s", line + 2);
  return rp_err_set(RP_E_FAILED, 0, "application-consistent reference point: %s",
                    line[0] ? line + 2 : "the guest agent guard died");
}

int rp_freeze_end(rp_freeze *f)
{
  if (!f)
    return 0;
  ssize_t w = write(f->to_guard, "t", 1);
  (void)w;
  char line[1100];
  read_line(f->from_guard, line, sizeof line);
  close(f->to_guard);
  close(f->from_guard);
  waitpid(f->pid, NULL, 0);
  free(f);
  if (line[0] == 'T') {
    rp_trace("guest thawed");
    return 0;
  }
  return rp_err_set(RP_E_FAILED, 0, "%s", line[0] ? line + 2 : "the guest agent guard died");
}
