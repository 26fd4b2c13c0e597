/* cim_internal.h — helpers shared by the CIM text parsers (not installed). */
#ifndef RP_CIM_INTERNAL_H
#define RP_CIM_INTERNAL_H
#include "cim.h"
#include <libxml/tree.h>

/* Writes a one-line reason into err (CIM_ERRLEN bytes); returns NULL. */
void *cim_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *cim_xrealloc(void *p, size_t n); /* abort on OOM */
char *cim_xstrdup(const char *s);      /* NULL -> "" */
char *cim_xstrndup(const char *s, size_t n);

/* libxml2 tree helpers: element test, attribute and text content (caller frees). */
bool cim_xml_is(xmlNode *n, const char *name);
char *cim_xml_attr(xmlNode *n, const char *name); /* NULL when absent */
char *cim_xml_text(xmlNode *n);
/* Index of the first "<!" that is neither a comment nor CDATA, or -1:
 * DOCTYPE and entity declarations are refused before parsing. */
long cim_find_decl(const char *s, size_t len);
#endif
