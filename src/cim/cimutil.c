/* cimutil.c — helpers shared by the CIM text parsers (see cim_internal.h). */
#include "cim_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *cim_seterr(char *err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, CIM_ERRLEN, fmt, ap);
  va_end(ap);
  return NULL;
}

void *cim_xrealloc(void *p, size_t n)
{
  p = realloc(p, n ? n : 1);
  if (!p)
    abort();
  return p;
}

char *cim_xstrdup(const char *s)
{
  char *r = strdup(s ? s : "");
  if (!r)
    abort();
  return r;
}

char *cim_xstrndup(const char *s, size_t n)
{
  char *r = malloc(n + 1);
  if (!r)
    abort();
  memcpy(r, s, n);
  r[n] = '\0';
  return r;
}

bool cim_xml_is(xmlNode *n, const char *name)
{
  return n && n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

char *cim_xml_attr(xmlNode *n, const char *name)
{
  xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
  char *r = v ? cim_xstrdup((const char *)v) : NULL;
  xmlFree(v);
  return r;
}

char *cim_xml_text(xmlNode *n)
{
  xmlChar *c = xmlNodeGetContent(n);
  char *r = cim_xstrdup(c ? (const char *)c : "");
  xmlFree(c);
  return r;
}

long cim_find_decl(const char *s, size_t len)
{
  for (size_t i = 0; i + 1 < len; i++)
    if (s[i] == '<' && s[i + 1] == '!') {
      if (i + 3 < len && s[i + 2] == '-' && s[i + 3] == '-')
        continue; /* a comment */
      if (i + 8 < len && !memcmp(s + i, "<![CDATA[", 9))
        continue;
      return (long)i;
    }
  return -1;
}
