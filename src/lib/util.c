/* util.c — small helpers: memory, UUIDs, paths, files, child processes. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


void rp_cleanup_free(void *ptr)
{
  free(*(void **)ptr);
}

void *rp_xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    abort();
  return p;
}
void *rp_xcalloc(size_t n, size_t m)
{
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p)
    abort();
  return p;
}
void *rp_xrealloc(void *p, size_t n)
{
  p = realloc(p, n ? n : 1);
  if (!p)
    abort();
  return p;
}
char *rp_xstrdup(const char *s)
{
  if (!s)
    return NULL;
  char *r = strdup(s);
  if (!r)
    abort();
  return r;
}
char *rp_xasprintf(const char *fmt, ...)
{
  va_list ap;
  char *r;
  va_start(ap, fmt);
  if (vasprintf(&r, fmt, ap) < 0)
    abort();
  va_end(ap);
  return r;
}

void rp_uuid(char out[37])
{
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t r = getrandom(b + got, sizeof b - got, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      abort();
    got += (size_t)r;
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

int rp_is_uuid(const char *s)
{
  if (!s || strlen(s) != 36)
    return 0;
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return 0;
    } else if (!strchr("0123456789abcdefABCDEF", s[i]))
      return 0;
  }
  return 1;
}

int64_t rp_now(void)
{
  return (int64_t)time(NULL);
}

double rp_monotonic(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *rp_abspath(const char *p)
{
  char *joined;
  if (p[0] == '/')
    joined = rp_xstrdup(p);
  else {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
      return NULL;
    joined = rp_xasprintf("%s/%s", cwd, p);
  }
  /* normalise: collapse //, /./ and /x/../ */
  size_t n = strlen(joined);
  char *out = rp_xmalloc(n + 2);
  size_t o = 0;
  const char *s = joined;
  while (*s) {
    while (*s == '/')
      s++;
    if (!*s)
      break;
    const char *e = strchr(s, '/');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len == 1 && s[0] == '.') {
    } else if (len == 2 && s[0] == '.' && s[1] == '.') {
      while (o > 0 && out[o - 1] != '/')
        o--;
      if (o > 0)
        o--;
    } else {
      out[o++] = '/';
      memcpy(out + o, s, len);
      o += len;
    }
    s += len;
  }
  if (o == 0)
    out[o++] = '/';
  out[o] = '\0';
  free(joined);
  return out;
}

int rp_mkdir_p(const char *dir, mode_t mode)
{
  CLEANUP_FREE char *d = rp_xstrdup(dir);
  for (char *p = d + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(d, mode) < 0 && errno != EEXIST)
      return rp_err_set(rp_err_from_errno(errno), errno, "mkdir %s", d);
    *p = '/';
  }
  if (mkdir(d, mode) < 0 && errno != EEXIST)
    return rp_err_set(rp_err_from_errno(errno), errno, "mkdir %s", d);
  struct stat st;
  if (stat(d, &st) < 0)
    return rp_err_set(rp_err_from_errno(errno), errno, "stat %s", d);
  if (!S_ISDIR(st.st_mode))
    return rp_err_set(RP_E_INVALID_PARAMETER, ENOTDIR, "%s", d);
  return 0;
}

int rp_fsync_path(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return rp_err_set(rp_err_from_errno(errno), errno, "open %s", path);
  if (fsync(fd) < 0 && errno != EINVAL) {
    int e = errno;
    close(fd);
    return rp_err_set(rp_err_from_errno(e), e, "fsync %s", path);
  }
  close(fd);
  return 0;
}

/* Removes name (a file, a symlink, or a directory tree) relative to the
 * directory dfd without ever following a symbolic link: each directory is
 * entered with openat(O_NOFOLLOW | O_DIRECTORY) and its entries removed
 * with unlinkat relative to it, so a directory swapped for a link to
 * somewhere else during the walk loses the link, never what it points to. */
int rp_rm_tree_at(int dfd, const char *name, int depth)
{
  if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
    return 0;
  if ((errno != EISDIR && errno != EPERM) || depth > 64)
    return -1;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      rp_rm_tree_at(dirfd(d), de->d_name, depth + 1);
  closedir(d);
  return unlinkat(dfd, name, AT_REMOVEDIR);
}

int rp_rm_rf(const char *path)
{
  CLEANUP_FREE char *dir = rp_xstrdup(path);
  char *sl = strrchr(dir, '/');
  const char *base = path;
  int dfd;
  if (sl) {
    base = path + (sl - dir) + 1;
    if (sl == dir)
      sl[1] = '\0';
    else
      *sl = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } else {
    dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (dfd < 0)
    return -1;
  int rc = rp_rm_tree_at(dfd, base, 0);
  close(dfd);
  return rc;
}

char *rp_read_file(const char *path, size_t max, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rp_err_set(errno == ENOENT ? RP_E_INVALID_PARAMETER : rp_err_from_errno(errno), errno,
               "open %s", path);
    return NULL;
  }
  return rp_read_fd(fd, path, max, len);
}

char *rp_read_fd(int fd, const char *path, size_t max, size_t *len)
{
  size_t cap = 4096, n = 0;
  char *buf = rp_xmalloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (cap >= max) {
        close(fd);
        free(buf);
        rp_err_set(RP_E_INVALID_PARAMETER, 0, "%s: larger than %zu bytes", path, max);
        return NULL;
      }
      cap *= 2;
      buf = rp_xrealloc(buf, cap + 1);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      free(buf);
      rp_err_set(rp_err_from_errno(e), e, "read %s", path);
      return NULL;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

int rp_run(const char *const argv[], char **out, char **err)
{
  int po[2], pe[2];
  if (pipe2(po, O_CLOEXEC) < 0)
    return rp_err_set(RP_E_FAILED, errno, "pipe");
  if (pipe2(pe, O_CLOEXEC) < 0) {
    close(po[0]);
    close(po[1]);
    return rp_err_set(RP_E_FAILED, errno, "pipe");
  }
  /* fork + exec rather than posix_spawn: the child must die with us
   * (PR_SET_PDEATHSIG). A qemu-img that outlived a killed refpoint would
   * finish its step after our VM lock is gone, behind the back of the next
   * operation's reconciliation. */
  pid_t parent = getpid();
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int xp[2] = {-1, -1}; /* the exec's errno, if it fails (closed by a good exec) */
  pid_t pid = devnull < 0 || pipe2(xp, O_CLOEXEC) < 0 ? -1 : fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* we died before the prctl took */
      _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(devnull, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
      _exit(127);
    execvp(argv[0], (char *const *)argv);
    int e = errno;
    if (write(xp[1], &e, sizeof e) < 0)
      _exit(127);
    _exit(127);
  }
  int fork_errno = errno;
  if (devnull >= 0)
    close(devnull);
  if (xp[1] >= 0)
    close(xp[1]);
  close(po[1]);
  close(pe[1]);
  int exec_errno = 0;
  if (pid > 0) {
    ssize_t n;
    while ((n = read(xp[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR)
      ;
    if (n != (ssize_t)sizeof exec_errno)
      exec_errno = 0;
    if (exec_errno)
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
  }
  if (xp[0] >= 0)
    close(xp[0]);
  if (pid < 0 || exec_errno) {
    close(po[0]);
    close(pe[0]);
    return exec_errno ? rp_err_set(RP_E_NOT_AVAILABLE, exec_errno, "cannot run %s", argv[0])
                      : rp_err_set(RP_E_FAILED, fork_errno, "cannot run %s", argv[0]);
  }
  char *buf[2] = {NULL, NULL};
  size_t len[2] = {0, 0}, cap[2] = {0, 0};
  struct pollfd pfd[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(pfd, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      char tmp[8192];
      ssize_t r = read(pfd[i].fd, tmp, sizeof tmp);
      if (r <= 0) {
        close(pfd[i].fd);
        pfd[i].fd = -1;
        open_fds--;
        continue;
      }
      if (len[i] + (size_t)r + 1 > cap[i] && len[i] < (1u << 20)) {
        cap[i] = (len[i] + (size_t)r + 1) * 2;
        buf[i] = rp_xrealloc(buf[i], cap[i]);
      }
      if (len[i] + (size_t)r + 1 <= cap[i]) {
        memcpy(buf[i] + len[i], tmp, (size_t)r);
        len[i] += (size_t)r;
      }
    }
  }
  for (int i = 0; i < 2; i++) {
    if (!buf[i])
      buf[i] = rp_xcalloc(1, 1);
    buf[i][len[i]] = '\0';
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (out)
    *out = buf[0];
  else
    free(buf[0]);
  if (err)
    *err = buf[1];
  else
    free(buf[1]);
  if (WIFSIGNALED(status))
    return rp_err_set(RP_E_FAILED, 0, "%s killed by signal %d", argv[0], WTERMSIG(status));
  return WEXITSTATUS(status);
}

const char *rp_tool_msg(const char *err)
{
  static _Thread_local char line[512];
  line[0] = '\0';
  if (!err)
    return line;
  /* keep the first non-empty line (qemu tools print the cause first) */
  const char *s = err;
  while (*s == '\n' || *s == ' ')
    s++;
  size_t n = strcspn(s, "\n");
  if (n >= sizeof line)
    n = sizeof line - 1;
  memcpy(line, s, n);
  line[n] = '\0';
  return line;
}

char *rp_disk_instance_id(const char *vs_guid, const char *disk_guid)
{
  return rp_xasprintf("Microsoft:%s\\%s\\0\\0\\L", vs_guid, disk_guid);
}

char *rp_point_instance_id(const char *rp_guid)
{
  return rp_xasprintf("Microsoft:%s", rp_guid);
}

static int copy_uuid(const char *s, size_t n, char out[37])
{
  if (n != 36)
    return -1;
  char tmp[37];
  memcpy(tmp, s, 36);
  tmp[36] = '\0';
  if (!rp_is_uuid(tmp))
    return -1;
  for (int i = 0; i < 37; i++)
    out[i] = (char)((tmp[i] >= 'A' && tmp[i] <= 'F') ? tmp[i] + 32 : tmp[i]);
  return 0;
}

int rp_parse_rp_id(const char *s, char out[37])
{
  if (!s)
    return -1;
  if (!strncmp(s, "Microsoft:", 10))
    s += 10;
  return copy_uuid(s, strlen(s), out);
}

int rp_parse_disk_id(const char *s, char out[37])
{
  if (!s)
    return -1;
  if (!strncmp(s, "Microsoft:", 10)) {
    /* Microsoft:<VS>\<DISK>\0\0\L */
    const char *b = strchr(s, '\\');
    if (!b)
      return -1;
    const char *e = strchr(b + 1, '\\');
    return copy_uuid(b + 1, e ? (size_t)(e - b - 1) : strlen(b + 1), out);
  }
  return copy_uuid(s, strlen(s), out);
}

void rp_fault_point(const char *point)
{
  const char *f = getenv("REFPOINT_FAULT_INJECT");
  if (f && !strcmp(f, point))
    raise(SIGKILL);
  /* "stop:POINT": stop there (SIGSTOP) so that a test can change the world
   * (kill QEMU, start a VM) and then let the operation go on (SIGCONT) */
  if (f && !strncmp(f, "stop:", 5) && !strcmp(f + 5, point))
    raise(SIGSTOP);
}

void rp_trace(const char *fmt, ...)
{
  static int on = -1;
  static double t0;
  if (on < 0) {
    on = getenv("REFPOINT_TRACE") != NULL;
    t0 = rp_monotonic();
  }
  if (!on)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[refpoint +%.3f] %s\n", rp_monotonic() - t0, line);
}
