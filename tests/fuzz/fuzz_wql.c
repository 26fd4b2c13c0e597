/* libFuzzer target: WQL parsing and evaluation against a fixed row. */
#include <string.h>
#include <strings.h>

#include "cim.h"

static bool get(void *user, const char *prop, cim_value *out)
{
  (void)user;
  if (!strcasecmp(prop, "N")) {
    out->text = "42";
    out->type = CIM_V_NUMBER;
    return true;
  }
  if (!strcasecmp(prop, "S")) {
    out->text = "hello";
    out->type = CIM_V_STRING;
    return true;
  }
  if (!strcasecmp(prop, "Z")) {
    out->text = NULL;
    out->type = CIM_V_STRING;
    return true;
  }
  return false;
}

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  char err[CIM_ERRLEN];
  cim_query *q = cim_query_parse((const char *)d, n, err);
  if (!q)
    return 0;
  cim_query_match(q, get, NULL, err);
  cim_query_free(q);
  return 0;
}
