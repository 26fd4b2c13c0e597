/* Unit tests of the error table and error record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "internal.h"

static void hyperv_codes(void **state)
{
  (void)state;
  assert_int_equal(rp_err_hyperv_code(RP_E_OK), 0);
  assert_int_equal(rp_err_hyperv_code(RP_E_FAILED), 32768);
  assert_int_equal(rp_err_hyperv_code(RP_E_ACCESS_DENIED), 32769);
  assert_int_equal(rp_err_hyperv_code(RP_E_NOT_SUPPORTED), 32770);
  assert_int_equal(rp_err_hyperv_code(RP_E_TIMEOUT), 32772);
  assert_int_equal(rp_err_hyperv_code(RP_E_INVALID_PARAMETER), 32773);
  assert_int_equal(rp_err_hyperv_code(RP_E_IN_USE), 32774);
  assert_int_equal(rp_err_hyperv_code(RP_E_NO_DATA), 32775);
  assert_int_equal(rp_err_hyperv_code(RP_E_TRACKING_LOST), 32775);
  assert_int_equal(rp_err_hyperv_code(RP_E_TYPE), 32776);
  assert_int_equal(rp_err_hyperv_code(RP_E_NOT_AVAILABLE), 32777);
  assert_int_equal(rp_err_hyperv_code(RP_E_NO_MEMORY), 32778);
}

static void family_a_codes(void **state)
{
  (void)state;
  assert_int_equal(rp_err_cim_code(RP_E_OK), 0);
  assert_int_equal(rp_err_cim_code(RP_E_NOT_SUPPORTED), 1);
  assert_int_equal(rp_err_cim_code(RP_E_FAILED), 2);
  assert_int_equal(rp_err_cim_code(RP_E_TIMEOUT), 3);
  assert_int_equal(rp_err_cim_code(RP_E_INVALID_PARAMETER), 4);
  assert_int_equal(rp_err_cim_code(RP_E_INVALID_STATE), 5);
  assert_int_equal(rp_err_cim_code(RP_E_TYPE), 6);
}

static void every_code_has_a_sentence(void **state)
{
  (void)state;
  for (int c = 0; c < RP_E__COUNT; c++) {
    assert_non_null(rp_err_sentence((rp_errcode)c));
    assert_true(strlen(rp_err_sentence((rp_errcode)c)) > 5);
    assert_non_null(rp_err_name((rp_errcode)c));
    int x = rp_err_exit_code((rp_errcode)c);
    assert_true(c == RP_E_OK ? x == 0 : (x == 1 || x == 2));
  }
  /* out of range maps to FAILED */
  assert_int_equal(rp_err_hyperv_code((rp_errcode)9999), 32768);
}

static void record_and_prefix(void **state)
{
  (void)state;
  assert_int_equal(rp_err_set(RP_E_NO_SPACE, ENOSPC, "write %s", "x.qcow2"), -1);
  assert_int_equal(rp_last_error()->code, RP_E_NO_SPACE);
  assert_int_equal(rp_last_error()->sys_errno, ENOSPC);
  assert_non_null(strstr(rp_last_error()->message, "write x.qcow2: "));
  rp_err_prefix("ExportReferencePoint");
  assert_true(!strncmp(rp_last_error()->message, "ExportReferencePoint: write x.qcow2", 35));
  assert_int_equal(rp_last_error()->code, RP_E_NO_SPACE);
  /* a prefix never overflows */
  char big[2000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  rp_err_set(RP_E_FAILED, 0, "%s", big);
  for (int i = 0; i < 10; i++)
    rp_err_prefix("p%d", i);
  assert_true(strlen(rp_last_error()->message) < sizeof rp_last_error()->message);
  assert_int_equal(rp_err_from_errno(ENOSPC), RP_E_NO_SPACE);
  assert_int_equal(rp_err_from_errno(EROFS), RP_E_ACCESS_DENIED);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hyperv_codes),
      cmocka_unit_test(family_a_codes),
      cmocka_unit_test(every_code_has_a_sentence),
      cmocka_unit_test(record_and_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
