/* libFuzzer target: CIM-XML request bodies (the lenient pre-pass, libxml2
 * with DTDs refused, the request model). */
#include <stdlib.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  const char *herr;
  char err[CIM_ERRLEN];
  cim_request *r = cim_request_parse((const char *)d, n, &herr, err);
  if (r) {
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
