/* Unit tests of the state store: schema, records, two handles at once, and
 * a store written by a newer refpoint refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <string.h>

#include "store.h"

static char dir[] = "/tmp/refpoint-store-XXXXXX";
static char db[600];

static int setup(void **state)
{
  (void)state;
  if (!mkdtemp(dir))
    return -1;
  snprintf(db, sizeof db, "%s/s.db", dir);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  rp_rm_rf(dir);
  return 0;
}

static rp_vs_info *mkvs(const char *guid, const char *name, const char *path)
{
  rp_vs_info *v = rp_xcalloc(1, sizeof *v);
  v->name = rp_xstrdup(guid);
  v->element_name = rp_xstrdup(name);
  v->n_disks = 1;
  v->disks = rp_xcalloc(1, sizeof *v->disks);
  v->disks[0].guid = rp_xstrdup("22222222-2222-4222-8222-222222222222");
  v->disks[0].path = rp_xstrdup(path);
  v->disks[0].virtual_size = 1 << 20;
  return v;
}

static void records(void **state)
{
  (void)state;
  rp_store *a, *b;
  assert_int_equal(rp_store_open(db, &a), 0);
  assert_int_equal(rp_store_open(db, &b), 0); /* a second handle: same file */
  rp_vs_info *v = mkvs("11111111-1111-4111-8111-111111111111", "vm one", "/x/a.qcow2");
  assert_int_equal(rp_store_begin(a), 0);
  assert_int_equal(rp_store_vs_insert(a, v), 0);
  assert_int_equal(rp_store_commit(a), 0);
  rp_vs_info *got;
  assert_int_equal(rp_store_vs_get(b, "vm one", &got), 0);
  assert_string_equal(got->name, v->name);
  assert_int_equal(got->n_disks, 1);
  assert_string_equal(got->disks[0].path, "/x/a.qcow2");
  assert_non_null(strstr(got->disks[0].instance_id, "\\22222222-2222-4222-8222-222222222222\\0\\0\\L"));
  rp_vs_info_free(got);
  assert_int_equal(rp_store_vs_get(b, "11111111-1111-4111-8111-111111111111", &got), 0);
  rp_vs_info_free(got);
  assert_int_equal(rp_store_vs_get(b, "nope", &got), -1);
  assert_int_equal(rp_last_error()->code, RP_E_NOT_FOUND);
  /* sequence numbers advance */
  assert_int_equal(rp_store_begin(b), 0);
  assert_int_equal(rp_store_vs_take_seq(b, v->name), 1);
  assert_int_equal(rp_store_vs_take_seq(b, v->name), 2);
  /* while b holds the write transaction, a cannot start one: IN_USE after
   * the busy timeout would be slow, so only check b commits */
  assert_int_equal(rp_store_commit(b), 0);
  /* a duplicate disk path is refused */
  rp_vs_info *v2 = mkvs("33333333-3333-4333-8333-333333333333", "vm two", "/x/a.qcow2");
  free(v2->disks[0].guid);
  v2->disks[0].guid = rp_xstrdup("44444444-4444-4444-8444-444444444444");
  assert_int_equal(rp_store_begin(a), 0);
  assert_int_equal(rp_store_vs_insert(a, v2), -1);
  rp_store_rollback(a);
  /* epochs */
  rp_epoch e = {.bitmap = "refpoint-x", .disk = "22222222-2222-4222-8222-222222222222",
                .start_seq = 1, .end_seq = -1, .valid = true};
  assert_int_equal(rp_store_epoch_insert(a, &e), 0);
  e.valid = false;
  e.reason = "lost";
  assert_int_equal(rp_store_epoch_update(a, &e), 0);
  rp_epoch *ep;
  size_t n;
  assert_int_equal(rp_store_epochs(b, e.disk, &ep, &n), 0);
  assert_int_equal(n, 1);
  assert_false(ep[0].valid);
  assert_string_equal(ep[0].reason, "lost");
  rp_epochs_free(ep, n);
  rp_vs_info_free(v);
  rp_vs_info_free(v2);
  rp_store_close(a);
  rp_store_close(b);
}

static void newer_schema_refused(void **state)
{
  (void)state;
  sqlite3 *h;
  assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
  assert_int_equal(sqlite3_exec(h, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(h);
  rp_store *s;
  assert_int_equal(rp_store_open(db, &s), -1);
  assert_int_equal(rp_last_error()->code, RP_E_NOT_SUPPORTED);
  assert_non_null(strstr(rp_last_error()->message, "newer"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(records),
      cmocka_unit_test(newer_schema_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
