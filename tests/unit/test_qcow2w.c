/* Unit tests of the streaming qcow2 writer, checked by the real qemu-img:
 * check (metadata and refcounts) and compare (content against a raw file
 * written alongside), with and without a backing file, with zero clusters,
 * an unaligned disk size, and a disk larger than one L2 table covers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "qcow2w.h"

static char dir[] = "/tmp/refpoint-qcow2w-XXXXXX";

static int setup(void **state)
{
  (void)state;
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  rp_rm_rf(dir);
  return 0;
}

static int sh(const char *fmt, ...)
{
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  const char *argv[] = {"sh", "-c", cmd, NULL};
  char *err = NULL;
  int rc = rp_run(argv, NULL, &err);
  if (rc != 0)
    print_error("command failed (%d): %s\n%s\n", rc, cmd, err);
  free(err);
  return rc;
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    b[i] = (unsigned char)(seed >> 16);
  }
}

/* writes clusters into both the qcow2 and a raw mirror */
static void put(rp_qcow2w *w, int raw, uint64_t cl, size_t n, unsigned seed)
{
  size_t len = n * RP_QCOW2_CLUSTER;
  unsigned char *b = malloc(len);
  fill(b, len, seed);
  assert_int_equal(rp_qcow2w_write(w, cl * RP_QCOW2_CLUSTER, b, n), 0);
  assert_int_equal(pwrite(raw, b, len, (off_t)(cl * RP_QCOW2_CLUSTER)), (ssize_t)len);
  free(b);
}

static void standalone(void **state)
{
  (void)state;
  const uint64_t size = (1ULL << 30) + 3 * 512; /* > 1 L2 table, unaligned end */
  char q[512], r[512];
  snprintf(q, sizeof q, "%s/a.qcow2", dir);
  snprintf(r, sizeof r, "%s/a.raw", dir);
  int raw = open(r, O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert_true(raw >= 0);
  assert_int_equal(ftruncate(raw, (off_t)size), 0);
  rp_qcow2w *w = rp_qcow2w_create(q, size, NULL);
  assert_non_null(w);
  put(w, raw, 0, 3, 1);
  put(w, raw, 8191, 2, 2);       /* crosses the first L2 table boundary */
  put(w, raw, 12000, 1, 3);      /* out of order */
  put(w, raw, 5000, 16, 4);
  /* the last, partial cluster: only its first 1536 bytes are in the disk */
  uint64_t last = size / RP_QCOW2_CLUSTER;
  unsigned char *b = calloc(1, RP_QCOW2_CLUSTER);
  fill(b, 1536, 9);
  assert_int_equal(rp_qcow2w_write(w, last * RP_QCOW2_CLUSTER, b, 1), 0);
  assert_int_equal(pwrite(raw, b, 1536, (off_t)(last * RP_QCOW2_CLUSTER)), 1536);
  free(b);
  /* a write past the end is refused */
  unsigned char one[RP_QCOW2_CLUSTER] = {0};
  assert_int_equal(rp_qcow2w_write(w, (last + 1) * RP_QCOW2_CLUSTER, one, 1), -1);
  assert_int_equal(rp_qcow2w_data_bytes(w), 23ULL * RP_QCOW2_CLUSTER);
  close(raw);
  assert_int_equal(rp_qcow2w_finish(w), 0);
  assert_int_equal(sh("qemu-img check -q %s", q), 0);
  assert_int_equal(sh("qemu-img compare -q -f raw -F qcow2 %s %s", r, q), 0);
  /* the file is as small as its data */
  assert_int_equal(sh("test $(stat -c %%s %s) -le $((30 * 65536))", q), 0);
}

static void with_backing_and_zero_clusters(void **state)
{
  (void)state;
  char base[512], top[512], raw_path[512];
  snprintf(base, sizeof base, "%s/base.qcow2", dir);
  snprintf(top, sizeof top, "%s/top.qcow2", dir);
  snprintf(raw_path, sizeof raw_path, "%s/top.raw", dir);
  const uint64_t size = 64ULL << 20;
  /* the base: qemu-img writes pattern 0x11 over the first 8 MiB */
  assert_int_equal(sh("qemu-img create -q -f qcow2 %s %llu && qemu-io -f qcow2 -c 'write -q -P "
                      "0x11 0 8M' %s && qemu-img convert -O raw %s %s",
                      base, (unsigned long long)size, base, base, raw_path),
                   0);
  int raw = open(raw_path, O_RDWR);
  assert_true(raw >= 0);
  rp_qcow2w *w = rp_qcow2w_create(top, size, "base.qcow2");
  assert_non_null(w);
  put(w, raw, 2, 1, 7);
  put(w, raw, 200, 4, 8);
  /* zero clusters hide the base's data */
  unsigned char *z = calloc(1, RP_QCOW2_CLUSTER);
  for (uint64_t c = 10; c < 14; c++) {
    assert_int_equal(rp_qcow2w_zero(w, c * RP_QCOW2_CLUSTER), 0);
    assert_int_equal(pwrite(raw, z, RP_QCOW2_CLUSTER, (off_t)(c * RP_QCOW2_CLUSTER)),
                     (ssize_t)RP_QCOW2_CLUSTER);
  }
  free(z);
  close(raw);
  assert_int_equal(rp_qcow2w_finish(w), 0);
  assert_int_equal(sh("qemu-img check -q %s", top), 0);
  assert_int_equal(sh("qemu-img info %s | grep -q 'backing file: base.qcow2'", top), 0);
  assert_int_equal(sh("qemu-img info %s | grep -q 'backing file format: qcow2'", top), 0);
  assert_int_equal(sh("qemu-img compare -q -f raw -F qcow2 %s %s", raw_path, top), 0);
}

static void create_is_exclusive(void **state)
{
  (void)state;
  char q[512];
  snprintf(q, sizeof q, "%s/x.qcow2", dir);
  rp_qcow2w *w = rp_qcow2w_create(q, 1 << 20, NULL);
  assert_non_null(w);
  assert_null(rp_qcow2w_create(q, 1 << 20, NULL));
  rp_qcow2w_abort(w);
  assert_int_equal(access(q, F_OK), -1); /* abort removes the file */
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(standalone),
      cmocka_unit_test(with_backing_and_zero_clusters),
      cmocka_unit_test(create_is_exclusive),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
