/* libFuzzer target: refpointd.conf */
#include <string.h>

#include "config.h"

static int cb(void *user, const char *k, const char *v, int line)
{
  (void)user;
  (void)line;
  return (strlen(k) == 0 || strlen(v) == 0) ? 1 : 0; /* never: the parser rejects both */
}

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  char err[256];
  if (rpd_config_parse((const char *)d, n, cb, NULL, err) == 1)
    __builtin_trap();
  return 0;
}
