/* libFuzzer target: object paths. Checks the parser never crashes, and
 * that what it accepts formats to text it accepts again with equal keys. */
#include <stdlib.h>
#include <string.h>

#include "cim.h"

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  char err[CIM_ERRLEN];
  cim_objpath *p = cim_objpath_parse((const char *)d, n, err);
  if (!p)
    return 0;
  char *f = cim_objpath_format(p);
  cim_objpath *q = cim_objpath_parse(f, strlen(f), err);
  if (!q)
    abort(); /* formatted output must parse */
  if (q->n_keys != p->n_keys || strcmp(q->classname, p->classname))
    abort();
  for (size_t i = 0; i < p->n_keys; i++)
    if (strcmp(p->keys[i].value, q->keys[i].value))
      abort();
  free(f);
  cim_objpath_free(q);
  cim_objpath_free(p);
  return 0;
}
