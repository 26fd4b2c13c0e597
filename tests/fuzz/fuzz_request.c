/* libFuzzer target: CIM-XML request bodies (the lenient pre-pass, libxml2
 * with DTDs refused, the request model). */
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "request.h"

/* The oracle of the security audit's H1: an accepted request never held a
 * NUL byte or a DOCTYPE/ENTITY declaration, and never declared an encoding
 * in which one could hide (anything but UTF-8 / US-ASCII: UTF-7 writes "<!"
 * as "+ADwAIQ-"). */
static void oracle(const unsigned char *d, size_t n)
{
  if (memchr(d, 0, n) || memmem(d, n, "<!DOCTYPE", 9) || memmem(d, n, "<!ENTITY", 8))
    abort();
  if (n >= 5 && !memcmp(d, "<?xml", 5)) {
    /* the declaration, lower-cased: an encoding other than utf-8/us-ascii must not pass */
    char decl[256];
    size_t k = 0;
    for (; k < n && k + 1 < sizeof decl && d[k] != '>'; k++)
      decl[k] = (char)tolower(d[k]);
    decl[k] = '\0';
    const char *enc = strstr(decl, "encoding");
    if (enc && !strstr(enc, "utf-8") && !strstr(enc, "us-ascii"))
      abort();
  }
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
