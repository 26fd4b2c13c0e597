/* libFuzzer target: CIM-XML request bodies (the lenient pre-pass, libxml2
 * with DTDs refused, the request model). */
#include <stdlib.h>
#include <string.h>

#include "request.h"

/* The oracle of the security audit's H1: an accepted request never held a
 * NUL byte, a DOCTYPE/ENTITY declaration or a UTF-7 disguise of one. */
static void oracle(const unsigned char *d, size_t n)
{
  if (memchr(d, 0, n) || memmem(d, n, "<!DOCTYPE", 9) || memmem(d, n, "<!ENTITY", 8) ||
      memmem(d, n, "UTF-7", 5) || memmem(d, n, "utf-7", 5))
    abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  const char *herr;
  char err[CIM_ERRLEN];
  cim_request *r = cim_request_parse((const char *)d, n, &herr, err);
  if (r) {
    oracle(d, n);
    for (size_t i = 0; i < r->n_params; i++)
      (void)cim_request_param(r, r->params[i].name);
    if (r->target) {
      char *f = cim_objpath_format(r->target);
      free(f);
    }
  }
  cim_request_free(r);
  return 0;
}
