/* cimutil.c — helpers shared by the CIM text parsers (see cim_internal.h). */
#include "cim_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

const char *cim_xml_prescan(const char *s, size_t len, char *err)
{
  if (memchr(s, '\0', len))
    return cim_seterr(err, "a NUL byte in the document");
  /* the XML declaration's encoding, if any */
  if (len >= 5 && !memcmp(s, "<?xml", 5)) {
    const char *end = memchr(s, '>', len);
    size_t dl = end ? (size_t)(end - s) : len;
    for (size_t i = 0; i + 8 < dl; i++) {
      if (memcmp(s + i, "encoding", 8))
        continue;
      size_t j = i + 8;
      while (j < dl && (s[j] == ' ' || s[j] == '=' || s[j] == '\t'))
        j++;
      if (j < dl && (s[j] == '"' || s[j] == '\'')) {
        char q = s[j++];
        size_t k = j;
        while (k < dl && s[k] != q)
          k++;
        size_t el = k - j;
        if (!((el == 5 && !strncasecmp(s + j, "utf-8", 5)) ||
              (el == 8 && !strncasecmp(s + j, "us-ascii", 8))))
          return cim_seterr(err, "encoding '%.*s' is not accepted (UTF-8 only)",
                            (int)(el > 32 ? 32 : el), s + j);
      }
      break;
    }
  } else if (len >= 2 && ((unsigned char)s[0] == 0xfe || (unsigned char)s[0] == 0xff)) {
    return cim_seterr(err, "a UTF-16 document is not accepted (UTF-8 only)");
  }
  if (cim_find_decl(s, len) >= 0)
    return cim_seterr(err, "DOCTYPE and entity declarations are not accepted");
  /* nesting and attributes per element, counted on the tags */
  int depth = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '<')
      continue;
    if (i + 1 < len && (s[i + 1] == '?' || s[i + 1] == '!'))
      continue;
    bool closing = i + 1 < len && s[i + 1] == '/';
    size_t j = i + 1, attrs = 0;
    char q = 0;
    for (; j < len; j++) {
      if (q) {
        if (s[j] == q)
          q = 0;
        continue;
      }
      if (s[j] == '"' || s[j] == '\'')
        q = s[j];
      else if (s[j] == '=')
        attrs++;
      else if (s[j] == '>')
        break;
    }
    if (attrs > CIM_XML_MAX_ATTRS)
      return cim_seterr(err, "an element with more than %d attributes", CIM_XML_MAX_ATTRS);
    bool selfclose = j < len && j > i && s[j - 1] == '/';
    if (closing)
      depth--;
    else if (!selfclose && ++depth > CIM_XML_MAX_DEPTH)
      return cim_seterr(err, "elements nested deeper than %d", CIM_XML_MAX_DEPTH);
    i = j;
  }
  return s;
}
