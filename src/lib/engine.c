/* engine.c — qemu-img and qemu-nbd, run as child processes.
 *
 * Shut-off virtual systems are handled entirely with the stock tools:
 * qemu-img for snapshots and bitmaps (image locking guarantees no writer
 * runs meanwhile), qemu-nbd -r to serve a snapshot plus the epoch bitmaps
 * to the libnbd data path (copy.c). A live (QMP) engine will sit beside
 * these functions with the same shape. */
#include "engine.h"
#include "live.h"

#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Runs a qemu tool; on failure sets an error naming what and the tool's
 * message. */
static int run_tool(const char *what, const char *path, const char *const argv[], char **out)
{
  CLEANUP_FREE char *err = NULL;
  double t0 = rp_monotonic();
  int rc = rp_run(argv, out, &err);
  rp_trace("%s %s: exit %d, %.1f ms", what, path, rc, (rp_monotonic() - t0) * 1000);
  if (rc == 0)
    return 0;
  if (rc < 0)
    return -1;
  const char *m = rp_tool_msg(err);
  rp_errcode code = RP_E_FAILED;
  if (strstr(m, "lock"))
    code = RP_E_IN_USE;
  else if (strstr(m, "No such file") || strstr(m, "Could not open"))
    code = RP_E_DISK_CHANGED;
  if (out) {
    free(*out);
    *out = NULL;
  }
  if (code == RP_E_IN_USE) /* the usual cause: a VM runs on it, unregistered */
    return rp_err_set(code, 0,
                      "%s %s: %s (if a VM runs on this disk, register its QMP socket: refpoint "
                      "vm set VM --qmp SOCKET)",
                      what, path, m);
  return rp_err_set(code, 0, "%s %s: %s", what, path, m);
}

void rp_image_state_free(rp_image_state *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < s->n_bitmaps; i++)
    free(s->bitmaps[i].name);
  free(s->bitmaps);
  for (size_t i = 0; i < s->n_snapshots; i++)
    free(s->snapshots[i]);
  free(s->snapshots);
  free(s->format);
  free(s);
}

rp_image_state *rp_image_state_parse(json_t *info, json_t *live_bitmaps)
{
  rp_image_state *s = rp_xcalloc(1, sizeof *s);
  s->virtual_size = (uint64_t)json_integer_value(json_object_get(info, "virtual-size"));
  s->format = rp_xstrdup(json_string_value(json_object_get(info, "format")));
  json_t *fs = json_object_get(json_object_get(info, "format-specific"), "data");
  const char *compat = json_string_value(json_object_get(fs, "compat"));
  s->qcow2_v3 = s->format && !strcmp(s->format, "qcow2") && compat && !strcmp(compat, "1.1");
  s->corrupt = json_is_true(json_object_get(fs, "corrupt"));
  s->encrypted = json_is_true(json_object_get(info, "encrypted")) || json_object_get(fs, "encrypt");
  s->external_data = json_object_get(fs, "data-file") != NULL;
  /* the file's bitmaps (flags "in-use", "auto"), or a running QEMU's
   * (BlockDirtyInfo: "inconsistent", "recording") */
  json_t *bms = live_bitmaps ? live_bitmaps : json_object_get(fs, "bitmaps");
  s->n_bitmaps = json_array_size(bms);
  s->bitmaps = rp_xcalloc(s->n_bitmaps, sizeof *s->bitmaps);
  for (size_t i = 0; i < s->n_bitmaps; i++) {
    json_t *b = json_array_get(bms, i);
    const char *nm = json_string_value(json_object_get(b, "name"));
    s->bitmaps[i].name = rp_xstrdup(nm ? nm : "");
    s->bitmaps[i].granularity = (uint32_t)json_integer_value(json_object_get(b, "granularity"));
    if (live_bitmaps) {
      s->bitmaps[i].enabled = json_is_true(json_object_get(b, "recording"));
      s->bitmaps[i].in_use = json_is_true(json_object_get(b, "inconsistent"));
    }
    json_t *fl = json_object_get(b, "flags");
    for (size_t k = 0; k < json_array_size(fl); k++) {
      const char *f = json_string_value(json_array_get(fl, k));
      if (f && !strcmp(f, "in-use"))
        s->bitmaps[i].in_use = true;
      if (f && !strcmp(f, "auto"))
        s->bitmaps[i].enabled = true;
    }
  }
  json_t *sn = json_object_get(info, "snapshots");
  s->n_snapshots = json_array_size(sn);
  s->snapshots = rp_xcalloc(s->n_snapshots, sizeof(char *));
  for (size_t i = 0; i < s->n_snapshots; i++) {
    const char *n = json_string_value(json_object_get(json_array_get(sn, i), "name"));
    s->snapshots[i] = rp_xstrdup(n ? n : "");
  }
  return s;
}

static int img_inspect(const char *path, rp_image_state **out)
{
  struct stat st;
  if (stat(path, &st) < 0)
    return rp_err_set(RP_E_DISK_CHANGED, errno, "disk %s", path);
  const char *argv[] = {"qemu-img", "info", "--output=json", path, NULL};
  CLEANUP_FREE char *js = NULL;
  if (run_tool("qemu-img info", path, argv, &js) < 0)
    return -1;
  json_error_t je;
  json_t *root = json_loads(js, 0, &je);
  if (!root)
    return rp_err_set(RP_E_FAILED, 0, "qemu-img info %s: unreadable output: %s", path, je.text);
  rp_image_state *s = rp_image_state_parse(root, NULL);
  json_decref(root);
  *out = s;
  return 0;
}

const rp_bitmap_st *rp_image_bitmap(const rp_image_state *s, const char *name)
{
  for (size_t i = 0; i < s->n_bitmaps; i++)
    if (!strcmp(s->bitmaps[i].name, name))
      return &s->bitmaps[i];
  return NULL;
}

bool rp_image_has_snapshot(const rp_image_state *s, const char *name)
{
  for (size_t i = 0; i < s->n_snapshots; i++)
    if (!strcmp(s->snapshots[i], name))
      return true;
  return false;
}

int rp_engine_create_image(const char *path, uint64_t size)
{
  char sz[32];
  snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
  const char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", path, sz, NULL};
  return run_tool("qemu-img create", path, argv, NULL);
}

int rp_engine_snapshot_create(const char *path, const char *name)
{
  const char *argv[] = {"qemu-img", "snapshot", "-q", "-c", name, path, NULL};
  return run_tool("qemu-img snapshot -c", path, argv, NULL);
}

static int img_snapshot_delete(const char *path, const char *name)
{
  const char *argv[] = {"qemu-img", "snapshot", "-q", "-d", name, path, NULL};
  return run_tool("qemu-img snapshot -d", path, argv, NULL);
}

static int img_bitmap_add(const char *path, const char *name, bool enabled)
{
  char g[32];
  snprintf(g, sizeof g, "%u", RP_GRANULARITY);
  const char *argv[] = {"qemu-img", "bitmap", "--add", "-g", g, enabled ? "--enable" : "--disable",
                        path, name, NULL};
  return run_tool("qemu-img bitmap --add", path, argv, NULL);
}

static int img_bitmap_remove(const char *path, const char *name)
{
  const char *argv[] = {"qemu-img", "bitmap", "--remove", path, name, NULL};
  return run_tool("qemu-img bitmap --remove", path, argv, NULL);
}

static int img_bitmap_enable(const char *path, const char *name, bool enable)
{
  const char *argv[] = {"qemu-img", "bitmap", enable ? "--enable" : "--disable", path, name, NULL};
  return run_tool(enable ? "qemu-img bitmap --enable" : "qemu-img bitmap --disable", path, argv,
                  NULL);
}

static int img_bitmap_merge(const char *path, const char *src, const char *dst, bool enable_dst)
{
  const char *with_enable[] = {"qemu-img", "bitmap", "--merge", src, "--enable", path, dst, NULL};
  const char *plain[] = {"qemu-img", "bitmap", "--merge", src, path, dst, NULL};
  return run_tool("qemu-img bitmap --merge", path, enable_dst ? with_enable : plain, NULL);
}

/* A json: pseudo-filename for a qcow2 file, optionally without its
 * backing chain, optionally with explicit backing files (chain[0] is the
 * oldest). jansson does the escaping, so any path is safe. Caller frees. */
static char *json_filename(const char *const *chain, size_t n, bool no_backing, bool share)
{
  json_t *node = NULL;
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_object(), *f = json_object();
    json_object_set_new(f, "driver", json_string("file"));
    json_object_set_new(f, "filename", json_string(chain[i]));
    json_object_set_new(o, "driver", json_string("qcow2"));
    json_object_set_new(o, "file", f);
    if (node)
      json_object_set_new(o, "backing", node);
    else if (n > 1 || no_backing)
      json_object_set_new(o, "backing", json_null());
    node = o;
  }
  if (share) /* immutable snapshot data: a running QEMU may hold the file */
    json_object_set_new(node, "force-share", json_true());
  char *txt = json_dumps(node, JSON_COMPACT);
  json_decref(node);
  char *r = rp_xasprintf("json:%s", txt);
  free(txt);
  return r;
}

void rp_engine_nbd_stop(rp_nbd_server *s)
{
  if (!s)
    return;
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    int st;
    for (int i = 0; i < 2000; i++) {
      pid_t r = waitpid(s->pid, &st, WNOHANG);
      if (r == s->pid || (r < 0 && errno != EINTR))
        break;
      struct timespec ts = {0, 1000 * 1000};
      nanosleep(&ts, NULL);
      if (i == 1999) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &st, 0);
      }
    }
  }
  if (s->dir)
    rp_rm_rf(s->dir);
  free(s->path);
  free(s->dir);
  free(s->sock);
  free(s);
}

/* qemu-nbd runs as our child, not daemonized, with PR_SET_PDEATHSIG: if
 * this process dies (even by SIGKILL) the kernel kills the server, so it
 * can never linger holding the image lock. Ready = the socket accepts. */
int rp_engine_nbd_spawn(const char *path, const char *snapshot, const char *const *bitmaps,
                        size_t n_bitmaps, bool no_backing, rp_nbd_server **out)
{
  struct stat st;
  if (stat(path, &st) < 0)
    return rp_err_set(RP_E_DISK_CHANGED, errno, "disk %s", path);
  char tmpl[] = "/tmp/refpoint-nbd-XXXXXX";
  if (!mkdtemp(tmpl))
    return rp_err_set(RP_E_FAILED, errno, "mkdtemp");
  rp_nbd_server *s = rp_xcalloc(1, sizeof *s);
  s->dir = rp_xstrdup(tmpl);
  s->sock = rp_xasprintf("%s/s", tmpl);
  CLEANUP_FREE char *errf = rp_xasprintf("%s/err", tmpl);
  CLEANUP_FREE char *opts = json_filename(&path, 1, no_backing, snapshot != NULL);
  CLEANUP_FREE char *sockopt = rp_xasprintf("--socket=%s", s->sock);
  CLEANUP_FREE char *snapopt = snapshot ? rp_xasprintf("snapshot.name=%s", snapshot) : NULL;
  size_t n = 0;
  const char **argv = rp_xcalloc(16 + 2 * n_bitmaps, sizeof(char *));
  argv[n++] = "qemu-nbd";
  argv[n++] = "-r";
  argv[n++] = "--shared=1";
  argv[n++] = sockopt;
  if (snapshot) {
    argv[n++] = "-l";
    argv[n++] = snapopt;
  }
  for (size_t i = 0; i < n_bitmaps; i++) {
    argv[n++] = "-B";
    argv[n++] = bitmaps[i];
  }
  argv[n++] = opts;
  argv[n] = NULL;
  pid_t parent = getpid();
  int efd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid = efd < 0 ? -1 : fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    int nul = open("/dev/null", O_RDWR);
    dup2(nul, 0);
    dup2(nul, 1);
    dup2(efd, 2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  int fork_errno = errno;
  if (efd >= 0)
    close(efd);
  free(argv);
  if (pid < 0) {
    rp_engine_nbd_stop(s);
    return rp_err_set(RP_E_FAILED, fork_errno, "qemu-nbd %s: cannot start", path);
  }
  s->pid = pid;
  s->path = rp_xstrdup(path);
  *out = s;
  return 0;
}

int rp_engine_nbd_ready(rp_nbd_server *s)
{
  const char *path = s->path;
  pid_t pid = s->pid;
  CLEANUP_FREE char *errf = rp_xasprintf("%s/err", s->dir);
  /* wait until the socket is there and accepts, or the child exits */
  for (int i = 0; i < 10000; i++) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      s->pid = 0;
      CLEANUP_FREE char *err = rp_read_file(errf, 65536, NULL);
      const char *m = rp_tool_msg(err);
      rp_errcode code = strstr(m, "lock") ? RP_E_IN_USE
                        : (WIFEXITED(status) && WEXITSTATUS(status) == 127) ? RP_E_NOT_AVAILABLE
                                                                              : RP_E_FAILED;
      return rp_err_set(code, 0, "qemu-nbd %s: %s", path,
                        *m ? m : "exited before serving (is qemu-utils installed?)");
    }
    if (access(s->sock, F_OK) == 0) {
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      struct sockaddr_un a = {.sun_family = AF_UNIX};
      snprintf(a.sun_path, sizeof a.sun_path, "%s", s->sock);
      int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
      if (fd >= 0)
        close(fd);
      if (ok)
        break;
    }
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  rp_trace("qemu-nbd %s: serving", path);
  return 0;
}

int rp_engine_nbd_start(const char *path, const char *snapshot, const char *const *bitmaps,
                        size_t n_bitmaps, bool no_backing, rp_nbd_server **out)
{
  rp_nbd_server *s;
  if (rp_engine_nbd_spawn(path, snapshot, bitmaps, n_bitmaps, no_backing, &s) < 0)
    return -1;
  if (rp_engine_nbd_ready(s) < 0) {
    rp_engine_nbd_stop(s);
    return -1;
  }
  *out = s;
  return 0;
}

int rp_engine_convert_chain(const char *const *files, size_t n, const char *out_path)
{
  CLEANUP_FREE char *src = json_filename(files, n, true, false);
  const char *argv[] = {"qemu-img", "convert", "-W", "-m", "16", src, "-O", "qcow2", out_path, NULL};
  return run_tool("qemu-img convert", out_path, argv, NULL);
}

/* ---- the image operations, offline (qemu-img) or through QMP ---------- */

int rp_engine_inspect(rp_vm *vm, const char *path, rp_image_state **out)
{
  const char *node = rp_vm_node(vm, path);
  return node ? rp_vm_inspect(vm, node, out) : img_inspect(path, out);
}

int rp_engine_snapshot_delete(rp_vm *vm, const char *path, const char *name)
{
  const char *node = rp_vm_node(vm, path);
  return node ? rp_vm_snapshot_delete(vm, node, name) : img_snapshot_delete(path, name);
}

int rp_engine_bitmap_add(rp_vm *vm, const char *path, const char *name, bool enabled)
{
  const char *node = rp_vm_node(vm, path);
  return node ? rp_vm_bitmap_add(vm, node, name, enabled) : img_bitmap_add(path, name, enabled);
}

int rp_engine_bitmap_remove(rp_vm *vm, const char *path, const char *name)
{
  const char *node = rp_vm_node(vm, path);
  return node ? rp_vm_bitmap_remove(vm, node, name) : img_bitmap_remove(path, name);
}

int rp_engine_bitmap_enable(rp_vm *vm, const char *path, const char *name, bool enable)
{
  const char *node = rp_vm_node(vm, path);
  return node ? rp_vm_bitmap_enable(vm, node, name, enable) : img_bitmap_enable(path, name, enable);
}

int rp_engine_bitmap_merge(rp_vm *vm, const char *path, const char *src, const char *dst,
                           bool enable_dst)
{
  const char *node = rp_vm_node(vm, path);
  return node ? rp_vm_bitmap_merge(vm, node, src, dst, enable_dst)
              : img_bitmap_merge(path, src, dst, enable_dst);
}
