/* libFuzzer target: embedded instances, CIM-XML and MOF (the first byte of
 * the input picks the parser, so both get the whole corpus). */
#include "cim.h"

int LLVMFuzzerTestOneInput(const unsigned char *d, size_t n)
{
  char err[CIM_ERRLEN];
  if (n == 0)
    return 0;
  cim_instance *in = (d[0] & 1) ? cim_instance_parse_xml((const char *)d + 1, n - 1, err)
                                : cim_instance_parse_mof((const char *)d + 1, n - 1, err);
  if (in)
    for (size_t i = 0; i < in->n_props; i++)
      (void)cim_instance_prop(in, in->props[i].name);
  cim_instance_free(in);
  return 0;
}
