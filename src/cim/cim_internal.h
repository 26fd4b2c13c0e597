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

/* Limits of untrusted XML, checked on the raw bytes before libxml2 sees
 * them (what is checked is exactly what is parsed: no byte is dropped or
 * re-encoded in between). */
#define CIM_XML_MAX_DEPTH 64   /* nested elements */
#define CIM_XML_MAX_ATTRS 64   /* attributes of one element */
/* Refuses (NULL, reason in err) what untrusted XML must never carry: a NUL
 * byte, a declared encoding other than UTF-8 / US-ASCII (UTF-7 would hide
 * "<!" from the check), DOCTYPE/ENTITY declarations, more than
 * CIM_XML_MAX_ATTRS attributes on an element, nesting deeper than
 * CIM_XML_MAX_DEPTH. Returns s when acceptable. */
const char *cim_xml_prescan(const char *s, size_t len, char *err);
/* libxml2 options for untrusted documents: no network, no entity
 * substitution, no DTD loading, errors kept quiet (we report them). */
#define CIM_XML_PARSE_OPTS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
#endif
