/* guestio — test helper for running VMs (not part of the product).
 *
 *   guestio qmp SOCK 'JSON-COMMAND'...
 *       Sends each command on a QMP socket, prints each "return" as JSON on
 *       a line; exits 1 on a QMP error (printed to stderr). With
 *       $GUESTIO_TIME set, prints each command's round trip ("ms X") to stderr.
 *   guestio write SOCK DEVICE OFF LEN PATTERN
 *       One guest-like write through the device's BlockBackend
 *       (human-monitor-command "qemu-io -d DEVICE 'write -P ...'").
 *   guestio writer SOCK DEVICE SIZE SEED LOG STOPFILE [MAXWRITES]
 *       A busy guest: sequential writes of 4 KiB..1 MiB at random 4 KiB
 *       aligned offsets, pattern = (n % 255) + 1, until STOPFILE exists.
 *       Each write is logged after QEMU answered, as
 *       "n start_ns end_ns off len pattern" (CLOCK_REALTIME), and the
 *       longest write latency is reported at the end: "maxlat_ms X".
 *   guestio match IMAGE.raw BASE.raw LOG T0_NS T1_NS
 *       The content of a point in time taken between T0 and T1 while the
 *       writer ran: applies the logged writes that ended before T0 to BASE,
 *       then one write at a time up to the last that started before T1,
 *       and compares IMAGE after each step. Prints "match K" (writes
 *       applied) or exits 1 "no prefix matches". With one writer there is at
 *       most one write in flight at any instant, so an exact capture must
 *       equal one of these prefixes; a torn one equals none.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static char buf[1 << 20];
static size_t blen;

static void die(const char *m)
{
  fprintf(stderr, "guestio: %s\n", m);
  exit(1);
}

static json_t *recv_msg(void)
{
  for (;;) {
    char *nl = memchr(buf, '\n', blen);
    if (nl) {
      size_t ll = (size_t)(nl - buf) + 1;
      json_t *j = json_loadb(buf, ll - 1, 0, NULL);
      memmove(buf, buf + ll, blen - ll);
      blen -= ll;
      if (j)
        return j;
      continue;
    }
    if (blen == sizeof buf)
      die("line too long");
    ssize_t r = read(fd, buf + blen, sizeof buf - blen);
    if (r <= 0)
      die("QMP connection closed");
    blen += (size_t)r;
  }
}

/* Sends cmd (stolen) and returns the answer (caller decrefs). */
static json_t *exec_json(json_t *cmd)
{
  char *t = json_dumps(cmd, JSON_COMPACT);
  json_decref(cmd);
  size_t n = strlen(t);
  if (write(fd, t, n) != (ssize_t)n)
    die("write");
  free(t);
  for (;;) {
    json_t *r = recv_msg();
    if (json_object_get(r, "event")) {
      json_decref(r);
      continue;
    }
    return r;
  }
}

static void connect_qmp(const char *path)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
    die("connect");
  json_decref(recv_msg()); /* greeting */
  json_t *r = exec_json(json_pack("{s:s}", "execute", "qmp_capabilities"));
  json_decref(r);
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int hmp_write(const char *dev, uint64_t off, uint64_t len, int pat)
{
  char line[512];
  snprintf(line, sizeof line, "qemu-io -d %s \"write -P 0x%02x %llu %llu\"", dev, pat,
           (unsigned long long)off, (unsigned long long)len);
  json_t *r = exec_json(json_pack("{s:s,s:{s:s}}", "execute", "human-monitor-command",
                                  "arguments", "command-line", line));
  const char *out = json_string_value(json_object_get(r, "return"));
  int ok = out && !*out;
  if (!ok)
    fprintf(stderr, "guestio: write failed: %s\n", out ? out : "QMP error");
  json_decref(r);
  return ok ? 0 : -1;
}

static uint64_t rnd(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

struct wrec {
  int64_t t0, t1;
  uint64_t off, len;
  int pat;
};

static struct wrec *load_log(const char *path, size_t *n)
{
  FILE *f = fopen(path, "r");
  if (!f)
    die("cannot open log");
  struct wrec *w = NULL;
  size_t cnt = 0, cap = 0;
  long long k, t0, t1;
  unsigned long long off, len;
  int pat;
  while (fscanf(f, "%lld %lld %lld %llu %llu %d", &k, &t0, &t1, &off, &len, &pat) == 6) {
    if (cnt == cap) {
      cap = cap ? cap * 2 : 1024;
      w = realloc(w, cap * sizeof *w);
    }
    w[cnt++] = (struct wrec){t0, t1, off, len, pat};
  }
  fclose(f);
  *n = cnt;
  return w;
}

static unsigned char *map_file(const char *path, size_t *size, int writable)
{
  int f = open(path, writable ? O_RDWR : O_RDONLY);
  struct stat st;
  if (f < 0 || fstat(f, &st) < 0)
    die("cannot open image");
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | (writable ? PROT_WRITE : 0),
                 writable ? MAP_PRIVATE : MAP_SHARED, f, 0);
  if (p == MAP_FAILED)
    die("mmap");
  close(f);
  *size = (size_t)st.st_size;
  return p;
}

int main(int argc, char **argv)
{
  if (argc >= 4 && !strcmp(argv[1], "qmp")) {
    connect_qmp(argv[2]);
    for (int i = 3; i < argc; i++) {
      json_t *c = json_loads(argv[i], 0, NULL);
      if (!c)
        die("bad JSON command");
      int64_t t0 = now_ns();
      json_t *r = exec_json(c);
      if (getenv("GUESTIO_TIME"))
        fprintf(stderr, "ms %.3f\n", (now_ns() - t0) / 1e6);
      json_t *e = json_object_get(r, "error");
      if (e) {
        char *t = json_dumps(e, JSON_COMPACT);
        fprintf(stderr, "guestio: QMP error: %s\n", t);
        free(t);
        json_decref(r);
        return 1;
      }
      char *t = json_dumps(json_object_get(r, "return"), JSON_COMPACT | JSON_ENCODE_ANY);
      printf("%s\n", t);
      free(t);
      json_decref(r);
    }
    return 0;
  }
  if (argc == 7 && !strcmp(argv[1], "write")) {
    connect_qmp(argv[2]);
    return hmp_write(argv[3], strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0),
                     (int)strtol(argv[6], NULL, 0)) < 0;
  }
  if ((argc == 8 || argc == 9) && !strcmp(argv[1], "writer")) {
    connect_qmp(argv[2]);
    uint64_t size = strtoull(argv[4], NULL, 0), seed = strtoull(argv[5], NULL, 0) | 1;
    long maxw = argc == 9 ? strtol(argv[8], NULL, 0) : -1;
    FILE *log = fopen(argv[6], "w");
    if (!log)
      die("cannot write log");
    double maxlat = 0;
    for (long n = 0; maxw < 0 || n < maxw; n++) {
      if (access(argv[7], F_OK) == 0)
        break;
      uint64_t len = 4096 * (1 + rnd(&seed) % 256);
      uint64_t off = 4096 * (rnd(&seed) % ((size - len) / 4096));
      int pat = (int)(n % 255) + 1;
      int64_t t0 = now_ns();
      if (hmp_write(argv[3], off, len, pat) < 0)
        return 1;
      int64_t t1 = now_ns();
      if ((t1 - t0) / 1e6 > maxlat)
        maxlat = (t1 - t0) / 1e6;
      fprintf(log, "%ld %lld %lld %llu %llu %d\n", n, (long long)t0, (long long)t1,
              (unsigned long long)off, (unsigned long long)len, pat);
      fflush(log);
    }
    fclose(log);
    printf("maxlat_ms %.2f\n", maxlat);
    return 0;
  }
  if (argc == 7 && !strcmp(argv[1], "match")) {
    size_t isz, bsz, n;
    unsigned char *img = map_file(argv[2], &isz, 0);
    unsigned char *m = map_file(argv[3], &bsz, 1);
    if (isz != bsz)
      die("sizes differ");
    struct wrec *w = load_log(argv[4], &n);
    int64_t t0 = strtoll(argv[5], NULL, 10), t1 = strtoll(argv[6], NULL, 10);
    size_t k = 0;
    while (k < n && w[k].t1 < t0) {
      memset(m + w[k].off, w[k].pat, w[k].len);
      k++;
    }
    for (;;) {
      if (!memcmp(img, m, isz)) {
        printf("match %zu\n", k);
        free(w);
        return 0;
      }
      if (k >= n || w[k].t0 > t1)
        break;
      memset(m + w[k].off, w[k].pat, w[k].len);
      k++;
    }
    fprintf(stderr, "guestio: no prefix of the %zu logged writes matches (tried up to %zu)\n", n,
            k);
    free(w);
    return 1;
  }
  fprintf(stderr, "usage: guestio qmp|write|writer|match ... (see the source)\n");
  return 2;
}
