/* request.c — parsing CIM-XML requests (see request.h). libxml2 reads the
 * body with DTDs refused and no network; before that, a lenient pre-pass
 * escapes the bare '&' and '<' that wbemcli leaves inside VALUE text. */
#define _GNU_SOURCE 1
#include "cim_internal.h"
#include "request.h"

#include <ctype.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


void cim_buf_add(cim_buf *b, const char *s)
{
  size_t n = strlen(s);
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->s = realloc(b->s, b->cap);
    if (!b->s)
      abort();
  }
  memcpy(b->s + b->len, s, n + 1);
  b->len += n;
}

void cim_buf_addf(cim_buf *b, const char *fmt, ...)
{
  va_list ap;
  char *t;
  va_start(ap, fmt);
  if (vasprintf(&t, fmt, ap) < 0)
    abort();
  va_end(ap);
  cim_buf_add(b, t);
  free(t);
}

void cim_buf_esc(cim_buf *b, const char *s)
{
  char one[2] = {0, 0};
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    switch (*p) {
    case '&': cim_buf_add(b, "&amp;"); break;
    case '<': cim_buf_add(b, "&lt;"); break;
    case '>': cim_buf_add(b, "&gt;"); break;
    case '"': cim_buf_add(b, "&quot;"); break;
    case '\'': cim_buf_add(b, "&apos;"); break;
    default:
      if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
        break; /* not allowed in XML 1.0 */
      one[0] = (char)*p;
      cim_buf_add(b, one);
    }
  }
}

void cim_buf_free(cim_buf *b)
{
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}

void cim_request_free(cim_request *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->n_params; i++) {
    cim_param *p = &r->params[i];
    free(p->name);
    for (size_t k = 0; k < p->n_values; k++)
      free(p->values[k]);
    free(p->values);
    cim_objpath_free(p->ref);
  }
  free(r->params);
  free(r->msgid);
  free(r->method);
  free(r->nspace);
  cim_objpath_free(r->target);
  free(r);
}

const cim_param *cim_request_param(const cim_request *r, const char *name)
{
  for (size_t i = 0; r && i < r->n_params; i++)
    if (!strcasecmp(r->params[i].name, name))
      return &r->params[i];
  return NULL;
}

/* wbemcli does not escape values: make "<VALUE>a&b<c></VALUE>" parseable.
 * A '&' that does not start an entity or character reference becomes
 * &amp;; inside VALUE/KEYVALUE text a '<' that does not start the closing
 * tag becomes &lt;. */
static char *lenient(const char *s, size_t len)
{
  cim_buf b = {0};
  b.cap = len + len / 8 + 64;
  b.s = malloc(b.cap);
  if (!b.s)
    abort();
  b.s[0] = '\0';
  const char *close = NULL; /* end tag we are inside of */
  char one[2] = {0, 0};
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '&') {
      size_t j = i + 1;
      if (j < len && s[j] == '#') {
        j++;
        if (j < len && (s[j] == 'x' || s[j] == 'X'))
          j++;
        while (j < len && isxdigit((unsigned char)s[j]))
          j++;
      } else
        while (j < len && isalpha((unsigned char)s[j]))
          j++;
      cim_buf_add(&b, (j < len && s[j] == ';' && j > i + 1) ? "&" : "&amp;");
      continue;
    }
    if (c == '<') {
      if (close) {
        size_t cl = strlen(close);
        if (i + cl <= len && !memcmp(s + i, close, cl))
          close = NULL;
        else {
          cim_buf_add(&b, "&lt;");
          continue;
        }
      } else if (i + 7 <= len && !memcmp(s + i, "<VALUE>", 7))
        close = "</VALUE>";
      else if (i + 9 <= len && !memcmp(s + i, "<KEYVALUE", 9)) {
        const char *gt = memchr(s + i, '>', len - i);
        if (gt && gt[-1] != '/')
          close = "</KEYVALUE>";
      }
    }
    one[0] = c;
    cim_buf_add(&b, one);
  }
  return b.s;
}


static xmlNode *child(xmlNode *n, const char *name)
{
  for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
    if (cim_xml_is(c, name))
      return c;
  return NULL;
}



static char *ns_of(xmlNode *lnp)
{
  cim_buf b = {0};
  cim_buf_add(&b, "");
  for (xmlNode *c = lnp ? lnp->children : NULL; c; c = c->next)
    if (cim_xml_is(c, "NAMESPACE")) {
      char *n = cim_xml_attr(c, "NAME");
      if (n && *n) {
        if (b.len)
          cim_buf_add(&b, "/");
        cim_buf_add(&b, n);
      }
      free(n);
    }
  return b.s;
}

/* INSTANCENAME (with optional namespace) -> objpath */
static cim_objpath *path_of(xmlNode *in, const char *nspace, char *err)
{
  char *cls = cim_xml_attr(in, "CLASSNAME");
  /* wbemcli prints a reference key as HOST/ns/nsClass (no ':') and sends
   * that back as the CLASSNAME: keep what follows the last '/' or ':' */
  const char *cn = cls ? cls : "";
  for (const char *c = cn; *c; c++)
    if (*c == '/' || *c == ':')
      cn = c + 1;
  if (cn != cls && cls) {
    /* "v2Msvm_X": drop a namespace segment glued to the class name */
    const char *u = strstr(cn, "Msvm_") ? strstr(cn, "Msvm_") : strstr(cn, "CIM_");
    if (u)
      cn = u;
  }
  cim_buf b = {0};
  cim_buf_add(&b, "");
  if (nspace && *nspace)
    cim_buf_addf(&b, "%s:", nspace);
  cim_buf_add(&b, cn);
  free(cls);
  int k = 0;
  for (xmlNode *kb = in->children; kb; kb = kb->next) {
    if (!cim_xml_is(kb, "KEYBINDING"))
      continue;
    char *name = cim_xml_attr(kb, "NAME");
    xmlNode *kv = child(kb, "KEYVALUE");
    xmlNode *vr = child(kb, "VALUE.REFERENCE");
    char *v = kv ? cim_xml_text(kv) : NULL;
    if (!v && vr) {
      xmlNode *inn = child(child(vr, "INSTANCEPATH"), "INSTANCENAME");
      if (!inn)
        inn = child(vr, "INSTANCENAME");
      cim_objpath *sub = inn ? path_of(inn, NULL, err) : NULL;
      v = sub ? cim_objpath_format(sub) : NULL;
      cim_objpath_free(sub);
    }
    cim_buf_addf(&b, "%c%s=\"", k++ ? ',' : '.', name ? name : "");
    for (const char *c = v ? v : ""; *c; c++) {
      if (*c == '"' || *c == '\\')
        cim_buf_add(&b, "\\");
      char one[2] = {*c, 0};
      cim_buf_add(&b, one);
    }
    cim_buf_add(&b, "\"");
    free(name);
    free(v);
  }
  cim_objpath *p = cim_objpath_parse(b.s, b.len, err);
  cim_buf_free(&b);
  return p;
}

static cim_objpath *ref_of(xmlNode *vr, char *err)
{
  /* VALUE.REFERENCE: INSTANCEPATH(NAMESPACEPATH, INSTANCENAME) |
   * LOCALINSTANCEPATH(LOCALNAMESPACEPATH, INSTANCENAME) | INSTANCENAME */
  xmlNode *ip = child(vr, "INSTANCEPATH"), *lip = child(vr, "LOCALINSTANCEPATH");
  xmlNode *in = child(ip ? ip : lip ? lip : vr, "INSTANCENAME");
  if (!in)
    return cim_seterr(err, "VALUE.REFERENCE without INSTANCENAME");
  char *ns = NULL;
  if (ip)
    ns = ns_of(child(child(ip, "NAMESPACEPATH"), "LOCALNAMESPACEPATH"));
  else if (lip)
    ns = ns_of(child(lip, "LOCALNAMESPACEPATH"));
  cim_objpath *p = path_of(in, ns, err);
  free(ns);
  return p;
}

static bool add_param(cim_request *r, xmlNode *pv, bool intrinsic, char *err)
{
  if (r->n_params == 256) {
    cim_seterr(err, "too many parameters");
    return false;
  }
  char *name = cim_xml_attr(pv, "NAME");
  if (!name || !*name) {
    free(name);
    cim_seterr(err, "parameter without NAME");
    return false;
  }
  r->params = realloc(r->params, (r->n_params + 1) * sizeof *r->params);
  if (!r->params)
    abort();
  cim_param *p = &r->params[r->n_params++];
  memset(p, 0, sizeof *p);
  p->name = name;
  p->is_null = true;
  (void)intrinsic;
  for (xmlNode *c = pv->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE)
      continue;
    p->is_null = false;
    if (cim_xml_is(c, "VALUE")) {
      p->kind = CIM_P_VALUE;
      p->values = realloc(p->values, sizeof(char *));
      p->values[0] = cim_xml_text(c);
      p->n_values = 1;
    } else if (cim_xml_is(c, "VALUE.ARRAY")) {
      p->kind = CIM_P_ARRAY;
      for (xmlNode *v = c->children; v; v = v->next)
        if (cim_xml_is(v, "VALUE")) {
          if (p->n_values == CIM_MAX_ARRAY) {
            cim_seterr(err, "array %s too long", p->name);
            return false;
          }
          p->values = realloc(p->values, (p->n_values + 1) * sizeof(char *));
          p->values[p->n_values++] = cim_xml_text(v);
        }
    } else if (cim_xml_is(c, "VALUE.REFERENCE")) {
      p->kind = CIM_P_REF;
      if (!(p->ref = ref_of(c, err)))
        return false;
    } else if (cim_xml_is(c, "CLASSNAME")) {
      p->kind = CIM_P_CLASSNAME;
      p->values = realloc(p->values, sizeof(char *));
      p->values[0] = cim_xml_attr(c, "NAME");
      p->n_values = p->values[0] ? 1 : 0;
    } else if (cim_xml_is(c, "INSTANCENAME")) {
      p->kind = CIM_P_INSTANCENAME;
      if (!(p->ref = path_of(c, NULL, err)))
        return false;
    } else if (cim_xml_is(c, "VALUE.NULL")) {
      p->is_null = true;
    } else {
      cim_seterr(err, "unsupported parameter value <%s>", (const char *)c->name);
      return false;
    }
    break;
  }
  return true;
}

cim_request *cim_request_parse(const char *body, size_t len, const char **http_error,
                               char err[CIM_ERRLEN])
{
  *http_error = "request-not-well-formed";
  err[0] = '\0';
  if (!body || len == 0)
    return cim_seterr(err, "empty request");
  if (len > 4u << 20)
    return cim_seterr(err, "request larger than 4 MiB");
  if (!cim_xml_prescan(body, len, err))
    return NULL;
  char *fixed = lenient(body, len);
  /* UTF-8 forced: the bytes checked above are the bytes parsed */
  xmlDoc *doc = xmlReadMemory(fixed, (int)strlen(fixed), "request.xml", "UTF-8", CIM_XML_PARSE_OPTS);
  free(fixed);
  if (!doc) {
    const xmlError *e = xmlGetLastError();
    return cim_seterr(err, "malformed XML: %s", e && e->message ? e->message : "?");
  }
  if (doc->intSubset || doc->extSubset) {
    xmlFreeDoc(doc);
    return cim_seterr(err, "DOCTYPE is not accepted");
  }
  cim_request *r = calloc(1, sizeof *r);
  if (!r)
    abort();
  *http_error = "request-not-valid";
  xmlNode *cim = xmlDocGetRootElement(doc);
  if (!cim_xml_is(cim, "CIM")) {
    cim_seterr(err, "the root element is not CIM");
    goto fail;
  }
  char *cv = cim_xml_attr(cim, "CIMVERSION"), *dv = cim_xml_attr(cim, "DTDVERSION");
  bool vok = cv && dv && !strncmp(cv, "2.", 2) && !strncmp(dv, "2.", 2);
  free(cv);
  free(dv);
  if (!vok) {
    *http_error = "unsupported-cim-version";
    cim_seterr(err, "CIMVERSION and DTDVERSION must be 2.x");
    goto fail;
  }
  xmlNode *msg = child(cim, "MESSAGE");
  r->msgid = msg ? cim_xml_attr(msg, "ID") : NULL;
  xmlNode *sr = child(msg, "SIMPLEREQ");
  if (!r->msgid || !sr) {
    if (child(msg, "MULTIREQ"))
      *http_error = "multiple-requests-unsupported";
    cim_seterr(err, "expected MESSAGE with an ID and a SIMPLEREQ");
    goto fail;
  }
  xmlNode *call = child(sr, "IMETHODCALL");
  r->intrinsic = call != NULL;
  if (!call)
    call = child(sr, "METHODCALL");
  if (!call || !(r->method = cim_xml_attr(call, "NAME")) || !*r->method) {
    cim_seterr(err, "expected IMETHODCALL or METHODCALL with a NAME");
    goto fail;
  }
  if (r->intrinsic) {
    r->nspace = ns_of(child(call, "LOCALNAMESPACEPATH"));
  } else {
    xmlNode *lip = child(call, "LOCALINSTANCEPATH"), *lcp = child(call, "LOCALCLASSPATH");
    xmlNode *holder = lip ? lip : lcp;
    r->nspace = ns_of(child(holder, "LOCALNAMESPACEPATH"));
    if (lip && child(lip, "INSTANCENAME"))
      r->target = path_of(child(lip, "INSTANCENAME"), r->nspace, err);
    else if (lcp && child(lcp, "CLASSNAME")) {
      char *cn = cim_xml_attr(child(lcp, "CLASSNAME"), "NAME");
      char *t = NULL;
      if (cn && asprintf(&t, "%s:%s", r->nspace, cn) < 0)
        t = NULL;
      r->target = t ? cim_objpath_parse(t, strlen(t), err) : NULL;
      free(cn);
      free(t);
    }
    if (!r->target) {
      if (!*err)
        cim_seterr(err, "METHODCALL without LOCALINSTANCEPATH or LOCALCLASSPATH");
      goto fail;
    }
  }
  if (!r->nspace || !*r->nspace) {
    cim_seterr(err, "no namespace");
    goto fail;
  }
  for (xmlNode *c = call->children; c; c = c->next)
    if ((cim_xml_is(c, "IPARAMVALUE") || cim_xml_is(c, "PARAMVALUE")) && !add_param(r, c, r->intrinsic, err))
      goto fail;
  xmlFreeDoc(doc);
  *http_error = NULL;
  return r;
fail:
  xmlFreeDoc(doc);
  cim_request_free(r);
  return NULL;
}
