/* Unit tests of identifiers, paths and child processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "internal.h"

static void uuids(void **state)
{
  (void)state;
  char a[37], b[37];
  rp_uuid(a);
  rp_uuid(b);
  assert_true(rp_is_uuid(a));
  assert_string_not_equal(a, b);
  assert_int_equal(a[14], '4'); /* version 4 */
  assert_false(rp_is_uuid("not-a-uuid"));
  assert_false(rp_is_uuid("0123456789abcdef0123456789abcdef0123"));
  assert_false(rp_is_uuid(NULL));
}

static void ids(void **state)
{
  (void)state;
  char g[37];
  const char *u = "0A1B2C3D-0000-4000-8000-00000000000F";
  assert_int_equal(rp_parse_rp_id(u, g), 0);
  assert_string_equal(g, "0a1b2c3d-0000-4000-8000-00000000000f");
  char *iid = rp_point_instance_id(g);
  assert_string_equal(iid, "Microsoft:0a1b2c3d-0000-4000-8000-00000000000f");
  char g2[37];
  assert_int_equal(rp_parse_rp_id(iid, g2), 0);
  assert_string_equal(g, g2);
  free(iid);
  char *did = rp_disk_instance_id("11111111-1111-4111-8111-111111111111",
                                  "22222222-2222-4222-8222-222222222222");
  assert_string_equal(did, "Microsoft:11111111-1111-4111-8111-111111111111\\"
                           "22222222-2222-4222-8222-222222222222\\0\\0\\L");
  assert_int_equal(rp_parse_disk_id(did, g2), 0);
  assert_string_equal(g2, "22222222-2222-4222-8222-222222222222");
  free(did);
  assert_int_equal(rp_parse_rp_id("Microsoft:", g), -1);
  assert_int_equal(rp_parse_rp_id("Microsoft:xyz", g), -1);
  assert_int_equal(rp_parse_disk_id("Microsoft:abc", g), -1);
  assert_int_equal(rp_parse_rp_id(NULL, g), -1);
}

static void abspaths(void **state)
{
  (void)state;
  char *p = rp_abspath("/a//b/./c/../d/");
  assert_string_equal(p, "/a/b/d");
  free(p);
  p = rp_abspath("/../..");
  assert_string_equal(p, "/");
  free(p);
  p = rp_abspath("rel");
  assert_true(p[0] == '/' && strstr(p, "/rel"));
  free(p);
}

static void run_tool(void **state)
{
  (void)state;
  char *out = NULL, *err = NULL;
  const char *ok[] = {"sh", "-c", "echo hello; echo oops >&2; exit 3", NULL};
  assert_int_equal(rp_run(ok, &out, &err), 3);
  assert_string_equal(out, "hello\n");
  assert_string_equal(rp_tool_msg(err), "oops");
  free(out);
  free(err);
  const char *missing[] = {"no-such-program-refpoint", NULL};
  assert_int_equal(rp_run(missing, NULL, NULL), -1);
  assert_int_equal(rp_last_error()->code, RP_E_NOT_AVAILABLE);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(uuids),
      cmocka_unit_test(ids),
      cmocka_unit_test(abspaths),
      cmocka_unit_test(run_tool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
