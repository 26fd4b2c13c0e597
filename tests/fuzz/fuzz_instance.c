/* libFuzzer target: embedded instances, CIM-XML and MOF (the first byte of
 * the input picks the parser, so both get the whole corpus). */
#include "cim.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  char err[CIM_ERRLEN];
  if (n == 0)
    return 0;
  cim_instance *in = (d[0] & 1) ? cim_instance_parse_xml((const char *)d + 1, n - 1, err)
                                : cim_instance_parse_mof((const char *)d + 1, n - 1, err);
  /* H1's oracle for the XML form: nothing with a NUL or a DTD is accepted */
  if (in && (d[0] & 1) &&
      (memchr(d + 1, 0, n - 1) || memmem(d + 1, n - 1, "<!DOCTYPE", 9) ||
       memmem(d + 1, n - 1, "<!ENTITY", 8)))
    abort();
  if (in)
    for (size_t i = 0; i < in->n_props; i++)
      (void)cim_instance_prop(in, in->props[i].name);
  cim_instance_free(in);
  return 0;
}
