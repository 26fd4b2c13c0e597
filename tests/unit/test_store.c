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

/* a state directory written by the first release (schema 1) is migrated in
 * place, keeping its records */
static void migrates_v1(void **state)
{
  (void)state;
  char old[700];
  snprintf(old, sizeof old, "%s/v1.db", dir);
  sqlite3 *h;
  assert_int_equal(sqlite3_open(old, &h), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(h,
                   "CREATE TABLE vs(guid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created INTEGER "
                   "NOT NULL, next_seq INTEGER NOT NULL DEFAULT 1);"
                   "CREATE TABLE disk(guid TEXT PRIMARY KEY, vs TEXT NOT NULL, idx INTEGER NOT NULL,"
                   " path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, UNIQUE(vs, idx));"
                   "CREATE TABLE rp(guid TEXT PRIMARY KEY, vs TEXT NOT NULL, seq INTEGER NOT NULL,"
                   " state TEXT NOT NULL, created INTEGER NOT NULL, name TEXT, consistency INTEGER"
                   " NOT NULL, has_data INTEGER NOT NULL, data_reason TEXT, imported INTEGER NOT"
                   " NULL DEFAULT 0, UNIQUE(vs, seq));"
                   "INSERT INTO vs VALUES('11111111-1111-4111-8111-111111111111','old',1,5);"
                   "INSERT INTO disk VALUES('22222222-2222-4222-8222-222222222222',"
                   "'11111111-1111-4111-8111-111111111111',0,'/x/old.qcow2',1048576);"
                   "PRAGMA user_version=1;",
                   NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(h);
  rp_store *s;
  assert_int_equal(rp_store_open(old, &s), 0);
  rp_vs_info *v;
  assert_int_equal(rp_store_vs_get(s, "old", &v), 0);
  assert_string_equal(v->disks[0].path, "/x/old.qcow2");
  assert_null(v->libvirt_uri);      /* v6: a VM registered by hand */
  assert_null(v->disks[0].target);
  assert_int_equal(rp_store_disk_set_path(s, v->disks[0].guid, "/x/moved.qcow2"), 0);
  /* the new columns and tables are there */
  assert_int_equal(rp_store_disk_set_sig(s, v->disks[0].guid, "sig"), 0);
  char *sig = NULL;
  assert_int_equal(rp_store_disk_sig(s, v->disks[0].guid, &sig), 0);
  assert_string_equal(sig, "sig");
  free(sig);
  rp_job_record r = {.id = "33333333-3333-4333-8333-333333333333", .type = 203, .state = 7};
  assert_int_equal(rp_store_job_put(s, &r), 0);
  rp_job_record *l;
  size_t n;
  assert_int_equal(rp_store_job_list(s, &l, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(l[0].type, 203);
  rp_jobrec_list_free(l, n);
  rp_vs_info_free(v);
  rp_store_close(s);
  assert_int_equal(sqlite3_open(old, &h), SQLITE_OK);
  sqlite3_stmt *st;
  sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), RP_SCHEMA_VERSION);
  sqlite3_finalize(st);
  sqlite3_close(h);
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
      cmocka_unit_test(migrates_v1),
      cmocka_unit_test(newer_schema_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
